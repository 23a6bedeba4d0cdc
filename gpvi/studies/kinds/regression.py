"""The "regression" study kind: data sets × methods × splits, one set of test metrics per run.

A regression study::

    [study]
    name = "uci"
    kind = "regression"
    splits = 5                  # n (splits 0..n-1) or a list of ints

    [[datasets]]
    name = "elevators"          # a UCI set of gpvi.data.uci
    max_train = 5000            # optional cap on the training points (a seeded random subset)

    [[methods]]
    name = "svgp-256"
    model = "svgp"              # a regression model of the registry, or "pkg.mod:callable"
    options = { num_inducing = 256 }

Models come from the registry (`gpvi.models.registry`), so any registered family is available
here without an edit. A method's options are the registry's "regression" defaults updated by the
study's; those the model's constructor takes go to it (with the split as ``seed`` when it takes
one), the rest to its training: `gpvi.fit` for gpvi models, the model's own ``fit`` for models that
fit themselves, none for BoTorch models (`fit_gpytorch_mll`). ``max_n`` caps the training set of
any method at a seeded random subset (the exact GP's default, 3000). A "module:callable" model is
``fn(train_X, train_Y, **options) -> fitted single-output BoTorch model``.

Options are checked when the file is read (`gpvi.studies.options`, `regression_model_options`):
an option must be one of the constructor's, the training's (`gpvi.fit`'s recipes; a model's own
``fit``) or ``max_n``, with a value of the type they declare; ``progress`` and ``callback`` are the
study's to set. A constructor that takes ``**options`` lets other names through; a "module:callable"
model's options are not checked.

Metrics: test RMSE and NLPD in standardised units (targets standardised with the training split),
fit and prediction wall times, and the peak resident memory of the fit above the memory before it.
"""

from __future__ import annotations

import inspect
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpvi.metrics import predict, rmse_nlpd
from gpvi.models.registry import get_model, load_object, model_names
from gpvi.studies.kinds.base import Emit, StudyKind, register_kind
from gpvi.studies.options import (
    OptionSpec,
    check_options,
    dataclass_options,
    entry_constructor_options,
    signature_options,
)
from gpvi.studies.plots import empty_panel, figure, save
from gpvi.studies.spec_parsing import Locator, StudyError, get_field, reject_unknown
from gpvi.studies.store import Run, Store
from gpvi.studies.tables import fmt, groups, mean_std

REGRESSION_METRICS_FIRST = ("rmse", "nlpd", "fit_time", "predict_time", "peak_memory_mb")


@dataclass
class DatasetSpec:
    """A ``[[datasets]]`` entry: a UCI set, its label and an optional cap on the training points."""

    name: str
    label: str
    max_train: int | None = None


@dataclass
class MethodSpec:
    """A ``[[methods]]`` entry of a regression study."""

    name: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)


class RegressionKind(StudyKind):
    """Regression studies on UCI splits (see the module docstring)."""

    name = "regression"
    problem_table = "datasets"
    seeds_field = "splits"
    study_options: dict[str, Any] = {}
    default_budget = 0
    stores_evaluations = False

    def parse_problem(self, raw: dict, ctx: str, where: Locator) -> DatasetSpec:
        from gpvi.data import uci

        reject_unknown(raw, {"name", "label", "max_train"}, ctx, where)
        name = get_field(raw, "name", str, ctx, where)
        if name not in uci.available():
            raise StudyError(where.say(f"{ctx}.name", f"unknown UCI data set {name!r}; available: {uci.available()}"))
        return DatasetSpec(
            name,
            get_field(raw, "label", str, ctx, where, default=name),
            get_field(raw, "max_train", int, ctx, where, default=None),
        )

    def parse_method(self, raw: dict, ctx: str, where: Locator) -> MethodSpec:
        reject_unknown(raw, {"name", "model", "options"}, ctx, where)
        model = get_field(raw, "model", str, ctx, where)
        known = model_names("regression")
        if model not in known and ":" not in model:
            raise StudyError(
                where.say(f"{ctx}.model", f"unknown model {model!r}; use one of {known} or 'module:callable'")
            )
        options = get_field(raw, "options", dict, ctx, where, default={})
        check_options(options, regression_model_options(model), f"model {model!r}", ctx, where)
        return MethodSpec(get_field(raw, "name", str, ctx, where, default=model), model, options)

    def run(self, task: dict, emit: Emit) -> None:
        emit(("metrics", task["run_id"], run_regression(task)))

    def report(self, store: Store, out_dir: Path, baseline: str | None) -> list[str]:
        summary = regression_summary(store)
        lines = regression_table(summary)
        if any("rmse" in s["metrics"] for s in summary):
            plot_metric_bars(store, out_dir / "rmse.png", "rmse")
            lines += ["", "![RMSE](rmse.png)"]
        return lines

    def status_lines(self, store: Store, runs: list[Run]) -> list[str]:
        with_results = {r["run_id"] for r in store.query("SELECT DISTINCT run_id FROM metrics")}
        lines = [f"Results: {sum(r.run_id in with_results for r in runs)} runs with metrics"]
        by_method: dict[str, list[Run]] = {}
        for r in runs:
            by_method.setdefault(r.method, []).append(r)
        for method, group in by_method.items():
            lines.append(f"  {method}: {sum(r.status == 'done' for r in group)}/{len(group)} runs done")
        return lines


