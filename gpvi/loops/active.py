"""Active learning as an ask/tell loop: label next the points the model knows least, from a pool or a box.

    learner = ActiveLearner("svgp", pool=X_pool, acquisition="variance", test=(X_test, y_test), seed=0)
    result = learner.run(y_pool, 50)             # labels from a tensor of the pool's (or a callable oracle)
    X = learner.suggest(); idx = learner.suggested_indices
    learner.observe_indices(idx, y_pool[idx])    # ask / tell (or learner.observe(X, y))

Iteration 0 labels ``num_initial`` points: random pool points (seeded), or a scrambled Sobol design
of the box. Every later iteration (a *step*) refreshes the model on all labels so far (a full refit,
or the factory's `update` in between: ``update="refit" | "update" | "refit_every:K"``) and picks
``batch_size`` new points by an acquisition of `gpvi.acquisition`:

- pool mode (``pool``, `N x d`): `select_batch` over the points not asked yet (greedy with fantasies
  for a batch), so no pool point is ever asked twice; the inputs are normalised with the pool's
  bounding box;
- continuous mode (``bounds``, `2 x d`): BoTorch's `optimize_acqf` on `make_acquisition`. A batch of
  the MC acquisition "nipv" is chosen by ``optimize_acqf(q=k, sequential=True)``; a batch of an
  analytic (q = 1) one greedily: after each point the model is conditioned on a fantasy there
  (`condition_on_observations` at the predictive mean; a classifier's most probable label), as
  `select_batch` does over a pool. A Gaussian model's variance does not depend on the fantasy's
  value, so for "variance" and "nipv" the greedy batch is exact.

``acquisition="random"`` picks uniformly (pool points not asked yet, or the box) and still fits the
model, for the metrics. Regression labels are real values; a classifier's (a factory with
``likelihood="bernoulli"`` or ``"softmax:C"``) are class labels, and the loop fits them as given.

Every step is recorded in `history` (one dict per model: ``step``, ``labels`` the model was fitted
on, ``fit_time``, ``acq_time``, ``time`` = fit + acquisition, in seconds) and, with ``test=(X, y)``,
the model's test metrics: ``rmse`` and ``nlpd`` (Gaussian, with the likelihood's noise;
`gpvi.metrics`) for regression, ``accuracy`` and ``nlpd`` (−mean log p(y | x) from the class
probabilities) for a classifier. `evaluate` records the model after the last labels without
proposing (`run` ends with it); the next `suggest` reuses that model, so nothing is fitted twice.
Seeding, checkpoints and exact replay come from the loop base (`gpvi.loops.base`); a checkpoint
also holds the asked pool indices and the history.
"""

from __future__ import annotations

import io
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from gpvi._validation import check_tensor
from gpvi.loops.active_tools import model_metrics, optimize_batch, parse_update, pool_bounds
from gpvi.loops.base import AskTellLoop, sobol_design
from gpvi.loops.factories import BoTorchFactory, GPVIFactory, ModelFactory
from gpvi.models.data import check_targets

#: The acquisitions an `ActiveLearner` takes by name (`gpvi.acquisition.ACQUISITION_NAMES` and "random").
ACQUISITIONS = ("variance", "entropy", "bald", "nipv", "random")
#: The ``acquisition_options`` (continuous mode's `optimize_acqf`) and their defaults.
ACQUISITION_DEFAULTS: dict[str, int] = {"num_restarts": 8, "raw_samples": 256, "maxiter": 200}
#: Points of the default reference set of "nipv" (pool points, or Sobol points of the box).
REFERENCE_SIZE = 256


class PoolExhaustedError(RuntimeError):
    """`suggest` was called when every pool point has been asked."""


class PoolExhaustedWarning(UserWarning):
    """`run` was asked for more steps than the pool has unlabelled points for; it ran fewer."""


@dataclass
class ALResult:
    """What `ActiveLearner.run` returns: the labelled points, their pool indices and the per-step records."""

    X: Tensor  # n x d, in the order labelled
    y: Tensor  # n x 1 labels (real values, or class labels)
    indices: Tensor | None  # n pool indices (pool mode), None in continuous mode
    history: list[dict[str, float]] = field(default_factory=list)


