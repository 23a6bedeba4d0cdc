"""The "active" study kind: pool-based active learning, problems × methods × seeds, one row per step.

An active-learning study::

    [study]
    name = "active"
    kind = "active"
    seeds = 3                   # n (seeds 0..n-1) or a list of ints
    steps = 200                 # steps after the initial labels (or `budget`)
    batch_size = 1              # points labelled per step (optional)

    [[problems]]
    label = "elevators"
    data = "uci:elevators"      # "uci:NAME", "banana", "breast_cancer", "digits", or "pkg.mod:fn"
    pool_size = 5000            # optional: default all the points not in the test set
    test_size = 1000            # optional: default 1000, at most a quarter of the data
    num_initial = 20            # optional: random pool points labelled first
    # task = "classification"   # optional: inferred from `data` ("pkg.mod:fn": regression)
    # classes = 2               # optional: classification, default from the data

    [[methods]]
    name = "dual-update"
    model = "memory-dual"       # a BO model of the registry, or "pkg.mod:factory" (default "svgp")
    update = "update"           # "refit" (default), "update", "refit_every:K"
    acquisition = "variance"    # "variance" (default), "entropy", "bald", "nipv", "random"
    options = { num_inducing = 64 }    # model (factory) options (optional)
    tasks = ["regression"]      # the problems' tasks it runs on (default: from model and acquisition)

Data, per seed s: "uci:NAME" is split s mod 10 of `gpvi.data.uci` (standardised with its training
rows), the pool a seeded random subset of the training rows and the test set one of the test rows;
"banana" is ``banana(pool_size + test_size, seed=s)``; "breast_cancer" and "digits" (ten classes)
are permuted by s, the test set first; "pkg.mod:fn" is ``fn() -> (X `n x d`, Y `n` or `n x 1`)``,
permuted by s like the sklearn sets. A classification problem's gpvi models (and "pkg.mod:factory"
models that take a ``likelihood`` option) get ``likelihood="bernoulli"`` (two classes) or
``"softmax:C"`` unless the method's options say otherwise.

A method runs on the problems whose task is in its ``tasks``: by default "entropy" and "bald" are
classification acquisitions, "nipv" a regression one, and BoTorch's exact GP ("singletaskgp") is
regression-only. A run of a method on a problem outside its tasks ends at once and stores nothing
(the report leaves it out).

A run is one `gpvi.loops.ActiveLearner` on the pool. Every iteration stores one row with the
learner's checkpoint (so a killed run resumes at the next step, nothing lost or repeated), in the
store's evaluation columns (`gpvi.studies.store`):

    iteration, idx   the step: 0 the initial labels, 1..steps, steps + 1 the model after the last labels
    x                the pool indices labelled at this step (empty in the last row)
    n_train          the labels the step's model was fitted on
    y, y_true        the model's test RMSE and NLPD (regression) or accuracy and NLPD (classification)
    best             the best y so far (lowest RMSE, highest accuracy)
    fit_time, acq_time, eval_time   seconds to fit, to choose the points, to compute the metrics

The report (`gpvi.studies.kinds.active_report`): per problem, the test metrics at 50 / 100 / 200
labels (mean ± sd over seeds) and the time per step at the end, learning curves and time per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpvi.models.registry import get_model, load_object, model_names
from gpvi.studies.kinds.base import Emit, StudyKind, register_kind
from gpvi.studies.kinds.bo import bo_model_options
from gpvi.studies.options import OptionSpec, check_options, signature_options
from gpvi.studies.spec_parsing import Locator, StudyError, get_field, reject_unknown
from gpvi.studies.store import Run, Store

PROBLEM_FIELDS = {"label", "data", "task", "classes", "pool_size", "test_size", "num_initial"}
METHOD_FIELDS = {"name", "model", "update", "acquisition", "options", "tasks"}
TASKS = ("regression", "classification")
#: The named data sets and their (task, classes).
DATASETS = {"banana": ("classification", 2), "breast_cancer": ("classification", 2), "digits": ("classification", 10)}
#: The default test set: this many points, at most a quarter of the data.
TEST_SIZE = 1000


@dataclass
class ProblemSpec:
    """A ``[[problems]]`` entry of an active-learning study."""

    label: str
    data: str
    task: str
    classes: int | None = None
    pool_size: int | None = None
    test_size: int | None = None
    num_initial: int = 20


@dataclass
class MethodSpec:
    """A ``[[methods]]`` entry of an active-learning study."""

    name: str
    model: str = "svgp"
    update: str = "refit"
    acquisition: str = "variance"
    options: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=lambda: list(TASKS))


class ActiveKind(StudyKind):
    """Pool-based active-learning studies (see the module docstring)."""

    name = "active"
    problem_table = "problems"
    seeds_field = "seeds"
    study_options = {"steps": None, "batch_size": 1}
    default_budget = 0
    stores_evaluations = True

    # -- spec ---------------------------------------------------------------------------------------
    def parse_problem(self, raw: dict, ctx: str, where: Locator) -> ProblemSpec:
        from gpvi.data import uci

        reject_unknown(raw, PROBLEM_FIELDS, ctx, where)
        data = get_field(raw, "data", str, ctx, where)
        if data.startswith("uci:"):
            if data[4:] not in uci.available():
                raise StudyError(
                    where.say(f"{ctx}.data", f"unknown UCI data set {data[4:]!r}; found {uci.available()}")
                )
            task, classes = "regression", None
        elif data in DATASETS:
            task, classes = DATASETS[data]
        elif ":" in data:
            task, classes = "regression", None
        else:
            known = ["uci:NAME", *DATASETS, "pkg.mod:fn"]
            raise StudyError(where.say(f"{ctx}.data", f"unknown data {data!r}; use one of {known}"))
        task = get_field(raw, "task", str, ctx, where, default=task)
        if task not in TASKS:
            raise StudyError(where.say(f"{ctx}.task", f"must be one of {TASKS}, got {task!r}"))
        classes = get_field(raw, "classes", int, ctx, where, default=classes if task == "classification" else None)
        if task == "classification" and (classes is None or classes < 2):
            raise StudyError(where.say(f"{ctx}.classes", f"a classification problem needs classes >= 2, got {classes}"))
        sizes = {}
        for key, default in (("pool_size", None), ("test_size", None), ("num_initial", 20)):
            sizes[key] = get_field(raw, key, int, ctx, where, default=default)
            if sizes[key] is not None and sizes[key] < 1:
                raise StudyError(where.say(f"{ctx}.{key}", f"must be a positive int, got {sizes[key]}"))
        label = get_field(raw, "label", str, ctx, where, default=data.removeprefix("uci:"))
        return ProblemSpec(label, data, task, classes, **sizes)

    def parse_method(self, raw: dict, ctx: str, where: Locator) -> MethodSpec:
        from gpvi.loops.active import ACQUISITIONS
        from gpvi.loops.active_tools import parse_update

        reject_unknown(raw, METHOD_FIELDS, ctx, where)
        model = get_field(raw, "model", str, ctx, where, default="svgp")
        known = model_names("bo")
        if model not in known and ":" not in model:
            raise StudyError(
                where.say(f"{ctx}.model", f"unknown model {model!r}; use one of {known} or 'module:callable'")
            )
        update = get_field(raw, "update", str, ctx, where, default="refit")
        try:
            parse_update(update)
        except ValueError as err:
            raise StudyError(where.say(f"{ctx}.update", str(err))) from None
        acquisition = get_field(raw, "acquisition", str, ctx, where, default="variance")
        if acquisition not in ACQUISITIONS:
            raise StudyError(where.say(f"{ctx}.acquisition", f"unknown {acquisition!r}; use one of {ACQUISITIONS}"))
        options = get_field(raw, "options", dict, ctx, where, default={})
        check_options(options, active_model_options(model), f"model {model!r}", ctx, where)
        regression_only = ":" not in model and get_model(model).trainer == "botorch"
        default_tasks = [t for t in TASKS if not (t == "classification" and regression_only)]
        if acquisition in ("entropy", "bald"):
            default_tasks = ["classification"]
        elif acquisition == "nipv":
            default_tasks = ["regression"]
        tasks = get_field(raw, "tasks", list, ctx, where, default=default_tasks)
        if not tasks or any(t not in TASKS for t in tasks):
            raise StudyError(where.say(f"{ctx}.tasks", f"must be a non-empty list of {TASKS}, got {tasks!r}"))
        name = get_field(raw, "name", str, ctx, where, default=f"{model}-{update}-{acquisition}")
        return MethodSpec(name, model, update, acquisition, options, list(tasks))

    def check_study_option(self, key: str, value: Any, where: Locator) -> None:
        least, what = (1, "a positive") if key == "batch_size" else (0, "a non-negative")
        if value is not None and value < least:
            raise StudyError(where.say(f"study.{key}", f"must be {what} int, got {value}"))

    # -- runs ---------------------------------------------------------------------------------------
    def expected_evaluations(self, spec: Any, problem: ProblemSpec) -> int:
        return steps_of(spec.options, spec.budget) + 2  # the initial labels, the steps, the last model

    def run(self, task: dict, emit: Emit) -> None:
        """One active-learning run from its stored rows and checkpoint, emitting a row per step."""
        problem, method = ProblemSpec(**task["problem"]), MethodSpec(**task["method"])
        if problem.task not in method.tasks:
            return  # not this method's task: nothing to run or store
        seed, run_id = task["seed"], task["run_id"]
        steps = steps_of(task["options"], task["budget"])
        pool, labels, test_X, test_Y = problem_data(problem, seed)
        batch_size = task["options"].get("batch_size", 1)
        needed = problem.num_initial + steps * batch_size
        if pool.shape[0] < needed:
            raise ValueError(
                f"{problem.label}: the pool has {pool.shape[0]} points, fewer than the {needed} labels asked."
            )
        learner = make_learner(problem, method, pool, (test_X, test_Y), seed, batch_size)
        done = task["evaluations"]
        if any(r["iteration"] > steps for r in done):
            return  # the last model is stored: the run is complete
        batches = []
        for r in sorted(done, key=lambda r: r["iteration"]):
            idx = torch.tensor([int(i) for i in r["x"]], dtype=torch.long)
            batches.append((pool[idx], labels[idx]))
        learner.restore(batches, task["checkpoint"])
        best = _best([r["y"] for r in done], problem.task)
        while learner.iteration <= steps:
            step = learner.iteration
            learner.suggest()
            idx = learner.suggested_indices
            learner.observe_indices(idx, labels[idx])
            record = learner.history[-1] if step > 0 else {}
            best = _best([best, record.get(primary_metric(problem.task))], problem.task)
            emit(("eval", run_id, [_row(step, idx.tolist(), record, problem.task, best)], learner.checkpoint()))
        record = learner.evaluate()
        best = _best([best, record.get(primary_metric(problem.task))], problem.task)
        emit(("eval", run_id, [_row(steps + 1, [], record, problem.task, best)], learner.checkpoint()))

    # -- report -------------------------------------------------------------------------------------
    def report(self, store: Store, out_dir: Path, baseline: str | None) -> list[str]:
        from gpvi.studies.kinds.active_report import active_report

        return active_report(store, out_dir)

    def status_lines(self, store: Store, runs: list[Run]) -> list[str]:
        from gpvi.studies.kinds.active_report import status_lines

        return status_lines(store, runs)


# -- one run ------------------------------------------------------------------------------------------
def steps_of(options: dict[str, Any], budget: int) -> int:
    """The steps of a run: the study's ``steps``, else its ``budget``."""
    steps = options.get("steps")
    return budget if steps is None else steps


