"""The "bo" study kind: problems × methods × seeds of a Bayesian-optimisation loop, one row per evaluation.

A BO study::

    [study]
    name = "synthetic"
    kind = "bo"                 # the default
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
    model = "svgp"              # "random", a BO model of the registry, or "pkg.mod:factory"
    acquisition = "ts"          # "qlogei" | "qlognei" | "ucb" | "ts"
    options = { num_inducing = 64 }          # model (factory) options (optional)
    acquisition_options = { raw_samples = 128 }
    refit_every = 1

A method's ``options`` are checked when the file is read (`gpvi.studies.options`): for a gpvi model
they are `gpvi.loops.GPVIFactory`'s arguments, for a BoTorch model its constructor's (none of which
a TOML value can give), for "random" none; a "module:callable" model's are not checked. Unknown
names and values of the wrong type are a `StudyError` with the line, as are unknown
``acquisition_options`` (`gpvi.loops.bo.ACQUISITION_DEFAULTS`).

A run is one `BayesOpt` loop minimising the problem; each iteration's points are stored with the
observed and true values, the best true value so far and the simple regret, the timings, and the
loop's checkpoint, so a killed run resumes exactly (`BayesOpt.restore`). The report's tables and
plots are `gpvi.studies.kinds.bo_report`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpvi.models.registry import get_model, model_names
from gpvi.studies.kinds.base import Emit, StudyKind, register_kind
from gpvi.studies.kinds.bo_problems import ProblemSpec, check_test_function, make_problem
from gpvi.studies.options import OptionSpec, check_options, entry_constructor_options, signature_options
from gpvi.studies.spec_parsing import Locator, StudyError, get_field, reject_unknown
from gpvi.studies.store import Run, Store

PROBLEM_FIELDS = {"name", "label", "dim", "noise_std", "function", "bounds", "optimal_value"}
METHOD_FIELDS = {"name", "model", "acquisition", "options", "acquisition_options", "refit_every"}


@dataclass
class MethodSpec:
    """A ``[[methods]]`` entry of a BO study."""

    name: str
    model: str
    acquisition: str = "qlogei"
    options: dict[str, Any] = field(default_factory=dict)
    acquisition_options: dict[str, Any] = field(default_factory=dict)
    refit_every: int = 1


class BOKind(StudyKind):
    """Bayesian optimisation studies (see the module docstring)."""

    name = "bo"
    problem_table = "problems"
    seeds_field = "seeds"
    study_options = {"q": 1, "num_initial": None}
    default_budget = None
    stores_evaluations = True

    # -- spec ---------------------------------------------------------------------------------------
    def parse_problem(self, raw: dict, ctx: str, where: Locator) -> ProblemSpec:
        reject_unknown(raw, PROBLEM_FIELDS, ctx, where)
        function = get_field(raw, "function", str, ctx, where, default=None)
        name = get_field(raw, "name", str, ctx, where, default=function)
        if name is None:
            raise StudyError(where.say(ctx, "needs `name` (a botorch.test_functions class) or `function`"))
        dim = get_field(raw, "dim", int, ctx, where, default=None)
        noise = float(get_field(raw, "noise_std", (int, float), ctx, where, default=0.0))
        bounds = raw.get("bounds")
        if function is not None:
            if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, list) for b in bounds)):
                raise StudyError(
                    where.say(f"{ctx}.bounds", "a `function` problem needs bounds = [[lo, ...], [hi, ...]]")
                )
            if ":" not in function:
                raise StudyError(where.say(f"{ctx}.function", f"must be 'module:callable', got {function!r}"))
        else:
            try:
                check_test_function(name, dim)
            except ValueError as err:
                raise StudyError(where.say(f"{ctx}.name", str(err))) from None
        default_label = name + (f"-{dim}" if dim is not None else "") + ("-noisy" if noise > 0 else "")
        optimal = raw.get("optimal_value")
        return ProblemSpec(
            name,
            get_field(raw, "label", str, ctx, where, default=default_label),
            dim,
            noise,
            function,
            bounds,
            None if optimal is None else float(optimal),
        )

    def check_study_option(self, key: str, value: Any, where: Locator) -> None:
        if value is not None and value < 1:
            raise StudyError(where.say(f"study.{key}", f"must be a positive int, got {value}"))

    def parse_method(self, raw: dict, ctx: str, where: Locator) -> MethodSpec:
        from gpvi.loops.bo import ACQUISITION_DEFAULTS, ACQUISITIONS

        reject_unknown(raw, METHOD_FIELDS, ctx, where)
        model = get_field(raw, "model", str, ctx, where)
        known = ["random", *model_names("bo")]
        if model not in known and ":" not in model:
            raise StudyError(
                where.say(f"{ctx}.model", f"unknown model {model!r}; use one of {known} or 'module:callable'")
            )
        acquisition = get_field(
            raw, "acquisition", str, ctx, where, default="random" if model == "random" else "qlogei"
        )
        if acquisition not in ACQUISITIONS:
            raise StudyError(where.say(f"{ctx}.acquisition", f"unknown {acquisition!r}; use one of {ACQUISITIONS}"))
        options = get_field(raw, "options", dict, ctx, where, default={})
        check_options(options, bo_model_options(model), f"model {model!r}", ctx, where)
        acquisition_options = get_field(raw, "acquisition_options", dict, ctx, where, default={})
        acquisition_spec = OptionSpec({k: type(v).__name__ for k, v in ACQUISITION_DEFAULTS.items()})
        check_options(acquisition_options, acquisition_spec, "the acquisition", ctx, where, "acquisition_options")
        refit_every = get_field(raw, "refit_every", int, ctx, where, default=1)
        if refit_every < 1:
            raise StudyError(where.say(f"{ctx}.refit_every", f"must be a positive int, got {refit_every}"))
        return MethodSpec(
            get_field(raw, "name", str, ctx, where, default=f"{model}-{acquisition}"),
            model,
            acquisition,
            options,
            acquisition_options,
            refit_every,
        )

    # -- runs ---------------------------------------------------------------------------------------
    def optimal_values(self, spec: Any) -> dict[str, float | None]:
        return {p.label: make_problem(p).optimal_value for p in spec.problems}

    def expected_evaluations(self, spec: Any, problem: ProblemSpec) -> int:
        num_initial = spec.options.get("num_initial")
        if num_initial is None:
            num_initial = max(5, 2 * make_problem(problem).bounds.shape[-1] + 1)
        return spec.budget * spec.options.get("q", 1) + num_initial

    def run(self, task: dict, emit: Emit) -> None:
        """One BO run from its stored evaluations and checkpoint, emitting each iteration's rows."""
        from gpvi.loops.bo import BayesOpt

        problem = make_problem(ProblemSpec(**task["problem"]))
        method = MethodSpec(**task["method"])
        seed, run_id = task["seed"], task["run_id"]
        loop = BayesOpt(
            problem.bounds,
            model_factory=method.model if method.model != "random" else "svgp",
            acquisition="random" if method.model == "random" else method.acquisition,
            q=task["options"].get("q", 1),
            num_initial=task["options"].get("num_initial"),
            refit_every=method.refit_every,
            minimize=True,
            seed=seed,
            model_options=method.options or None,
            acquisition_options=method.acquisition_options or None,
        )
        done = task["evaluations"]
        loop.restore(stored_batches(done, problem.bounds), task["checkpoint"])
        best = min((r["y_true"] for r in done), default=float("inf"))
        idx = len(done)
        while loop.iteration <= task["budget"]:
            iteration = loop.iteration
            X = loop.suggest()
            start = time.perf_counter()
            y, y_true = problem.evaluate(X, seed, iteration)
            eval_time = time.perf_counter() - start
            loop.observe(X, y.unsqueeze(-1))
            timing = loop.timings[-1]
            rows = []
            for x_i, y_i, t_i in zip(X.tolist(), y.tolist(), y_true.tolist(), strict=True):
                best = min(best, t_i)
                regret = None if problem.optimal_value is None else best - problem.optimal_value
                rows.append(
                    {
                        "idx": idx,
                        "iteration": iteration,
                        "x": x_i,
                        "y": y_i,
                        "y_true": t_i,
                        "best": best,
                        "regret": regret,
                        "fit_time": timing["fit_time"],
                        "acq_time": timing["acq_time"],
                        "eval_time": eval_time / len(y),
                        "n_train": timing["n_train"],
                    }
                )
                idx += 1
            emit(("eval", run_id, rows, loop.checkpoint()))

    # -- report -------------------------------------------------------------------------------------
    def report(self, store: Store, out_dir: Path, baseline: str | None) -> list[str]:
        from gpvi.studies.kinds.bo_report import bo_summary, bo_table, default_baseline, plot_regret, plot_time

        baseline = default_baseline(store) if baseline is None else baseline
        lines = bo_table(bo_summary(store, baseline), baseline)
        plot_regret(store, out_dir / "regret.png")
        plot_time(store, out_dir / "time.png")
        return [*lines, "", "![regret](regret.png)", "", "![time per iteration](time.png)"]

    def status_lines(self, store: Store, runs: list[Run]) -> list[str]:
        from gpvi.studies.kinds.bo_report import status_lines

        return status_lines(store, runs)


def bo_model_options(model: str) -> OptionSpec | None:
    """The ``options`` a BO method's model takes (see the module docstring); None: not checked."""
    if ":" in model:
        return None
    if model == "random":
        return OptionSpec({})
    entry = get_model(model)
    if entry.trainer == "botorch":  # `BoTorchFactory`: the constructor's, less what the factory sets
        return entry_constructor_options(entry).without({"train_X", "train_Y", "input_transform", "outcome_transform"})
    from gpvi.loops.factories import GPVIFactory

    return signature_options(GPVIFactory.__init__, skip=("self", "model"))


def stored_batches(rows: list[dict], like: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stored evaluations grouped by iteration -> [(X, Y observed)], the initial design first."""
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    for iteration in sorted({r["iteration"] for r in rows}):
        group = [r for r in rows if r["iteration"] == iteration]
        X = torch.tensor([r["x"] for r in group], dtype=like.dtype, device=like.device)
        Y = torch.tensor([[r["y"]] for r in group], dtype=like.dtype, device=like.device)
        out.append((X, Y))
    return out


register_kind(BOKind())

__all__ = ["BOKind", "MethodSpec", "ProblemSpec", "bo_model_options", "stored_batches"]