# -- one run ------------------------------------------------------------------------------------------
def run_regression(task: dict) -> dict[str, float]:
    """Metrics of one (dataset, method, split) task (see the module docstring)."""
    from gpvi.data import uci

    problem, method = task["problem"], task["method"]
    data = uci.load(problem["name"], split=task["seed"])
    X, Y = data.train_X, data.train_Y
    if problem.get("max_train") is not None and X.shape[0] > problem["max_train"]:
        idx = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(task["seed"]))[: problem["max_train"]]
        X, Y = X[idx], Y[idx]
    torch.manual_seed(task["seed"])
    baseline = _peak_rss_reset()
    start = time.perf_counter()
    model = fit_method(method["model"], X, Y, dict(method.get("options") or {}), task["seed"])
    fit_time = time.perf_counter() - start
    peak = _peak_rss_mb() - baseline
    start = time.perf_counter()
    mean, var = predict(model, data.test_X)
    predict_time = time.perf_counter() - start
    rmse, nlpd = rmse_nlpd(mean, var, data.test_Y)
    return {
        "rmse": rmse,
        "nlpd": nlpd,
        "fit_time": fit_time,
        "predict_time": predict_time,
        "peak_memory_mb": peak,
        "n_train": float(X.shape[0]),
    }


def fit_method(name: str, X: torch.Tensor, Y: torch.Tensor, options: dict[str, Any], seed: int) -> Any:
    """Build and train model ``name`` (registry name or "module:callable") on (X, Y); returns a BoTorch model."""
    if ":" in name:
        return load_object(name)(X, Y, **options)
    entry = get_model(name)
    options = {**entry.options_for("regression"), **options}
    max_n = options.pop("max_n", None)
    if max_n is not None and X.shape[0] > max_n:
        idx = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed))[:max_n]
        X, Y = X[idx], Y[idx]
    constructor = entry.resolve()
    built, trained = split_options(entry, options)
    params, open_ended = entry.constructor_parameters()
    if entry.trainer != "botorch" and ("seed" in params or open_ended):
        built.setdefault("seed", seed)
    model = constructor(X, Y, **built)
    if entry.trainer == "gpvi":
        from gpvi.fit import fit
        from gpvi.fit.api import recipe_options

        used = recipe_options(model, trained.get("recipe"), trained.get("optimizer"), trained.get("objective"))
        fit(model, progress=False, **({"seed": seed} if "seed" in used else {}), **trained)
    elif entry.trainer == "own":
        model.fit(progress=False, seed=seed, **trained)
    else:
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


def regression_model_options(name: str) -> OptionSpec | None:
    """The options a regression method's model takes (the names `fit_method` sends on); None: not checked."""
    if ":" in name:
        return None
    entry = get_model(name)
    spec = entry_constructor_options(entry).without({"train_X", "train_Y"}).merge(OptionSpec({"max_n": "int"}))
    if entry.trainer == "gpvi":
        from gpvi.fit.api import fit, fit_option_names
        from gpvi.fit.recipes import RECIPES

        training = signature_options(fit, skip=("model",))
        for recipe in RECIPES.values():
            training = training.merge(dataclass_options(recipe))
        known = fit_option_names()
        spec = spec.merge(OptionSpec({k: v for k, v in training.hints.items() if k in known}))
    elif entry.trainer == "own":
        spec = spec.merge(signature_options(entry.resolve().fit))
    return spec.without({"progress", "callback"})


