"""Study files: TOML -> a validated `StudySpec`, with errors that name the field and its line.

Every study has a ``[study]`` table, a table array of what is studied and ``[[methods]]``::

    [study]
    name = "synthetic"
    kind = "bo"                 # a registered kind: "bo" (default), "regression", "active", "continual"
    seeds = 10                  # n (seeds 0..n-1) or a list of ints ("splits" for regression)
    budget = 100                # iterations after the initial design (BO)

    [[problems]]                # "problems" for BO, "datasets" for regression
    ...
    [[methods]]
    name = "svgp-ts"
    model = "svgp"              # a name of the model registry, or "pkg.mod:factory"
    ...

Everything below ``[study]``'s generic fields belongs to the kind (`gpvi.studies.kinds`): its extra
[study] options (BO: ``q``, ``num_initial``; active: ``steps``, ``batch_size``), its problem table
and its method fields. Each format is in its kind's module: `gpvi.studies.kinds.bo`,
`gpvi.studies.kinds.regression`, `gpvi.studies.kinds.active`, `gpvi.studies.kinds.continual`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from gpvi.studies.kinds import get_kind, kind_names
from gpvi.studies.spec_parsing import (
    Locator,
    StudyError,
    get_array,
    get_field,
    parse_seeds,
    reject_unknown,
    require_table,
)
from gpvi.studies.store import RunKey


@dataclass
class StudySpec:
    """A validated study: name, kind, seeds, budget, the kind's problems and methods and options, the TOML text."""

    name: str
    kind: str
    seeds: list[int]
    budget: int
    problems: list[Any]
    methods: list[Any]
    options: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def run_keys(self) -> list[RunKey]:
        """One `RunKey` per (problem, method, seed), problems outermost."""
        return [RunKey(p.label, m.name, s) for p in self.problems for m in self.methods for s in self.seeds]


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"Study file {str(path)!r} does not exist.")
    return parse_spec(path.read_text(), source=str(path))


def parse_spec(text: str, source: str = "<study>") -> StudySpec:
    """Validate a study's TOML text (see the module docstring and the kind's module for the format)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise StudyError(f"{source}: not valid TOML: {err}") from err
    where = Locator(text, source)
    study = raw.get("study")
    if not isinstance(study, dict):
        raise StudyError(f"{source}: missing the [study] table (with name, seeds, budget).")
    kind_name = get_field(study, "kind", str, "study", where, default="bo")
    if kind_name not in kind_names():
        raise StudyError(where.say("study.kind", f"must be one of {kind_names()}, got {kind_name!r}"))
    kind = get_kind(kind_name)
    reject_unknown(raw, {"study", kind.problem_table, "methods"}, "", where)
    known = {"name", "kind", "seeds", kind.seeds_field, "budget", *kind.study_options}
    reject_unknown(study, known, "study", where)
    name = get_field(study, "name", str, "study", where)
    seeds = parse_seeds(study.get(kind.seeds_field, study.get("seeds")), f"study.{kind.seeds_field}", where)
    default = ... if kind.default_budget is None else kind.default_budget
    budget = get_field(study, "budget", int, "study", where, default=default)
    if budget < 0:
        raise StudyError(where.say("study.budget", f"must be >= 0, got {budget}"))
    options = {}
    for key, value in kind.study_options.items():
        options[key] = get_field(study, key, int, "study", where, default=value)
        kind.check_study_option(key, options[key], where)
    table = kind.problem_table
    problems = [
        kind.parse_problem(require_table(p, f"{table}[{i}]", where), f"{table}[{i}]", where)
        for i, p in enumerate(get_array(raw, table, where))
    ]
    methods = [
        kind.parse_method(require_table(m, f"methods[{i}]", where), f"methods[{i}]", where)
        for i, m in enumerate(get_array(raw, "methods", where))
    ]
    for label, items in (("label", [p.label for p in problems]), ("name", [m.name for m in methods])):
        dup = {x for x in items if items.count(x) > 1}
        if dup:
            what = table if label == "label" else "methods"
            raise StudyError(where.say(f"{what}.{label}", f"must be unique; repeated: {sorted(dup)}"))
    return StudySpec(name, kind_name, seeds, budget, problems, methods, options, text)


__all__ = ["StudyError", "StudySpec", "load_spec", "parse_spec"]
