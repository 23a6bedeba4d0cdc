"""The "continual" study kind: task sequences × strategies × seeds, one row per task learned.

A continual-learning study::

    [study]
    name = "split-digits"
    kind = "continual"
    seeds = [0, 1, 2, 3, 4]     # n (seeds 0..n-1) or a list of ints: the data split and the learner's seed

    [[problems]]
    label = "split-digits"
    data = "split-digits"       # `gpvi.data.split_digits`: class-incremental digits
    num_tasks = 5
    classes_per_task = 2
    # test_fraction = 0.2, max_train_per_task = 100, max_test_per_task = 50, metric = "accuracy" | "nlpd"

    [[methods]]
    name = "memory-200-leverage"
    strategy = "memory"         # "memory" | "none" | "finetune" | "retrain" (`gpvi.loops.ContinualLearner`)
    memory_size = 200
    memory_selection = "leverage"
    model = "dual-svgp"         # a gpvi model of the registry ("memory" and "none": a DualSVGP)
    options = { num_inducing = 100, max_steps = 10 }   # the model's constructor and `gpvi.fit` options
    update_options = { max_iter = 20 }                  # `DualSVGP.update` options (optional)
    # batch_size = 100                                  # rows per update (default: a task per update)

The model is built on each task's data with a softmax likelihood over the problem's T·c classes
(labels 0..T·c − 1, one latent GP per class) and the run's seed as its ``seed`` when it takes one;
options the constructor names go to it, the others to `gpvi.fit` (`gpvi.studies.kinds.regression.
split_options`). A method's options are checked when the file is read.

A run is one `gpvi.loops.ContinualLearner` on the problem's tasks split with the run's seed. After
each task it stores one evaluation row, with the learner's checkpoint (the model included), so a
killed run resumes at the next task with nothing lost or learned twice. The row's columns:

    idx, iteration   the task index i
    x                R[i, :i+1]: the metric on each seen task's test set (JSON list)
    y, best          the metric on the union of the seen tasks' test sets (the split-MNIST number)
    y_true           the average of R[i, :i+1]
    fit_time         seconds learning task i;  acq_time: seconds testing after it
    n_train          training points seen;  regret, eval_time: unused (NULL)

The report (`gpvi.studies.kinds.continual_report`) tabulates final average, all-seen metric,
forgetting, backward transfer and time per (problem, method), mean ± sd over seeds, and plots the
average and the all-seen metric against the tasks seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpvi.models.registry import get_model, model_names
from gpvi.studies.kinds.base import Emit, StudyKind, register_kind
from gpvi.studies.options import OptionSpec, check_options, signature_options
from gpvi.studies.spec_parsing import Locator, StudyError, get_field, reject_unknown
from gpvi.studies.store import Run, Store

DATA = ("split-digits",)
PROBLEM_FIELDS = {
    "label",
    "data",
    "num_tasks",
    "classes_per_task",
    "test_fraction",
    "max_train_per_task",
    "max_test_per_task",
    "metric",
}
METHOD_FIELDS = {
    "name",
    "strategy",
    "model",
    "memory_size",
    "memory_selection",
    "batch_size",
    "options",
    "update_options",
}
#: Method options the kind sets itself.
RESERVED = {"likelihood", "memory_size", "memory_selection", "max_n", "progress", "callback"}


@dataclass
class ProblemSpec:
    """A ``[[problems]]`` entry of a continual study: a task sequence."""

    label: str
    data: str = "split-digits"
    num_tasks: int = 5
    classes_per_task: int = 2
    test_fraction: float = 0.2
    max_train_per_task: int | None = None
    max_test_per_task: int | None = None
    metric: str = "accuracy"


@dataclass
class MethodSpec:
    """A ``[[methods]]`` entry of a continual study."""

    name: str
    strategy: str
    model: str = "dual-svgp"
    memory_size: int = 200
    memory_selection: str = "leverage"
    batch_size: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    update_options: dict[str, Any] = field(default_factory=dict)


class ContinualKind(StudyKind):
    """Continual-learning studies (see the module docstring)."""

    name = "continual"
    problem_table = "problems"
    seeds_field = "seeds"
    study_options: dict[str, Any] = {}
    default_budget = 0
    stores_evaluations = True

    # -- spec ---------------------------------------------------------------------------------------
    def parse_problem(self, raw: dict, ctx: str, where: Locator) -> ProblemSpec:
        reject_unknown(raw, PROBLEM_FIELDS, ctx, where)
        data = get_field(raw, "data", str, ctx, where, default="split-digits")
        if data not in DATA:
            raise StudyError(where.say(f"{ctx}.data", f"unknown task sequence {data!r}; use one of {list(DATA)}"))
        spec = ProblemSpec(
            get_field(raw, "label", str, ctx, where, default=data),
            data,
            get_field(raw, "num_tasks", int, ctx, where, default=5),
            get_field(raw, "classes_per_task", int, ctx, where, default=2),
            float(get_field(raw, "test_fraction", (int, float), ctx, where, default=0.2)),
            get_field(raw, "max_train_per_task", int, ctx, where, default=None),
            get_field(raw, "max_test_per_task", int, ctx, where, default=None),
            get_field(raw, "metric", str, ctx, where, default="accuracy"),
        )
        for key in ("num_tasks", "classes_per_task", "max_train_per_task", "max_test_per_task"):
            value = getattr(spec, key)
            if value is not None and value < 1:
                raise StudyError(where.say(f"{ctx}.{key}", f"must be a positive int, got {value}"))
        if spec.num_tasks * spec.classes_per_task > 10:
            raise StudyError(where.say(f"{ctx}.num_tasks", "times classes_per_task must be at most 10 (the digits)"))
        if not 0 < spec.test_fraction < 1:
            raise StudyError(where.say(f"{ctx}.test_fraction", f"must be in (0, 1), got {spec.test_fraction}"))
        if spec.metric not in ("accuracy", "nlpd"):
            raise StudyError(where.say(f"{ctx}.metric", f"must be 'accuracy' or 'nlpd', got {spec.metric!r}"))
        return spec

    def parse_method(self, raw: dict, ctx: str, where: Locator) -> MethodSpec:
        from gpvi.loops.continual import STRATEGIES
        from gpvi.models.dual_svgp import DualSVGP

        reject_unknown(raw, METHOD_FIELDS, ctx, where)
        strategy = get_field(raw, "strategy", str, ctx, where)
        if strategy not in STRATEGIES:
            raise StudyError(where.say(f"{ctx}.strategy", f"unknown strategy {strategy!r}; use one of {STRATEGIES}"))
        model = get_field(raw, "model", str, ctx, where, default="dual-svgp")
        known = [n for n in model_names() if get_model(n).trainer == "gpvi"]
        if model not in known:
            raise StudyError(where.say(f"{ctx}.model", f"unknown model {model!r}; use one of {known}"))
        if strategy in ("memory", "none") and not issubclass(get_model(model).resolve(), DualSVGP):
            raise StudyError(where.say(f"{ctx}.model", f"strategy {strategy!r} updates a DualSVGP; got {model!r}"))
        memory_size = get_field(raw, "memory_size", int, ctx, where, default=200)
        if memory_size < 0:
            raise StudyError(where.say(f"{ctx}.memory_size", f"must be >= 0, got {memory_size}"))
        selection = get_field(raw, "memory_selection", str, ctx, where, default="leverage")
        if selection not in ("leverage", "random"):
            raise StudyError(where.say(f"{ctx}.memory_selection", f"must be 'leverage' or 'random', got {selection!r}"))
        batch_size = get_field(raw, "batch_size", int, ctx, where, default=None)
        if batch_size is not None and batch_size < 1:
            raise StudyError(where.say(f"{ctx}.batch_size", f"must be a positive int, got {batch_size}"))
        options = get_field(raw, "options", dict, ctx, where, default={})
        check_options(options, continual_model_options(model), f"model {model!r}", ctx, where)
        update_options = get_field(raw, "update_options", dict, ctx, where, default={})
        update_spec = signature_options(DualSVGP.update, skip=("self", "X", "Y"))
        check_options(update_options, update_spec, "DualSVGP.update", ctx, where, "update_options")
        return MethodSpec(
            get_field(raw, "name", str, ctx, where, default=strategy),
            strategy,
            model,
            memory_size,
            selection,
            batch_size,
            options,
            update_options,
        )

    # -- runs ---------------------------------------------------------------------------------------
    def expected_evaluations(self, spec: Any, problem: ProblemSpec) -> int:
        return problem.num_tasks

    def run(self, task: dict, emit: Emit) -> None:
        """One learner from its stored rows and checkpoint, emitting a row (and checkpoint) per task."""
        problem, method = ProblemSpec(**task["problem"]), MethodSpec(**task["method"])
        learner = make_learner(problem, method, task["seed"])
        done = task["evaluations"]
        if done:
            if task["checkpoint"] is None:
                raise RuntimeError(f"{len(done)} tasks are stored without a checkpoint: cannot resume this run.")
            learner.restore(task["checkpoint"])
            if learner.num_learned != len(done):
                raise RuntimeError(f"The checkpoint holds {learner.num_learned} tasks, the store {len(done)}.")
        while learner.num_learned < len(learner.tasks):
            result = learner.learn_next()
            i = learner.num_learned - 1
            row = {
                "idx": i,
                "iteration": i,
                "x": result.matrix[i, : i + 1].tolist(),
                "y": float(result.all_seen[i]),
                "y_true": float(result.average[i]),
                "best": float(result.all_seen[i]),
                "regret": None,
                "fit_time": float(result.times[i]),
                "acq_time": float(result.eval_times[i]),
                "eval_time": None,
                "n_train": result.num_seen[i],
            }
            emit(("eval", task["run_id"], [row], learner.checkpoint()))

    # -- report -------------------------------------------------------------------------------------
    def report(self, store: Store, out_dir: Path, baseline: str | None) -> list[str]:
        from gpvi.studies.kinds.continual_report import continual_report

        return continual_report(store, out_dir)

    def status_lines(self, store: Store, runs: list[Run]) -> list[str]:
        from gpvi.studies.kinds.continual_report import status_lines

        return status_lines(store, runs)


def continual_model_options(model: str) -> OptionSpec:
    """The ``options`` of a continual method's model: its constructor's and `gpvi.fit`'s, less what the kind sets."""
    from gpvi.studies.kinds.regression import regression_model_options

    spec = regression_model_options(model)
    return spec.without(RESERVED) if spec is not None else OptionSpec({}, True)