def split_options(entry: Any, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(constructor options, training options) of a registered model.

    BoTorch models take every option in their constructor. Otherwise an option the constructor names
    goes to it; the others go to the training: `gpvi.fit` (its recipes' options) or the model's own
    ``fit``; a constructor that also takes ``**options`` gets whatever the training does not name.
    """
    if entry.trainer == "botorch":
        return dict(options), {}
    params, open_ended = entry.constructor_parameters()
    if entry.trainer == "gpvi":
        from gpvi.fit.api import fit_option_names

        training = fit_option_names()
    else:
        training = set(inspect.signature(entry.resolve().fit).parameters) - {"self"}
    to_constructor = {k for k in options if k in params or (open_ended and k not in training)}
    return (
        {k: v for k, v in options.items() if k in to_constructor},
        {k: v for k, v in options.items() if k not in to_constructor},
    )


# -- summary, table, plot -----------------------------------------------------------------------------
def metric_order(names: Iterable[str]) -> list[str]:
    """The usual regression metrics first (rmse, nlpd, times, memory), then the others sorted."""
    names = set(names)
    return [n for n in REGRESSION_METRICS_FIRST if n in names] + sorted(names - set(REGRESSION_METRICS_FIRST))


def regression_summary(store: Store) -> list[dict[str, Any]]:
    """One dict per (dataset, method) of a regression study.

    Keys: dataset, method, splits (runs with status 'done'), splits_total, and metrics: a dict
    ``{name: {"mean": ..., "std": ..., "n": ...}}`` over the done runs' non-missing values, with the
    sample standard deviation (ddof=1, None for one value). Metric names are ordered rmse, nlpd,
    fit_time, predict_time, peak_memory_mb, then the others alphabetically.
    """
    runs = store.runs()
    values: dict[int, dict[str, float]] = defaultdict(dict)
    for r in store.query("SELECT run_id, name, value FROM metrics"):
        if r["value"] is not None:
            values[r["run_id"]][r["name"]] = r["value"]
    out = []
    for (dataset, method), group in groups(runs).items():
        done = [r for r in group if r.status == "done"]
        names = metric_order(n for r in done for n in values.get(r.run_id, {}))
        metrics = {}
        for name in names:
            vs = [values[r.run_id][name] for r in done if name in values.get(r.run_id, {})]
            mean, std = mean_std(vs)
            metrics[name] = {"mean": mean, "std": std, "n": len(vs)}
        out.append(
            {"dataset": dataset, "method": method, "splits": len(done), "splits_total": len(group), "metrics": metrics}
        )
    return out


def plot_metric_bars(store: Store, path: str | Path, metric: str = "rmse") -> Path:
    """Bar plot of a regression metric: mean ± std over splits per dataset (groups) and method (bars).

    Saves a PNG at `path` and returns it.
    """
    summary = regression_summary(store)
    datasets = list(dict.fromkeys(s["dataset"] for s in summary))
    methods = list(dict.fromkeys(s["method"] for s in summary))
    fig, axes = figure(1)
    ax = axes[0]
    width = 0.8 / max(len(methods), 1)
    drawn = False
    for j, method in enumerate(methods):
        xs, means, stds = [], [], []
        for i, dataset in enumerate(datasets):
            m = next(
                (s["metrics"].get(metric) for s in summary if (s["dataset"], s["method"]) == (dataset, method)), None
            )
            if m and m["mean"] is not None:
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                means.append(m["mean"])
                stds.append(m["std"] or 0.0)
        if xs:
            ax.bar(xs, means, width, yerr=stds, capsize=3, color=f"C{j % 10}", label=method)
            drawn = True
    if drawn:
        ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right")
        ax.set_ylabel(metric)
        ax.legend(fontsize="small")
    else:
        empty_panel(ax, f"no {metric} results yet")
    return save(fig, path)


def regression_table(summary: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown rows of mean ± std of every metric per (dataset, method)."""
    names = metric_order(n for s in summary for n in s["metrics"])
    header = ["dataset", "method", "splits"] + [f"{n} s" if n.endswith("_time") else n for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary:
        cells = [s["dataset"], s["method"], f"{s['splits']}/{s['splits_total']}"]
        for n in names:
            m = s["metrics"].get(n)
            if m is None or m["mean"] is None:
                cells.append("–")
            else:
                cells.append(fmt(m["mean"]) + ("" if m["std"] is None else f" ± {fmt(m['std'])}"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# -- peak memory --------------------------------------------------------------------------------------
def _read_status_kb(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def _peak_rss_reset() -> float:
    """Reset the peak-RSS counter (Linux: write 5 to clear_refs) and return the current RSS in MB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _read_status_kb("VmRSS") / 1024


def _peak_rss_mb() -> float:
    return _read_status_kb("VmHWM") / 1024


register_kind(RegressionKind())

__all__ = [
    "DatasetSpec",
    "MethodSpec",
    "RegressionKind",
    "fit_method",
    "plot_metric_bars",
    "regression_summary",
    "regression_table",
    "regression_model_options",
    "run_regression",
    "split_options",
]
