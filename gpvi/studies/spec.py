"""Study files: TOML -> a validated `StudySpec`, with errors that name the field and its line.

A BO study::

    [study]
    name = "synthetic"
    kind = "bo"                 # "bo" (default) or "regression"
    seeds = 10                  # n (seeds 0..n-1) or a list of ints
    budget = 100                # BO iterations after the initial design
    q = 1                       # points per iteration (optional)
    num_initial = 10            # initial Sobol design (optional; default 2d + 1, at least 5)

    [[problems]]
    name = "Branin"             # a botorch.test_functions class ...
    noise_std = 0.1             # optional; dim = ... for dimension-generic functions
    label = "Branin-noisy"      # optional unique name in the store and the report
    # function = "pkg.mod:f"    # ... or a callable X (n x d) -> (n,), with bounds = [[lo...], [hi...]]

    [[methods]]
    name = "svgp-ts"
    model = "svgp"              # "random" | "singletaskgp" | "svgp" | "dual-svgp" | "pkg.mod:factory"
    acquisition = "ts"          # "qlogei" | "qlognei" | "ucb" | "ts"
    options = { num_inducing = 64 }          # model options (optional)
    acquisition_options = { raw_samples = 128 }
    refit_every = 1

A regression study (kind = "regression") has ``[[datasets]]`` (``name`` of a UCI set, optional
``max_train``) instead of problems, ``splits`` instead of seeds, and methods with ``model`` in
"svgp" | "dual-svgp" | "gpytorch-svgp" | "exact" | "pkg.mod:callable" and ``options``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

BO_MODELS = ("random", "singletaskgp", "svgp", "dual-svgp")
REGRESSION_MODELS = ("svgp", "dual-svgp", "gpytorch-svgp", "exact")


class StudyError(ValueError):
    """A study file is invalid; the message names the field and, when known, its line."""


@dataclass
class ProblemSpec:
    name: str
    label: str
    dim: int | None = None
    noise_std: float = 0.0
    function: str | None = None
    bounds: list[list[float]] | None = None
    optimal_value: float | None = None
    max_train: int | None = None  # regression: cap on training points (None: all)


@dataclass
class MethodSpec:
    name: str
    model: str
    acquisition: str = "qlogei"
    options: dict[str, Any] = field(default_factory=dict)
    acquisition_options: dict[str, Any] = field(default_factory=dict)
    refit_every: int = 1


@dataclass
class StudySpec:
    name: str
    kind: str
    seeds: list[int]
    budget: int
    problems: list[ProblemSpec]
    methods: list[MethodSpec]
    q: int = 1
    num_initial: int | None = None
    text: str = ""

    def run_keys(self):
        from gpvi.studies.store import RunKey

        return [RunKey(p.label, m.name, s) for p in self.problems for m in self.methods for s in self.seeds]


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"Study file {str(path)!r} does not exist.")
    text = path.read_text()
    return parse_spec(text, source=str(path))


def parse_spec(text: str, source: str = "<study>") -> StudySpec:
    """Validate a study's TOML text (see the module docstring for the format)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise StudyError(f"{source}: not valid TOML: {err}") from err
    where = _Locator(text, source)
    _reject_unknown(raw, {"study", "problems", "datasets", "methods"}, "", where)
    study = raw.get("study")
    if not isinstance(study, dict):
        raise StudyError(f"{source}: missing the [study] table (with name, seeds, budget).")
    _reject_unknown(study, {"name", "kind", "seeds", "splits", "budget", "q", "num_initial"}, "study", where)
    kind = _get(study, "kind", str, "study", where, default="bo")
    if kind not in ("bo", "regression"):
        raise StudyError(where.say("study.kind", f"must be 'bo' or 'regression', got {kind!r}"))
    name = _get(study, "name", str, "study", where)
    seeds_key = "splits" if kind == "regression" else "seeds"
    seeds = _seeds(study.get(seeds_key, study.get("seeds")), f"study.{seeds_key}", where)
    budget = _get(study, "budget", int, "study", where, default=0 if kind == "regression" else None)
    if budget < 0:
        raise StudyError(where.say("study.budget", f"must be >= 0, got {budget}"))
    q = _get(study, "q", int, "study", where, default=1)
    num_initial = _get(study, "num_initial", int, "study", where, default=None)
    table = "datasets" if kind == "regression" else "problems"
    problems = [_problem(p, i, table, kind, where) for i, p in enumerate(_array(raw, table, where))]
    methods = [_method(m, i, kind, where) for i, m in enumerate(_array(raw, "methods", where))]
    for label, items in (("label", [p.label for p in problems]), ("name", [m.name for m in methods])):
        dup = {x for x in items if items.count(x) > 1}
        if dup:
            what = table if label == "label" else "methods"
            raise StudyError(where.say(f"{what}.{label}", f"must be unique; repeated: {sorted(dup)}"))
    return StudySpec(name, kind, seeds, budget, problems, methods, q, num_initial, text)