def primary_metric(task: str) -> str:
    """The metric a task's learning curve shows: "rmse" (regression) or "accuracy" (classification)."""
    return "accuracy" if task == "classification" else "rmse"


def make_learner(
    problem: ProblemSpec, method: MethodSpec, pool: torch.Tensor, test: tuple, seed: int, batch_size: int
) -> Any:
    """The `ActiveLearner` of one run (a classifier's likelihood added to a gpvi model's options)."""
    from gpvi.loops.active import ActiveLearner

    options = dict(method.options)
    if problem.task == "classification" and takes_likelihood(method.model):
        options.setdefault("likelihood", "bernoulli" if problem.classes == 2 else f"softmax:{problem.classes}")
    return ActiveLearner(
        method.model,
        pool=pool,
        acquisition=method.acquisition,
        batch_size=batch_size,
        update=method.update,
        num_initial=problem.num_initial,
        seed=seed,
        test=test,
        model_options=options or None,
    )


def takes_likelihood(model: str) -> bool:
    """Whether a method's model takes the ``likelihood`` option: a gpvi model of the registry, or a
    "pkg.mod:factory" whose constructor (or function) names it or takes ``**options``."""
    if ":" not in model:
        return get_model(model).trainer != "botorch"
    obj = load_object(model)
    spec = signature_options(obj.__init__ if isinstance(obj, type) else obj)
    return "likelihood" in spec.hints or spec.open_ended


