"""What a study kind is: everything about one kind of study that the spec, the runner and the report need.

    class MyKind(StudyKind):
        name = "my-kind"
        problem_table = "problems"                    # the TOML array of what is studied
        def parse_problem(self, raw, ctx, where): ...  # -> a dataclass with a unique ``label``
        def parse_method(self, raw, ctx, where): ...   # -> a dataclass with ``name``, ``model``
        def run(self, task, emit): ...                  # one run, emitting messages to the driver
        def report(self, store, out_dir, baseline): ... # Markdown lines (and plots) of its results
    register_kind(MyKind())

The runner and the report are written against this class and the registry only: a new kind (active
learning, continual learning) is a new module under `gpvi/studies/kinds/` that registers itself;
the package imports every module in it, and nothing else is edited.

Messages a run emits (the driver commits each in one transaction):
``("eval", run_id, rows, checkpoint)`` evaluation rows and the state to resume from;
``("metrics", run_id, {name: value})`` scalar results. The runner adds "start" and "end".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpvi.studies.spec_parsing import Locator
from gpvi.studies.store import Run, Store

Emit = Callable[[tuple], None]


class StudyKind(ABC):
    """One kind of study (see the module docstring)."""

    #: The kind's name in ``[study] kind = ...``.
    name: str = ""
    #: The TOML array listing what is studied ("problems", "datasets").
    problem_table: str = "problems"
    #: The [study] field listing the seeds ("seeds", or "splits" for data splits).
    seeds_field: str = "seeds"
    #: Extra [study] fields and their defaults (None: optional with no default); "budget" is generic.
    study_options: dict[str, Any] = {}
    #: The default budget (None: required).
    default_budget: int | None = None
    #: Whether runs store per-iteration evaluations (resumable mid-run) rather than final metrics.
    stores_evaluations: bool = True

    # -- spec ---------------------------------------------------------------------------------------
    @abstractmethod
    def parse_problem(self, raw: dict, ctx: str, where: Locator) -> Any:
        """One validated entry of the problem table (a dataclass with a ``label``)."""

    @abstractmethod
    def parse_method(self, raw: dict, ctx: str, where: Locator) -> Any:
        """One validated [[methods]] entry (a dataclass with ``name`` and ``model``)."""

    def check_study_option(self, key: str, value: Any, where: Locator) -> None:  # noqa: B027 (optional hook)
        """Validate an extra [study] option (raise `StudyError`); every value passes by default."""

    # -- runs ---------------------------------------------------------------------------------------
    def optimal_values(self, spec: Any) -> dict[str, float | None]:
        """Per problem label, the optimum stored with its runs (None: unknown)."""
        return {}

    def expected_evaluations(self, spec: Any, problem: Any) -> int:
        """How many evaluation rows a finished run of ``problem`` stores (1 for a metrics run)."""
        return 1

    @abstractmethod
    def run(self, task: dict, emit: Emit) -> None:
        """Execute one run (``task`` holds the problem, method, seed, options and what is stored)."""

    # -- report -------------------------------------------------------------------------------------
    @abstractmethod
    def report(self, store: Store, out_dir: Path, baseline: str | None) -> list[str]:
        """The Markdown lines of the results (tables, plot links); plots are written into ``out_dir``."""

    def status_lines(self, store: Store, runs: list[Run]) -> list[str]:
        """Progress lines of `gpvi study status` after the run counts."""
        return []


KINDS: dict[str, StudyKind] = {}


def register_kind(kind: StudyKind) -> StudyKind:
    """Make ``kind`` available under ``kind.name``."""
    if kind.name in KINDS and type(KINDS[kind.name]) is not type(kind):
        raise ValueError(f"A study kind named {kind.name!r} is already registered.")
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> StudyKind:
    """The registered kind ``name``; `ValueError` lists the known ones."""
    if name not in KINDS:
        raise ValueError(f"Unknown study kind {name!r}; registered: {sorted(KINDS)}.")
    return KINDS[name]


def kind_names() -> list[str]:
    return sorted(KINDS)


__all__ = ["KINDS", "Emit", "StudyKind", "get_kind", "kind_names", "register_kind"]