def _problem(raw: Any, i: int, table: str, kind: str, where: _Locator) -> ProblemSpec:
    ctx = f"{table}[{i}]"
    if not isinstance(raw, dict):
        raise StudyError(where.say(ctx, "must be a table"))
    if kind == "regression":
        _reject_unknown(raw, {"name", "label", "max_train"}, ctx, where)
        name = _get(raw, "name", str, ctx, where)
        from gpvi.data import uci

        if name not in uci.available():
            raise StudyError(where.say(f"{ctx}.name", f"unknown UCI data set {name!r}; available: {uci.available()}"))
        return ProblemSpec(
            name,
            _get(raw, "label", str, ctx, where, default=name),
            max_train=_get(raw, "max_train", int, ctx, where, default=None),
        )
    _reject_unknown(raw, {"name", "label", "dim", "noise_std", "function", "bounds", "optimal_value"}, ctx, where)
    function = _get(raw, "function", str, ctx, where, default=None)
    name = _get(raw, "name", str, ctx, where, default=function)
    if name is None:
        raise StudyError(where.say(ctx, "needs `name` (a botorch.test_functions class) or `function`"))
    dim = _get(raw, "dim", int, ctx, where, default=None)
    noise = float(_get(raw, "noise_std", (int, float), ctx, where, default=0.0))
    bounds = raw.get("bounds")
    if function is not None:
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, list) for b in bounds)):
            raise StudyError(where.say(f"{ctx}.bounds", "a `function` problem needs bounds = [[lo, ...], [hi, ...]]"))
        if ":" not in function:
            raise StudyError(where.say(f"{ctx}.function", f"must be 'module:callable', got {function!r}"))
    else:
        from gpvi.studies.problems import check_test_function

        try:
            check_test_function(name, dim)
        except ValueError as err:
            raise StudyError(where.say(f"{ctx}.name", str(err))) from None
    default_label = name + (f"-{dim}" if dim is not None else "") + ("-noisy" if noise > 0 else "")
    optimal = raw.get("optimal_value")
    return ProblemSpec(
        name,
        _get(raw, "label", str, ctx, where, default=default_label),
        dim,
        noise,
        function,
        bounds,
        None if optimal is None else float(optimal),
    )


def _method(raw: Any, i: int, kind: str, where: _Locator) -> MethodSpec:
    ctx = f"methods[{i}]"
    if not isinstance(raw, dict):
        raise StudyError(where.say(ctx, "must be a table"))
    _reject_unknown(raw, {"name", "model", "acquisition", "options", "acquisition_options", "refit_every"}, ctx, where)
    model = _get(raw, "model", str, ctx, where)
    known = REGRESSION_MODELS if kind == "regression" else BO_MODELS
    if model not in known and ":" not in model:
        raise StudyError(where.say(f"{ctx}.model", f"unknown model {model!r}; use one of {known} or 'module:callable'"))
    acquisition = _get(raw, "acquisition", str, ctx, where, default="random" if model == "random" else "qlogei")
    if kind == "bo":
        from gpvi.loops.bo import ACQUISITIONS

        if acquisition not in ACQUISITIONS:
            raise StudyError(where.say(f"{ctx}.acquisition", f"unknown {acquisition!r}; use one of {ACQUISITIONS}"))
    options = _get(raw, "options", dict, ctx, where, default={})
    acq_options = _get(raw, "acquisition_options", dict, ctx, where, default={})
    refit_every = _get(raw, "refit_every", int, ctx, where, default=1)
    name = _get(raw, "name", str, ctx, where, default=f"{model}-{acquisition}" if kind == "bo" else model)
    return MethodSpec(name, model, acquisition, options, acq_options, refit_every)


# -- helpers ---------------------------------------------------------------------------------------
class _Locator:
    """Finds the line of a field in the TOML text (tomllib gives values, not positions)."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def line_of(self, dotted: str) -> int | None:
        parts = re.findall(r"[A-Za-z_]+|\[\d+\]", dotted)
        table, index, key = parts[0] if parts else "", 0, None
        for p in parts[1:]:
            if p.startswith("["):
                index = int(p[1:-1])
            else:
                key = p
        headers = [i for i, line in enumerate(self.lines) if re.match(rf"\s*\[\[?\s*{re.escape(table)}\s*\]\]?", line)]
        if not headers:
            return None
        start = headers[min(index, len(headers) - 1)]
        if key is None:
            return start + 1
        for i in range(start + 1, len(self.lines)):
            if re.match(r"\s*\[", self.lines[i]):
                break
            if re.match(rf"\s*{re.escape(key)}\s*=", self.lines[i]):
                return i + 1
        return start + 1

    def say(self, dotted: str, message: str) -> str:
        line = self.line_of(dotted)
        at = f"{self.source}:{line}" if line else self.source
        return f"{at}: `{dotted}` {message}"


def _get(table: dict, key: str, types: Any, ctx: str, where: _Locator, default: Any = ...) -> Any:
    dotted = f"{ctx}.{key}" if ctx else key
    if key not in table:
        if default is ...:
            raise StudyError(where.say(dotted, "is missing"))
        return default
    value = table[key]
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) or not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in types)
        raise StudyError(where.say(dotted, f"must be {expected}, got {type(value).__name__} {value!r}"))
    return value


def _seeds(value: Any, dotted: str, where: _Locator) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if len(set(value)) != len(value):
            raise StudyError(where.say(dotted, f"has repeated seeds: {value}"))
        return list(value)
    raise StudyError(where.say(dotted, f"must be a positive int or a non-empty list of ints, got {value!r}"))


def _array(raw: dict, key: str, where: _Locator) -> list:
    value = raw.get(key)
    if not isinstance(value, list) or not value:
        raise StudyError(f"{where.source}: needs at least one [[{key}]] table.")
    return value


def _reject_unknown(table: dict, known: set[str], ctx: str, where: _Locator) -> None:
    for key in table:
        if key not in known:
            dotted = f"{ctx}.{key}" if ctx else key
            raise StudyError(where.say(dotted, f"is not a known field (known: {sorted(known)})"))


__all__ = ["MethodSpec", "ProblemSpec", "StudyError", "StudySpec", "load_spec", "parse_spec"]
