"""The ask/tell base of gpvi's decision loops: seeded iterations, model refresh, checkpoint and exact replay.

    loop = SomeLoop(..., model_factory="svgp", seed=0)
    X = loop.suggest(); loop.observe(X, f(X))         # ask / tell
    result = loop.run(f, 50)                          # or the whole loop: design + 50 iterations
    result = loop.run(f, 10)                          # ... and 10 more

Iteration 0 is the initial design (`initial_design`); every later iteration t refreshes the model
(a full refit by the factory every ``refit_every`` iterations, warm-started from the previous
model's hyperparameters where the factory allows; `factory.update` absorbs the new points in
between) and asks the subclass for the next points (`propose`). Everything random in iteration t
draws from a generator seeded by (seed, t), so a loop restored from its observations and
`checkpoint()` suggests exactly what the uninterrupted loop would have: the study runner relies on
this to resume killed runs. `BayesOpt` is one such loop; the active- and continual-learning loops
subclass it the same way.
"""

from __future__ import annotations

import io
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from botorch.models.model import Model
from torch import Tensor
from torch.quasirandom import SobolEngine

from gpvi._defaults import default_dtype
from gpvi._validation import check_tensor
from gpvi.loops.factories import ModelFactory, WarmState, make_factory
from gpvi.progress import progress_bar, show_progress


@dataclass
class ModelHistory:
    """Enough to rebuild the current model exactly: its last full refit and the updates since."""

    refit_iteration: int = -1
    refit_n: int = 0
    refit_warm: WarmState = None
    updates: list[tuple[int, int]] = field(default_factory=list)  # (iteration, n after the update)


def iteration_seed(seed: int, iteration: int) -> int:
    """The seed of iteration ``iteration`` of a loop seeded by ``seed``."""
    return (seed * 1_000_003 + iteration * 7919) % (2**31 - 1)


def sobol_design(bounds: Tensor, n: int, seed: int) -> Tensor:
    """``n`` scrambled Sobol points in the box ``bounds`` (`2 x d`), float64 whatever torch's default dtype.

    torch's scrambled Sobol points carry the precision of the *default* dtype whatever
    `draw(dtype=...)` says; it is fixed to float64 so the design never depends on global state.
    """
    with default_dtype(torch.float64):
        sobol = SobolEngine(bounds.shape[-1], scramble=True, seed=seed)
        unit = sobol.draw(n, dtype=torch.float64)
    unit = unit.to(bounds)
    return bounds[0] + unit * (bounds[1] - bounds[0])


