"""Continual learning: one model learns a sequence of tasks and is tested on every task seen so far.

    tasks = gpvi.data.split_digits(num_tasks=5)              # class-incremental: {0,1}, {2,3}, ...
    softmax = lambda: SoftmaxLikelihood(num_classes=10, num_features=10, mixing_weights=False)
    factory = lambda X, y, **kw: gpvi.DualSVGP(X, y, softmax(), num_inducing=100, **kw)
    result = ContinualLearner(factory, tasks, "memory", memory_size=200).run()
    result.matrix                 # R[i, j]: accuracy on task j's test set after learning task i
    result.final_average, result.forgetting, result.backward_transfer

The memory strategy is the memory-based dual GP of Chang, Verma, John, Solin & Khan (2023),
"Memory-Based Dual Gaussian Processes for Sequential Learning", ICML (`gpvi.DualSVGP.update`); the
others are its baselines (`ContinualLearner`). After task i the learner tests on the test sets of
tasks 0..i: R[i, j] for j ≤ i (NaN beyond), and ``all_seen[i]``, the metric on the union of those
test sets (the split-MNIST paper's accuracy), pooled over points rather than averaged over tasks.
The average accuracy, backward transfer and forgetting come from R (`gpvi.loops.continual_result`).

Task i runs under the seed `gpvi.loops.iteration_seed` (seed, i) (a forked global RNG: the
caller's is untouched), learning and evaluation both, so a learner restored from `checkpoint()`
continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import copy
import io
import math
import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from gpytorch.constraints import Interval
from torch import Tensor

from gpvi._validation import check_tensor
from gpvi.data.classification import ContinualTask
from gpvi.fit import fit
from gpvi.loops.base import iteration_seed
from gpvi.loops.continual_result import METRICS, ContinualResult, metric_sum, pooled
from gpvi.progress import progress_bar, show_progress

STRATEGIES = ("memory", "none", "finetune", "retrain")
#: The hyperparameters "finetune" carries from one task's model to the next (parameter-name prefixes).
WARM_PREFIXES = ("model.mean_module.", "model.covar_module.", "likelihood.")
_CHECKPOINT_FORMAT = 1


class ContinualLearner:
    """Learn tasks one after another with one of four strategies, testing on every task seen after each.

    Strategies (task 0 is the same for all but "none": the factory's model fitted by `gpvi.fit`):

    - "memory": the memory-based dual GP (Chang et al. 2023). The model is built with
      ``memory_size`` and ``memory_selection`` and fitted on task 0; every later task is absorbed by
      ``model.update(X, y)`` (`gpvi.DualSVGP.update`: inducing inputs re-selected, the past kept in a
      frozen summary plus a memory of ``memory_size`` points, hyperparameters refitted on task and
      memory), in minibatches of ``batch_size`` rows (default: the whole task in one update).
    - "none": the same updates with ``memory_size=0``: the frozen summary of the past only.
    - "finetune": a new model built and fitted on the current task alone, started from the
      previous model's kernel, mean and likelihood hyperparameters (`warm_start`); nothing of
      earlier tasks' data survives (the catastrophic-forgetting baseline).
    - "retrain": a new model fitted on the union of all tasks so far (the upper bound; its cost grows).

    Args:
        model_factory_or_model: ``fn(X, y, **kwargs) -> unfitted gpvi model`` on `n x d` inputs and
            `n x 1` targets; the "memory" and "none" strategies pass ``memory_size`` and
            ``memory_selection`` as keywords (a `gpvi.DualSVGP`'s), the others none. Or a model
            already built on task 0's training data, for "memory" and "none" only (the other two
            build a model per task): a copy is fitted, with the learner's memory settings.
        tasks: The T ≥ 1 tasks in order, each ``(X, y)``, ``(X, y, task_id)`` or
            ``(X, y, task_id, X_test, y_test)`` (a `gpvi.data.ContinualTask`, as
            `gpvi.data.split_digits` returns): `n x d` inputs, `n` or `n x 1` targets (class labels
            0, 1, ... as floats for a classifier), one dtype and d for all.
        strategy: "memory", "none", "finetune" or "retrain" (above).
        memory_size: The memory of "memory" (points kept with their exact sites).
        memory_selection: "leverage" (Bayesian leverage) or "random" ("memory" only).
        test_tasks: The T test sets ``(X_test, y_test)`` in task order, for tasks that hold none.
        metric: "accuracy", "nlpd" or "rmse" (default: accuracy for a classifier, NLPD for a
            Gaussian model). Classifiers are scored from `predict_proba` (argmax; NLPD is −mean log
            p(y)), Gaussian models from the predictive mean and variance with noise (`gpvi.metrics`).
        batch_size: Rows per `update` for "memory" and "none" (None: one update per task).
        seed: Task i runs under `iteration_seed` (seed, i) (module docstring).
        fit_options: Options of every `gpvi.fit` call (e.g. ``{"max_steps": 10}``).
        update_options: Options of every ``model.update`` call (e.g. ``{"max_iter": 20}``).

    Attributes:
        model: The model after the last task learned (None before the first).
        num_learned: Tasks learned so far.
    """

    def __init__(
        self,
        model_factory_or_model: Callable[..., Any] | Any,
        tasks: Sequence[Any],
        strategy: str = "memory",
        *,
        memory_size: int = 200,
        memory_selection: str = "leverage",
        test_tasks: Sequence[tuple[Tensor, Tensor]] | None = None,
        metric: str | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        fit_options: dict[str, Any] | None = None,
        update_options: dict[str, Any] | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}.")
        for name, value, low in (("memory_size", memory_size, 0), ("seed", seed, None), ("batch_size", batch_size, 1)):
            if name == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
                raise ValueError(f"`{name}` must be an int{'' if low is None else f' >= {low}'}, got {value!r}.")
        if memory_selection not in ("leverage", "random"):
            raise ValueError(f"`memory_selection` must be 'leverage' or 'random', got {memory_selection!r}.")
        if metric is not None and metric not in METRICS:
            raise ValueError(f"`metric` must be None or one of {METRICS}, got {metric!r}.")
        for name, value in (("fit_options", fit_options), ("update_options", update_options)):
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"`{name}` must be a dict of keyword options or None, got {type(value).__name__}.")
        self.tasks = check_tasks(tasks, test_tasks)
        self.strategy, self.seed, self.batch_size = strategy, seed, batch_size
        self.memory_size = 0 if strategy == "none" else memory_size
        self.memory_selection = memory_selection
        self.fit_options = {"progress": False, **(fit_options or {})}
        self.update_options = dict(update_options or {})
        self._metric = metric
        if metric == "accuracy":
            check_labels(self.tasks)
        self._factory: Callable[..., Any] | None = None
        self._template: Any = None
        if isinstance(model_factory_or_model, torch.nn.Module):
            self._template = self._check_template(model_factory_or_model)
        elif callable(model_factory_or_model):
            self._factory = model_factory_or_model
        else:
            raise TypeError(
                "`model_factory_or_model` must be a callable fn(X, y, **kwargs) -> model or a gpvi model, "
                f"got {type(model_factory_or_model).__name__}."
            )
        self.model: Any = None
        self.num_learned = 0
        self._records: list[dict[str, Any]] = []

    # -- learning -----------------------------------------------------------------------------------
    def learn_next(self) -> ContinualResult:
        """Learn the next task, test on every task seen, and return the result so far."""
        i = self.num_learned
        if i >= len(self.tasks):
            raise RuntimeError(f"All {len(self.tasks)} tasks are learned already.")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(iteration_seed(self.seed, i))
            start = time.perf_counter()
            model = self._learn(i)
            learned = time.perf_counter()
            record = self._evaluate(model, i)
        record.update(time=learned - start, eval_time=time.perf_counter() - learned)
        self.model, self.num_learned = model, i + 1
        self._records.append(record)
        return self.result()

    def run(self, *, progress: bool | None = None) -> ContinualResult:
        """Learn every task not learned yet (`learn_next` in a loop); returns the `ContinualResult`.

        Args:
            progress: Show a progress bar over the tasks (default `gpvi.progress.show_progress`).
        """
        bar = progress_bar(len(self.tasks) - self.num_learned, show_progress(progress), desc="continual")
        try:
            while self.num_learned < len(self.tasks):
                result = self.learn_next()
                if bar is not None:
                    bar.set_postfix({"all seen": f"{float(result.all_seen[-1]):.3g}"}, refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self.result()

    def result(self) -> ContinualResult:
        """The `ContinualResult` of the tasks learned so far (k rows)."""
        T, k = len(self.tasks), self.num_learned
        dtype = torch.float64
        matrix = torch.full((k, T), math.nan, dtype=dtype)
        for i, record in enumerate(self._records):
            matrix[i, : i + 1] = torch.tensor(record["row"], dtype=dtype)
        column = lambda key: torch.tensor([r[key] for r in self._records], dtype=dtype)  # noqa: E731
        return ContinualResult(
            self.strategy,
            self.metric_name,
            matrix,
            column("all_seen"),
            column("time"),
            column("eval_time"),
            [r["num_seen"] for r in self._records],
            [t.task_id for t in self.tasks],
        )

    @property
    def metric_name(self) -> str:
        """The metric: the one asked for, else accuracy for a classifier and NLPD for a Gaussian model
        (known once the first model is built; "accuracy" or "nlpd" is a guess before)."""
        if self._metric is not None:
            return self._metric
        model = self.model if self.model is not None else self._template
        return "nlpd" if model is not None and getattr(model, "is_gaussian", True) else "accuracy"

    # -- resuming -----------------------------------------------------------------------------------
    def checkpoint(self, *, include_model: bool = True) -> bytes:
        """The learner's state as bytes: the records so far and, with ``include_model`` (and a model that
        pickles), the current model; without it `restore` rebuilds the model by replaying the tasks."""
        model = None
        if include_model and self.model is not None:
            try:
                model = pickle.dumps(self.model)
            except (pickle.PicklingError, TypeError, AttributeError):
                model = None  # e.g. a lambda inside the model: replayed on restore
        state = {
            "format": _CHECKPOINT_FORMAT,
            "strategy": self.strategy,
            "seed": self.seed,
            "num_tasks": len(self.tasks),
            "metric": self._metric,
            "records": self._records,
            "model": model,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def restore(self, checkpoint: bytes) -> None:
        """Continue from `checkpoint()` bytes on a fresh learner with the same tasks and options.

        The model comes from the checkpoint, or (saved without one) is rebuilt by learning tasks
        0..k−1 again under their seeds; either way the next `learn_next` gives exactly the numbers the
        uninterrupted learner would have.
        """
        if self.num_learned:
            raise RuntimeError("restore() needs a fresh learner.")
        state = torch.load(io.BytesIO(checkpoint), weights_only=False)
        if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError("`checkpoint` is not the bytes of ContinualLearner.checkpoint().")
        mine = {"strategy": self.strategy, "seed": self.seed, "num_tasks": len(self.tasks)}
        theirs = {key: state[key] for key in mine}
        if mine != theirs:
            raise ValueError(f"`checkpoint` was taken from another learner: {theirs}, this one has {mine}.")
        records = state["records"]
        if state["model"] is not None:
            self.model = pickle.loads(state["model"])
        else:
            for i in range(len(records)):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(iteration_seed(self.seed, i))
                    self.model = self._learn(i, replay=True)
        self._metric = state["metric"]
        self._records = list(records)
        self.num_learned = len(records)

    # -- internals ----------------------------------------------------------------------------------
    def _check_template(self, model: Any) -> Any:
        if self.strategy in ("finetune", "retrain"):
            raise TypeError(
                f"`model_factory_or_model`: strategy {self.strategy!r} builds a new model for every task; "
                "pass a factory fn(X, y, **kwargs) -> model instead of a model."
            )
        data = getattr(model, "train_inputs", None)
        X0 = self.tasks[0].X
        if not (data and isinstance(data[0], Tensor) and data[0].shape == X0.shape and torch.equal(data[0], X0)):
            raise ValueError("`model_factory_or_model`: a model must be built on the first task's training inputs.")
        if not hasattr(model, "update"):
            raise TypeError(f"`model_factory_or_model`: a {type(model).__name__} has no `update`; use a DualSVGP.")
        return copy.deepcopy(model)

    def _build(self, X: Tensor, y: Tensor, memory: bool) -> Any:
        if self._factory is None:
            model = copy.deepcopy(self._template)
            model.memory_size, model.memory_selection = self.memory_size, self.memory_selection
            return model
        kwargs = {"memory_size": self.memory_size, "memory_selection": self.memory_selection} if memory else {}
        return self._factory(X, y, **kwargs)

    def _learn(self, i: int, *, replay: bool = False) -> Any:
        """The model after task i (from ``self.model``, the one after task i − 1)."""
        task = self.tasks[i]
        streams = self.strategy in ("memory", "none")
        if i > 0 and streams:
            model = self.model
            rows = task.X.shape[0] if self.batch_size is None else self.batch_size
            for X, y in zip(task.X.split(rows), task.y.split(rows), strict=True):
                model.update(X, y, **self.update_options)
            return model
        if self.strategy == "retrain":
            X = torch.cat([t.X for t in self.tasks[: i + 1]])
            y = torch.cat([t.y for t in self.tasks[: i + 1]])
        else:
            X, y = task.X, task.y
        model = self._build(X, y, memory=streams)
        if i == 0 and not replay:
            self._resolve_metric(model)
        if self.strategy == "finetune" and i > 0:
            warm_start(model, self.model)
        fit(model, **self.fit_options)
        return model

    def _resolve_metric(self, model: Any) -> None:
        """Check the metric against the first model (and classifiers' labels against the tasks)."""
        gaussian = getattr(model, "is_gaussian", True)
        if not gaussian and not hasattr(model, "predict_proba"):
            raise TypeError(f"`model_factory_or_model` built a {type(model).__name__} without predict_proba.")
        if self._metric == "accuracy" and gaussian:
            raise ValueError("`metric`: 'accuracy' needs a classifier; the model has a Gaussian likelihood.")
        if self._metric == "rmse" and not gaussian:
            raise ValueError("`metric`: 'rmse' needs a Gaussian model; use 'accuracy' or 'nlpd' for a classifier.")
        if not gaussian:
            check_labels(self.tasks)
        self._metric = self._metric or ("nlpd" if gaussian else "accuracy")

    def _evaluate(self, model: Any, i: int) -> dict[str, Any]:
        """R[i, :i+1] and the pooled metric over the test sets of tasks 0..i."""
        metric = self.metric_name
        sums, counts = [], []
        for task in self.tasks[: i + 1]:
            total, n = metric_sum(model, task.X_test, task.y_test, metric)
            sums.append(total)
            counts.append(n)
        row = [pooled(metric, [s], [n]) for s, n in zip(sums, counts, strict=True)]
        seen = sum(t.X.shape[0] for t in self.tasks[: i + 1])
        return {"row": row, "all_seen": pooled(metric, sums, counts), "num_seen": seen}


@torch.no_grad()
def warm_start(model: Any, previous: Any) -> None:
    """Set ``model``'s kernel, mean and likelihood hyperparameters (`WARM_PREFIXES`) to ``previous``'s values.

    The constrained values are copied, not the raw parameters: a gpvi model's default kernel scales
    its lengthscale constraint and prior to its own training inputs' spread
    (`gpvi.models.priors.default_kernel`), so equal raw parameters of two tasks' models can mean
    different lengthscales. A value the new constraint cannot hold (below its bound) keeps the new
    model's initial value, as does a parameter whose shape differs.
    """
    old = {name: (p if c is None else c.transform(p)) for name, p, c in constrained_parameters(previous)}
    for name, parameter, constraint in constrained_parameters(model):
        value = old.get(name)
        if value is None or value.shape != parameter.shape:
            continue
        raw = value if constraint is None else constraint.inverse_transform(value)
        parameter.copy_(torch.where(torch.isfinite(raw), raw, parameter))


def constrained_parameters(model: Any) -> list[tuple[str, Tensor, Interval | None]]:
    """(name, raw parameter, its gpytorch constraint or None) of ``model``'s `WARM_PREFIXES` parameters."""
    out = []
    for name, parameter in model.named_parameters():
        if name.startswith(WARM_PREFIXES):
            path, _, attribute = name.rpartition(".")
            constraint = getattr(model.get_submodule(path), f"{attribute}_constraint", None)
            out.append((name, parameter, constraint if isinstance(constraint, Interval) else None))
    return out


def check_tasks(tasks: Any, test_tasks: Any) -> list[ContinualTask]:
    """The tasks, each a `ContinualTask` with `n x 1` targets and a test set each; errors name the argument."""
    if isinstance(tasks, (Tensor, str)) or not isinstance(tasks, Sequence) or not len(tasks):
        raise ValueError("`tasks` must be a non-empty sequence of (X, y[, task_id[, X_test, y_test]]) tasks.")
    if test_tasks is not None and (not isinstance(test_tasks, Sequence) or len(test_tasks) != len(tasks)):
        raise ValueError(f"`test_tasks` must be a sequence of {len(tasks)} (X_test, y_test) pairs, one per task.")
    out = []
    for i, raw in enumerate(tasks):
        if not isinstance(raw, (tuple, list)) or len(raw) not in (2, 3, 5):
            raise ValueError(f"`tasks[{i}]` must be (X, y), (X, y, task_id) or (X, y, task_id, X_test, y_test).")
        X, y = raw[0], raw[1]
        task_id = raw[2] if len(raw) > 2 and raw[2] is not None else i
        X_test, y_test = (raw[3], raw[4]) if len(raw) == 5 else (None, None)
        if test_tasks is not None:
            if X_test is not None:
                raise ValueError(f"`test_tasks`: task {i} holds a test set already; give it in one place.")
            pair = test_tasks[i]
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"`test_tasks[{i}]` must be a pair (X_test, y_test).")
            X_test, y_test = pair
            where = f"test_tasks[{i}]"
        else:
            where = f"tasks[{i}]"
        if X_test is None:
            raise ValueError(f"`tasks[{i}]` has no test set: give (X, y, task_id, X_test, y_test) or `test_tasks`.")
        X, y = _pair(f"tasks[{i}]", X, y)
        X_test, y_test = _pair(where, X_test, y_test, test=True)
        first = out[0].X if out else X
        for name, t in ((f"tasks[{i}].X", X), (f"{where}.X_test", X_test)):
            if t.shape[-1] != first.shape[-1]:
                raise ValueError(f"`{name}` has {t.shape[-1]} columns; the first task's X has {first.shape[-1]}.")
            if t.dtype != first.dtype or t.device != first.device:
                raise TypeError(
                    f"`{name}` is {t.dtype} on {t.device}; the first task's X is {first.dtype} on {first.device}: "
                    "give every task's tensors one dtype and device."
                )
        out.append(ContinualTask(X, y, task_id, X_test, y_test))
    return out