def problem_tasks(problem: ProblemSpec, seed: int) -> list[Any]:
    """The problem's tasks split with ``seed`` (each capped at ``max_train_per_task`` / ``max_test_per_task`` rows)."""
    from gpvi.data import split_digits

    tasks = split_digits(problem.num_tasks, problem.classes_per_task, problem.test_fraction, seed=seed)
    train, test = problem.max_train_per_task, problem.max_test_per_task
    return [t._replace(X=t.X[:train], y=t.y[:train], X_test=t.X_test[:test], y_test=t.y_test[:test]) for t in tasks]


def make_learner(problem: ProblemSpec, method: MethodSpec, seed: int) -> Any:
    """The `ContinualLearner` of one run: a softmax model over the problem's classes, built per the method."""
    from gpytorch.likelihoods import SoftmaxLikelihood

    from gpvi.loops.continual import ContinualLearner
    from gpvi.studies.kinds.regression import split_options

    entry = get_model(method.model)
    built, trained = split_options(entry, dict(method.options))
    params, open_ended = entry.constructor_parameters()
    if "seed" in params or open_ended:
        built.setdefault("seed", seed)
    classes = problem.num_tasks * problem.classes_per_task

    def factory(X: Any, y: Any, **kwargs: Any) -> Any:
        likelihood = SoftmaxLikelihood(num_classes=classes, num_features=classes, mixing_weights=False)
        return entry.build(X, y, likelihood=likelihood, **built, **kwargs)

    return ContinualLearner(
        factory,
        problem_tasks(problem, seed),
        method.strategy,
        memory_size=method.memory_size,
        memory_selection=method.memory_selection,
        metric=problem.metric,
        batch_size=method.batch_size,
        seed=seed,
        fit_options=trained,
        update_options=method.update_options,
    )


register_kind(ContinualKind())

__all__ = [
    "ContinualKind",
    "MethodSpec",
    "ProblemSpec",
    "continual_model_options",
    "make_learner",
    "problem_tasks",
]