class AskTellLoop(ABC):
    """Ask/tell over a box of inputs with a model factory (see the module docstring).

    Args:
        bounds: `2 x d` box of the inputs (the factories normalise inputs with it).
        model_factory: A model name ("singletaskgp", "svgp", "dual-svgp", ... from the model
            registry), a "module:callable" path, a `ModelFactory`, ``fn(train_X, train_Y) -> fitted
            Model``, or None for a loop that needs no model.
        refit_every: Full refit every this many iterations; `factory.update` in between.
        seed: Seeds the initial design and every iteration's randomness.
        model_options: Options of a named factory (e.g. ``{"num_inducing": 64}``).
    """

    #: The progress bar's label of `run`.
    label = "gpvi loop"

    def __init__(
        self,
        bounds: Tensor,
        model_factory: str | ModelFactory | Callable | None,
        *,
        refit_every: int = 1,
        seed: int = 0,
        model_options: dict[str, Any] | None = None,
    ) -> None:
        check_tensor("bounds", bounds, ndim=(2,), shape_hint="`2 x d`")
        if bounds.shape[0] != 2 or not bool((bounds[1] > bounds[0]).all()):
            raise ValueError(f"`bounds` must be `2 x d` with upper > lower, got shape {tuple(bounds.shape)}.")
        if not isinstance(refit_every, int) or refit_every < 1:
            raise ValueError(f"`refit_every` must be a positive int, got {refit_every!r}.")
        self.bounds = bounds
        self.dim = bounds.shape[-1]
        self.factory = None if model_factory is None else make_factory(model_factory, **(model_options or {}))
        self.refit_every = refit_every
        self.seed = seed
        self.X = bounds.new_zeros(0, self.dim)
        self.Y = bounds.new_zeros(0, 1)
        self.iteration = 0  # the iteration whose points `suggest` returns next (0: the initial design)
        self.model: Model | None = None
        self.timings: list[dict[str, float]] = []
        self._pending: Tensor | None = None
        self._warm: WarmState = None
        self._history = ModelHistory()
        self._last_timing = {"fit_time": 0.0, "acq_time": 0.0, "n_train": 0}
        self._fresh: tuple[int, float] | None = None  # (iteration, seconds): the model refreshed for it already

    # -- what a loop decides ------------------------------------------------------------------------
    @abstractmethod
    def initial_design(self) -> Tensor:
        """The points of iteration 0 (called under iteration 0's seed)."""

    @abstractmethod
    def propose(self) -> Tensor:
        """The points of the current iteration, given `self.model` (None without a factory)."""

    def model_targets(self) -> Tensor:
        """The observations as the model is fitted to them (BO: in maximisation sign)."""
        return self.Y

    def progress_postfix(self) -> dict[str, str]:
        """What `run`'s progress bar shows after each iteration."""
        return {}

    def result(self) -> Any:
        """What `run` returns."""
        return self

    # -- ask / tell -------------------------------------------------------------------------------
    def suggest(self) -> Tensor:
        """The next points to evaluate; calling it again before `observe` returns the same points."""
        if self._pending is not None:
            return self._pending.clone()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.iteration_seed(self.iteration))
            if self.iteration == 0:
                self._pending = self.initial_design()
                self._last_timing = {"fit_time": 0.0, "acq_time": 0.0, "n_train": 0}
            elif self.factory is None:
                self._pending = self.propose()
                self._last_timing = {"fit_time": 0.0, "acq_time": 0.0, "n_train": self.X.shape[0]}
            else:
                fit_time = self._fresh[1] if self._is_fresh() else self._timed_refresh()
                start = time.perf_counter()
                self._pending = self.propose()
                self._last_timing = {
                    "fit_time": fit_time,
                    "acq_time": time.perf_counter() - start,
                    "n_train": self.X.shape[0],
                }
        return self._pending.clone()

    def refresh_model(self) -> float:
        """Bring the model up to date with the observations, as the next `suggest` would, without proposing.

        For a loop that uses the model between iterations (a learning curve's test metrics after the
        last observation): the refit or update runs once, under the iteration's own seed, and the
        next `suggest` proposes with this model instead of refreshing it again (its ``fit_time`` is
        this one). A loop that calls it must call it before every `suggest` to stay deterministic
        (`suggest` otherwise refreshes and proposes under one seed). Returns the seconds the refresh
        took (0 at iteration 0, which has no model, and without a factory).
        """
        if self.iteration == 0 or self.factory is None:
            return 0.0
        if not self._is_fresh():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.iteration_seed(self.iteration))
                self._timed_refresh()
        return self._fresh[1]

    def observe(self, X: Tensor, Y: Tensor) -> None:
        """Record evaluations: `n x d` inputs and `n x 1` (or `n`) values."""
        check_tensor("X", X, ndim=(2,), shape_hint="`n x d`")
        if X.shape[-1] != self.dim:
            raise ValueError(f"`X` must have d = {self.dim} columns, got {X.shape[-1]}.")
        Y = Y.unsqueeze(-1) if Y.ndim == 1 else Y
        check_tensor("Y", Y, ndim=(2,), shape_hint="`n x 1`")
        if Y.shape != (X.shape[0], 1):
            raise ValueError(f"`Y` must be `{X.shape[0]} x 1` to match `X`, got {tuple(Y.shape)}.")
        self.X = torch.cat([self.X, X.to(self.bounds)])
        self.Y = torch.cat([self.Y, Y.to(self.bounds)])
        self.timings.append({"iteration": self.iteration, **self._last_timing})
        self._pending = None
        self._fresh = None
        self.iteration += 1

    def run(self, f: Callable[[Tensor], Tensor], n: int, *, progress: bool | None = None) -> Any:
        """Evaluate ``f`` (`n x d` -> `n` or `n x 1`) for ``n`` more iterations, after the initial design.

        On a fresh loop this is the initial design followed by ``n`` iterations (``n + 1`` calls of
        ``f``); on a loop that has already observed points (ask/tell steps, an earlier `run`, or
        `restore`) it is ``n`` further iterations, so ``run(f, 30)`` then ``run(f, 3)`` equals
        ``run(f, 33)``. Points suggested but not yet observed are evaluated first, as one of the ``n``.

        Args:
            f: The objective, called on each iteration's `q x d` points.
            n: Iterations to run after the initial design (a non-negative int).
            progress: Show a progress bar (default `gpvi.progress.show_progress`: on a terminal or in
                Jupyter, never under pytest; `GPVI_PROGRESS=0` turns bars off).
        """
        if not callable(f):
            raise TypeError(f"`f` must be callable (`n x d` -> `n` or `n x 1`), got {type(f).__name__}.")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"`n` must be a non-negative int (iterations after the initial design), got {n!r}.")
        stop = (n + 1) if self.iteration == 0 else self.iteration + n  # the first iteration not run
        bar = progress_bar(stop - self.iteration, show_progress(progress), desc=self.label)
        try:
            while self.iteration < stop:
                X = self.suggest()
                self.observe(X, f(X))
                if bar is not None:  # the postfix first, unrefreshed: a bar still in its delay stays hidden
                    bar.set_postfix(self.progress_postfix(), refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self.result()

    # -- resuming ---------------------------------------------------------------------------------
    def checkpoint(self) -> bytes:
        """The loop's model state as bytes (warm start and replay record; small: hyperparameters only)."""
        buffer = io.BytesIO()
        torch.save({"warm": self._warm, "history": self._history.__dict__}, buffer)
        return buffer.getvalue()

    def restore(self, batches: list[tuple[Tensor, Tensor]], checkpoint: bytes | None) -> None:
        """Continue a loop from its observed batches (one per iteration, the design first) and checkpoint.

        The model of the last iteration is rebuilt exactly (its last full refit and the updates
        since, with the same seeds), so the next `suggest` equals the uninterrupted loop's.
        """
        if self.iteration != 0:
            raise RuntimeError("restore() needs a fresh loop.")
        for X, Y in batches:
            self.observe(X, Y)
        self._load_model_state(checkpoint)

    def _load_model_state(self, checkpoint: bytes | None) -> None:
        """The model state of `checkpoint()` on a loop that has observed its batches (`restore`'s second half)."""
        if checkpoint is None or self.factory is None:
            return
        state = torch.load(io.BytesIO(checkpoint), weights_only=False)
        self._warm = state["warm"]
        self._history = ModelHistory(**state["history"])
        h = self._history
        if max([h.refit_iteration, *(it for it, _ in h.updates)]) == self.iteration:
            # checkpointed after `refresh_model` for the next iteration: that model, and no second refresh
            self.model = self._replay()
            self._fresh = (self.iteration, 0.0)
        elif not self._refit_due(self.iteration) and h.refit_iteration >= 0:
            self.model = self._replay()

    def _replay(self) -> Model:
        """Rebuild the model of the latest iteration from its refit and updates (same seeds)."""
        h = self._history
        Y = self.model_targets()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.iteration_seed(h.refit_iteration))
            model = self.factory.fit(self.X[: h.refit_n], Y[: h.refit_n], self.bounds, h.refit_warm)
        n = h.refit_n
        for iteration, n_after in h.updates:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.iteration_seed(iteration))
                model = self.factory.update(model, self.X[n:n_after], Y[n:n_after])
            n = n_after
        return model

    # -- internals --------------------------------------------------------------------------------
    def iteration_seed(self, iteration: int) -> int:
        """The seed of iteration ``iteration`` of this loop (`gpvi.loops.iteration_seed` of its ``seed``)."""
        return iteration_seed(self.seed, iteration)

    def _is_fresh(self) -> bool:
        return self._fresh is not None and self._fresh[0] == self.iteration

    def _timed_refresh(self) -> float:
        """`_refresh_model`, marking the model fresh for this iteration; returns the seconds it took."""
        start = time.perf_counter()
        self._refresh_model()
        self._fresh = (self.iteration, time.perf_counter() - start)
        return self._fresh[1]

    def _refit_due(self, iteration: int) -> bool:
        return (iteration - 1) % self.refit_every == 0

    def _refresh_model(self) -> None:
        """Full refit every ``refit_every`` iterations (warm-started), `factory.update` in between."""
        n = self.X.shape[0]
        Y = self.model_targets()
        if self.model is not None and not self._refit_due(self.iteration):
            n_model = self._history.updates[-1][1] if self._history.updates else self._history.refit_n
            updated = self.factory.update(self.model, self.X[n_model:], Y[n_model:])
            if updated is not None:
                self.model = updated
                self._history.updates.append((self.iteration, n))
                self._warm = self.factory.warm_state(updated)
                return
        warm = self._warm
        self.model = self.factory.fit(self.X, Y, self.bounds, warm)
        self._history = ModelHistory(self.iteration, n, warm, [])
        self._warm = self.factory.warm_state(self.model)


__all__ = ["AskTellLoop", "ModelHistory", "iteration_seed", "sobol_design"]