def problem_data(problem: ProblemSpec, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pool X `N x d`, pool labels `N x 1`, test X, test labels `t x 1`) of a problem for seed ``seed``."""
    from gpvi.data import banana, breast_cancer, digits, uci

    gen = torch.Generator().manual_seed(seed)
    if problem.data.startswith("uci:"):
        data = uci.load(problem.data[4:], split=seed % uci.N_SPLITS)
        pool_idx = torch.randperm(data.n_train, generator=gen)[: problem.pool_size]
        test_idx = torch.randperm(data.n_test, generator=gen)[: problem.test_size or TEST_SIZE]
        return data.train_X[pool_idx], data.train_Y[pool_idx], data.test_X[test_idx], data.test_Y[test_idx]
    if problem.data == "banana":
        pool_size, test_size = problem.pool_size or 1000, problem.test_size or TEST_SIZE
        X, Y = banana(pool_size + test_size, seed=seed)
        return X[:pool_size], Y[:pool_size], X[pool_size:], Y[pool_size:]
    if problem.data == "breast_cancer":
        X, Y = breast_cancer()
    elif problem.data == "digits":
        X, Y = digits()
    else:
        X, Y = load_object(problem.data)()
        Y = Y.reshape(-1, 1)
    n = X.shape[0]
    test_size = problem.test_size or min(TEST_SIZE, n // 4)
    if test_size + problem.num_initial > n:
        raise ValueError(
            f"{problem.label}: {n} points cannot hold {test_size} test points and {problem.num_initial} initial labels."
        )
    perm = torch.randperm(n, generator=gen)
    test_idx, pool_idx = perm[:test_size], perm[test_size:][: problem.pool_size]
    return X[pool_idx], Y[pool_idx], X[test_idx], Y[test_idx]


def _best(values: list[float | None], task: str) -> float | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return max(values) if task == "classification" else min(values)


def _row(step: int, indices: list[int], record: dict, task: str, best: float | None) -> dict:
    return {
        "idx": step,
        "iteration": step,
        "x": indices,
        "y": record.get(primary_metric(task)),
        "y_true": record.get("nlpd"),
        "best": best,
        "regret": None,
        "fit_time": record.get("fit_time", 0.0),
        "acq_time": record.get("acq_time", 0.0),
        "eval_time": record.get("eval_time"),
        "n_train": record.get("labels", 0),
    }


def active_model_options(model: str) -> OptionSpec | None:
    """The ``options`` a method's model takes: its BO factory's (see `gpvi.studies.kinds.bo.bo_model_options`)."""
    if ":" in model:
        return None
    factory = get_model(model).options_for("bo").get("factory")
    if factory is None:
        return bo_model_options(model)
    from gpvi.loops.factories import GPVIFactory

    own = signature_options(load_object(factory).__init__, skip=("self", "model"))
    base = signature_options(GPVIFactory.__init__, skip=("self", "model"))
    return OptionSpec({**base.hints, **own.hints})


register_kind(ActiveKind())

__all__ = [
    "ActiveKind",
    "MethodSpec",
    "ProblemSpec",
    "active_model_options",
    "make_learner",
    "primary_metric",
    "problem_data",
    "steps_of",
    "takes_likelihood",
]