def _pair(where: str, X: Any, y: Any, test: bool = False) -> tuple[Tensor, Tensor]:
    xs, ys = ("X_test", "y_test") if test else ("X", "y")
    X = check_tensor(f"{where}.{xs}", X, ndim=2, shape_hint="`n x d`")
    y = check_tensor(f"{where}.{ys}", y, ndim=(1, 2), shape_hint="`n` or `n x 1`")
    y = y.unsqueeze(-1) if y.dim() == 1 else y
    if y.shape != (X.shape[0], 1):
        raise ValueError(
            f"`{where}.{ys}` must be `{X.shape[0]}` or `{X.shape[0]} x 1` to match `{xs}`, got {tuple(y.shape)}."
        )
    if y.dtype != X.dtype:
        raise TypeError(f"`{where}.{ys}` is {y.dtype} but `{where}.{xs}` is {X.dtype}; give them one dtype.")
    return X, y


def check_labels(tasks: Sequence[ContinualTask]) -> None:
    """Class labels must be non-negative integers (as floats) in every training and test set."""
    for i, task in enumerate(tasks):
        for name, y in (("y", task.y), ("y_test", task.y_test)):
            if bool(((y != y.round()) | (y < 0)).any()):
                raise ValueError(f"`tasks[{i}].{name}` must hold class labels 0, 1, ... (integers as floats).")


__all__ = [
    "STRATEGIES",
    "WARM_PREFIXES",
    "ContinualLearner",
    "check_labels",
    "check_tasks",
    "constrained_parameters",
    "warm_start",
]