class ActiveLearner(AskTellLoop):
    """Ask/tell active learning over a pool or a box (see the module docstring).

    Args:
        model_factory: A model name ("svgp", "dual-svgp", "memory-dual", "singletaskgp", ...), a
            "module:callable" path, a `ModelFactory`, ``fn(train_X, train_Y) -> fitted Model``, or
            None with ``acquisition="random"`` (no model, no metrics).
        pool: `N x d` candidate inputs (pool mode).
        bounds: `2 x d` box of the inputs (continuous mode). Exactly one of ``pool`` and ``bounds``.
        acquisition: "variance", "entropy", "bald", "nipv" (`gpvi.acquisition`), "random", or (pool
            mode) a callable ``fn(model, X `n x d`) -> (n,)`` scores, higher better
            (`gpvi.acquisition.select_batch`).
        batch_size: Points labelled per step (k).
        update: "refit" (a full refit every step), "update" (one full fit at the first step, then
            `factory.update` every step: e.g. the "memory-dual" factory's memory-based update), or
            "refit_every:K" (a full refit every K steps, updates between). A factory that cannot
            update refits.
        num_initial: Points labelled at iteration 0 (random pool points, or a Sobol design).
        seed: Seeds the initial points, the default reference set and every step's randomness.
        test: ``(X_test, y_test)``, `t x d` and `t` (or `t x 1`): the test metrics of every step's model.
        reference: `m x d` points over which "nipv" integrates the variance (default: 256 random pool
            points, or 256 Sobol points of the box).
        model_options: Options of a named factory (e.g. ``{"likelihood": "bernoulli"}``).
        acquisition_options: Continuous mode's `optimize_acqf`: ``num_restarts`` (8), ``raw_samples``
            (256), ``maxiter`` (200).
    """

    label = "gpvi.ActiveLearner"

    def __init__(
        self,
        model_factory: str | ModelFactory | Callable | None,
        *,
        pool: Tensor | None = None,
        bounds: Tensor | None = None,
        acquisition: str | Callable = "variance",
        batch_size: int = 1,
        update: str = "refit",
        num_initial: int = 20,
        seed: int = 0,
        test: tuple[Tensor, Tensor] | None = None,
        reference: Tensor | None = None,
        model_options: dict[str, Any] | None = None,
        acquisition_options: dict[str, Any] | None = None,
    ) -> None:
        if (pool is None) == (bounds is None):
            raise ValueError("Give exactly one of `pool` (`N x d` candidates) and `bounds` (`2 x d` box).")
        if pool is not None:
            pool = check_tensor("pool", pool, ndim=(2,), shape_hint="`N x d`")
            bounds = pool_bounds(pool)
        if isinstance(acquisition, str):
            if acquisition.lower() not in ACQUISITIONS:
                raise ValueError(f"Unknown `acquisition` {acquisition!r}: use one of {ACQUISITIONS} or a callable.")
            acquisition = acquisition.lower()
        elif not callable(acquisition):
            raise TypeError(f"`acquisition` must be a name {ACQUISITIONS} or a callable, got {acquisition!r}.")
        elif pool is None:
            raise ValueError(
                "A callable `acquisition` scores pool points: it needs `pool` (with `bounds`, use a name)."
            )
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("num_initial", num_initial)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {seed!r}.")
        if pool is not None and num_initial > pool.shape[0]:
            raise ValueError(f"`num_initial` ({num_initial}) exceeds the pool's {pool.shape[0]} points.")
        if model_factory is None and acquisition != "random":
            raise ValueError(f"`model_factory` is needed for acquisition {acquisition!r} (None only with 'random').")
        unknown = set(acquisition_options or {}) - set(ACQUISITION_DEFAULTS)
        if unknown:
            raise ValueError(f"Unknown `acquisition_options` {sorted(unknown)}; known: {sorted(ACQUISITION_DEFAULTS)}.")
        super().__init__(
            bounds, model_factory, refit_every=parse_update(update), seed=seed, model_options=model_options
        )
        self._check_task(acquisition)
        self.pool = pool
        self.acquisition = acquisition
        self.batch_size = batch_size
        self.update_schedule = update
        self.num_initial = num_initial
        self.acquisition_options = {**ACQUISITION_DEFAULTS, **(acquisition_options or {})}
        self.test = None if test is None else self._check_test(test)
        self.reference = self._default_reference() if reference is None else self._check_points("reference", reference)
        self.history: list[dict[str, float]] = []
        n_pool = 0 if pool is None else pool.shape[0]
        self._asked = torch.zeros(n_pool, dtype=torch.bool, device=self.bounds.device)
        self._index_batches: list[Tensor] = []  # the pool indices labelled at each iteration
        self._pending_indices: Tensor | None = None

    # -- the loop's decisions ---------------------------------------------------------------------
    def initial_design(self) -> Tensor:
        if self.pool is None:
            return sobol_design(self.bounds, self.num_initial, self.iteration_seed(0))
        return self._take(self._random_indices(self.num_initial))

    def propose(self) -> Tensor:
        k = self.batch_size
        if self.pool is not None:
            k = min(k, self.num_unasked)
            if self.acquisition == "random":
                return self._take(self._random_indices(k))
            from gpvi.acquisition import select_batch

            idx = select_batch(
                self.model, self.pool, self.acquisition, k, reference=self.reference, exclude=self._asked.clone()
            )
            idx = torch.as_tensor(idx, dtype=torch.long, device=self.pool.device).reshape(-1)
            if idx.numel() != k or idx.unique().numel() != k or bool(self._asked[idx].any()):
                raise RuntimeError(f"select_batch returned {idx.tolist()}: not {k} distinct unasked pool indices.")
            return self._take(idx)
        if self.acquisition == "random":
            unit = torch.rand(k, self.dim, dtype=self.bounds.dtype, device=self.bounds.device)
            return self.bounds[0] + unit * (self.bounds[1] - self.bounds[0])
        opts = self.acquisition_options
        return optimize_batch(self.model, self.acquisition, k, self.bounds, reference=self.reference, **opts)

    def result(self) -> ALResult:
        indices = None if self.pool is None else self.indices
        return ALResult(self.X.clone(), self.Y.clone(), indices, [dict(r) for r in self.history])

    def progress_postfix(self) -> dict[str, str]:
        last = self.history[-1] if self.history else {}
        shown = {k: f"{last[k]:.4g}" for k in ("rmse", "accuracy", "nlpd") if k in last}
        return {"labels": str(self.X.shape[0]), **shown}

    # -- ask / tell -------------------------------------------------------------------------------
    def suggest(self) -> Tensor:
        """The next points to label (pool rows in pool mode; `suggested_indices` are their indices).

        Raises `PoolExhaustedError` when every pool point has been asked.
        """
        if self._pending is None and self.iteration > 0:
            if self.pool is not None and self.num_unasked == 0:
                raise PoolExhaustedError(f"All {self.pool.shape[0]} pool points have been asked.")
            self.evaluate()  # the model of this step, refreshed once and recorded
        X = super().suggest()
        if self.history and self.history[-1]["step"] == self.iteration:
            record = self.history[-1]
            record["acq_time"] = self._last_timing["acq_time"]
            record["time"] = record["fit_time"] + record["acq_time"]
        return X

    @property
    def suggested_indices(self) -> Tensor:
        """The pool indices of the points `suggest` returned (pool mode; before they are observed)."""
        if self.pool is None:
            raise RuntimeError("`suggested_indices` exists in pool mode only (the learner was given `bounds`).")
        if self._pending_indices is None:
            raise RuntimeError("Nothing is suggested: call suggest() first.")
        return self._pending_indices.clone()

    @property
    def indices(self) -> Tensor:
        """The pool indices labelled so far, in order (pool mode)."""
        if self.pool is None:
            raise RuntimeError("`indices` exists in pool mode only (the learner was given `bounds`).")
        if not self._index_batches:
            return torch.zeros(0, dtype=torch.long, device=self.pool.device)
        return torch.cat(self._index_batches)

    @property
    def num_unasked(self) -> int:
        """Pool points never suggested nor labelled (pool mode; points suggested and pending count as asked)."""
        pending = 0 if self._pending_indices is None else self._pending_indices.numel()
        return int((~self._asked).sum()) - pending

    def observe(self, X: Tensor, Y: Tensor) -> None:
        """Record labels: `n x d` inputs and `n` (or `n x 1`) labels.

        In pool mode the rows of ``X`` must be pool rows: the suggested ones (in any order), or,
        with nothing suggested, any rows not labelled yet; they are matched to their indices.
        """
        if self.pool is None:
            self._check_labels(Y)
            super().observe(X, Y)
            return
        X = check_tensor("X", X, ndim=(2,), shape_hint="`n x d`")
        if X.shape[-1] != self.dim:
            raise ValueError(f"`X` must have d = {self.dim} columns, got {X.shape[-1]}.")
        self.observe_indices(self._match(X.to(self.pool)), Y)

    def observe_indices(self, indices: Tensor, Y: Tensor) -> None:
        """Record labels of pool points by index (pool mode): `n` indices and `n` (or `n x 1`) labels.

        With points suggested, ``indices`` must be the suggested ones (in any order).
        """
        if self.pool is None:
            raise RuntimeError("observe_indices() needs pool mode (the learner was given `bounds`).")
        idx = torch.as_tensor(indices, device=self.pool.device)
        if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.ndim != 1 or idx.numel() == 0:
            raise ValueError(f"`indices` must be a non-empty 1-d tensor of ints, got {indices!r}.")
        idx = idx.long()
        if bool(((idx < 0) | (idx >= self.pool.shape[0])).any()):
            raise ValueError(f"`indices` must be in 0..{self.pool.shape[0] - 1}, got {idx.tolist()}.")
        if idx.unique().numel() != idx.numel():
            raise ValueError(f"`indices` holds repeated pool indices: {idx.tolist()}.")
        if bool(self._asked[idx].any()):
            raise ValueError(f"Pool indices {idx[self._asked[idx]].tolist()} are labelled already.")
        pending = self._pending_indices
        if pending is not None and set(idx.tolist()) != set(pending.tolist()):
            raise ValueError(f"`indices` {idx.tolist()} must be the suggested ones, {pending.tolist()}.")
        self._check_labels(Y)
        super().observe(self.pool[idx], Y)
        self._asked[idx] = True
        self._index_batches.append(idx.clone())
        self._pending_indices = None

    def run(self, oracle: Callable[[Tensor], Tensor] | Tensor, n: int, *, progress: bool | None = None) -> ALResult:
        """Label ``n`` more steps' points (after the initial ones, on a fresh learner), then `evaluate`.

        Args:
            oracle: The labels: a callable on `k x d` inputs returning `k` (or `k x 1`) labels, or, in
                pool mode, a tensor of the pool's labels, `N` or `N x 1`, read at the asked indices.
            n: Steps after the initial design (a non-negative int; ``run(f, 3)`` twice equals
                ``run(f, 6)``). In pool mode, when the pool runs out first, a `PoolExhaustedWarning`
                says so and the steps the pool allows run.
            progress: Show a progress bar (`gpvi.progress.show_progress`'s rule when None).
        """
        f = self._oracle(oracle)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"`n` must be a non-negative int (steps after the initial design), got {n!r}.")
        if self.pool is not None:
            possible = self._steps_left()
            if n > possible:
                warnings.warn(
                    f"The pool has points for {possible} more step(s) of {self.batch_size}, not {n}: "
                    f"running {possible}.",
                    PoolExhaustedWarning,
                    stacklevel=2,
                )
                n = possible
        super().run(f, n, progress=progress)
        if self.iteration > 0:
            self.evaluate()
        return self.result()

    def evaluate(self) -> dict[str, float]:
        """The record of the model for the labels so far: refreshed once (the next `suggest` proposes
        with it) and, with ``test``, its test metrics; appended to `history` once. Returns the record."""
        if self.iteration == 0:
            raise RuntimeError("No labels yet: evaluate() needs the initial points observed.")
        if self.history and self.history[-1]["step"] == self.iteration:
            return dict(self.history[-1])
        fit_time = self.refresh_model()
        record: dict[str, float] = {
            "step": self.iteration,
            "labels": self.X.shape[0],
            "fit_time": fit_time,
            "acq_time": 0.0,
            "time": fit_time,
        }
        if self.test is not None and self.model is not None:
            start = time.perf_counter()
            with torch.random.fork_rng(devices=[]):  # Monte Carlo class probabilities: seeded, and no one else's draws
                torch.manual_seed(self.iteration_seed(-1 - self.iteration))
                record.update(model_metrics(self.model, *self.test))
            record["eval_time"] = time.perf_counter() - start
        self.history.append(record)
        return dict(record)

    # -- resuming ---------------------------------------------------------------------------------
    def checkpoint(self) -> bytes:
        """The loop's model state, the pool indices labelled at each iteration and the history, as bytes."""
        buffer = io.BytesIO()
        indices = [b.tolist() for b in self._index_batches]
        torch.save({"loop": super().checkpoint(), "indices": indices, "history": self.history}, buffer)
        return buffer.getvalue()

    def restore(self, batches: list[tuple[Tensor, Tensor]], checkpoint: bytes | None) -> None:
        """Continue from the observed batches (one per iteration, the initial one first) and a checkpoint.

        In pool mode the checkpoint's indices say which pool rows each batch labelled (its ``X`` must
        be those rows); without a checkpoint the rows are matched to the pool. The next `suggest`
        equals the uninterrupted learner's.
        """
        if self.iteration != 0:
            raise RuntimeError("restore() needs a fresh learner.")
        state = None if checkpoint is None else torch.load(io.BytesIO(checkpoint), weights_only=False)
        indices = None if state is None or self.pool is None else state["indices"]
        if indices is not None and len(indices) != len(batches):
            raise ValueError(
                f"The checkpoint names {len(indices)} batches of pool indices, got {len(batches)} batches."
            )
        for i, (X, Y) in enumerate(batches):
            if indices is None:
                self.observe(X, Y)
                continue
            idx = torch.tensor(indices[i], dtype=torch.long, device=self.pool.device)
            if X.shape != (idx.numel(), self.dim) or not torch.equal(X.to(self.pool), self.pool[idx]):
                raise ValueError(f"Batch {i}'s `X` is not the pool rows {indices[i]} the checkpoint names.")
            self.observe_indices(idx, Y)
        if state is not None:
            self.history = [dict(r) for r in state["history"]]
            self._load_model_state(state["loop"])

    # -- internals --------------------------------------------------------------------------------
    def _take(self, idx: Tensor) -> Tensor:
        self._pending_indices = idx
        return self.pool[idx].clone()

    def _random_indices(self, k: int) -> Tensor:
        """``k`` random pool indices not asked yet (under the iteration's seed)."""
        free = (~self._asked).nonzero().reshape(-1)
        gen = torch.Generator().manual_seed(self.iteration_seed(self.iteration))
        return free[torch.randperm(free.numel(), generator=gen)[:k].to(free.device)]

    def _match(self, X: Tensor) -> Tensor:
        """The pool indices of the rows of ``X`` (among the suggested ones, else among those not labelled)."""
        candidates = self._pending_indices if self._pending_indices is not None else (~self._asked).nonzero()[:, 0]
        equal = (X.unsqueeze(1) == self.pool[candidates].unsqueeze(0)).all(-1)  # n x m
        out, taken = [], set()
        for i in range(X.shape[0]):
            hits = [int(c) for c in candidates[equal[i]].tolist() if int(c) not in taken]
            if not hits:
                which = "suggested" if self._pending_indices is not None else "unlabelled pool"
                raise ValueError(f"Row {i} of `X` is none of the {which} points (use observe_indices for indices).")
            out.append(hits[0])
            taken.add(hits[0])
        return torch.tensor(out, dtype=torch.long, device=self.pool.device)

    def _steps_left(self) -> int:
        """Steps ``run`` can take before the pool runs out (a suggested batch counts as one)."""
        pending = self._pending_indices is not None
        free = self.num_unasked
        if self.iteration == 0:  # the initial points are not a step
            return math.ceil(max(0, free if pending else free - self.num_initial) / self.batch_size)
        return int(pending) + math.ceil(free / self.batch_size)

    def _oracle(self, oracle: Callable | Tensor) -> Callable[[Tensor], Tensor]:
        if callable(oracle) and not isinstance(oracle, Tensor):
            return oracle
        if not isinstance(oracle, Tensor):
            raise TypeError(f"`oracle` must be callable or a tensor of the pool's labels, got {type(oracle).__name__}.")
        if self.pool is None:
            raise TypeError("A tensor `oracle` holds a pool's labels; in continuous mode pass a callable.")
        n = self.pool.shape[0]
        if oracle.shape not in ((n,), (n, 1)):
            raise ValueError(f"`oracle` must hold the pool's labels, `{n}` or `{n} x 1`, got {tuple(oracle.shape)}.")
        labels = oracle.reshape(n, 1).to(self.bounds)
        return lambda X: labels[self.suggested_indices]

    def _default_reference(self) -> Tensor | None:
        if self.acquisition != "nipv":
            return None
        if self.pool is None:
            return sobol_design(self.bounds, REFERENCE_SIZE, self.iteration_seed(-1))
        gen = torch.Generator().manual_seed(self.iteration_seed(-1))
        idx = torch.randperm(self.pool.shape[0], generator=gen)[:REFERENCE_SIZE]
        return self.pool[idx.to(self.pool.device)]

    def _check_task(self, acquisition: str | Callable) -> None:
        """Refuse a classification acquisition with a regression factory and "nipv" with a classifier
        (for the factories that say which they build: gpvi's and BoTorch's)."""
        if not isinstance(self.factory, (GPVIFactory, BoTorchFactory)):
            return
        if acquisition in ("entropy", "bald") and not self.factory.classifier:
            raise ValueError(
                f"`acquisition` {acquisition!r} needs a classifier: pass a gpvi model with "
                "model_options={'likelihood': 'bernoulli'} (or 'softmax:C'); for regression use 'variance' or 'nipv'."
            )
        if acquisition == "nipv" and self.factory.classifier:
            raise ValueError(
                "`acquisition` 'nipv' needs a Gaussian likelihood; for a classifier use 'entropy' or 'bald'."
            )

    def _check_points(self, name: str, X: Tensor) -> Tensor:
        X = check_tensor(name, X, ndim=(2,), shape_hint="`m x d`")
        if X.shape[-1] != self.dim:
            raise ValueError(f"`{name}` must have d = {self.dim} columns, got {X.shape[-1]}.")
        if X.dtype != self.bounds.dtype:
            raise TypeError(f"`{name}` is {X.dtype} but the learner's inputs are {self.bounds.dtype}.")
        return X

    def _check_test(self, test: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        if not (isinstance(test, (tuple, list)) and len(test) == 2):
            raise TypeError("`test` must be a pair (X_test `t x d`, y_test `t` or `t x 1`).")
        X = self._check_points("test[0]", test[0])
        y = check_tensor("test[1]", test[1], ndim=(1, 2), shape_hint="`t` or `t x 1`")
        if y.numel() != X.shape[0] or (y.ndim == 2 and y.shape[1] != 1):
            raise ValueError(f"`test[1]` must be `{X.shape[0]}` or `{X.shape[0]} x 1` labels, got {tuple(y.shape)}.")
        return X, y.reshape(-1)

    def _check_labels(self, Y: Tensor) -> None:
        """A classifier's labels must be its classes' (checked before anything is recorded)."""
        likelihood = getattr(self.factory, "likelihood", None)
        if getattr(self.factory, "classifier", False) and isinstance(Y, Tensor):
            try:
                check_targets(likelihood, Y.reshape(-1, 1))
            except ValueError as err:
                raise ValueError(f"`Y`: {err}") from None


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


__all__ = [
    "ACQUISITIONS",
    "ACQUISITION_DEFAULTS",
    "ALResult",
    "ActiveLearner",
    "PoolExhaustedError",
    "PoolExhaustedWarning",
    "REFERENCE_SIZE",
]
