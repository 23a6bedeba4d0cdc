"""Bayesian optimisation as an ask/tell loop over any BoTorch model factory.

    loop = BayesOpt(bounds, model_factory="svgp", acquisition="qlogei", minimize=True, seed=0)
    result = loop.run(f, 50)                      # or, by hand:
    X = loop.suggest(); loop.observe(X, f(X))

Each iteration t: (re)fit the model on all observations (warm-started, step-capped for variational
models; every ``refit_every`` iterations a full refit, in between ``factory.update`` absorbs the
new points), build the acquisition, and maximise it with BoTorch's `optimize_acqf` over the
problem's box. The initial design is a scrambled Sobol sequence. Everything random in iteration t
draws from a generator seeded by (seed, t), so a loop restored from its observations and
`checkpoint()` suggests exactly what the uninterrupted loop would have (the studies runner relies
on this to resume killed runs).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.models.model import Model
from botorch.optim import optimize_acqf
from torch import Tensor
from torch.quasirandom import SobolEngine

from gpvi._defaults import default_dtype
from gpvi._validation import check_tensor
from gpvi.loops.factories import ModelFactory, WarmState, make_factory

ACQUISITIONS = ("qlogei", "qlognei", "ucb", "ts", "random")


@dataclass
class BOResult:
    """What `BayesOpt.run` returns: all observations (problem's sign) and per-iteration timings."""

    X: Tensor  # n x d
    Y: Tensor  # n x 1
    best_X: Tensor  # d
    best_Y: float
    timings: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _ModelHistory:
    """Enough to rebuild the current model exactly: its last full refit and the updates since."""

    refit_iteration: int = -1
    refit_n: int = 0
    refit_warm: WarmState = None
    updates: list[tuple[int, int]] = field(default_factory=list)  # (iteration, n after the update)


class BayesOpt:
    """Ask/tell Bayesian optimisation (maximises by default; ``minimize=True`` for test functions).

    Args:
        bounds: `2 x d` box of the inputs.
        model_factory: "singletaskgp" (BoTorch's exact GP), "svgp" or "dual-svgp" (gpvi), a "module:callable"
            path, a `ModelFactory`, or ``fn(train_X, train_Y) -> fitted Model``.
        acquisition: "qlogei", "qlognei", "ucb", "ts" (pathwise Thompson sampling), "random"
            (uniform random search, no model), or ``fn(model, train_X, train_Y) -> AcquisitionFunction``
            (train_Y in maximisation sign).
        q: Points per iteration.
        num_initial: Size of the Sobol initial design (default 2d + 1, at least 5).
        refit_every: Full refit every this many iterations; `factory.update` in between.
        minimize: Minimise the objective (the loop maximises −f internally).
        seed: Seeds the initial design and every iteration's randomness.
        model_options: Options of a named factory (e.g. ``{"num_inducing": 64}`` for "svgp").
        acquisition_options: ``beta`` (UCB, default 2.0), ``num_restarts`` (8), ``raw_samples`` (256),
            ``maxiter`` (200, L-BFGS-B iterations per restart).
    """

    def __init__(
        self,
        bounds: Tensor,
        model_factory: str | ModelFactory | Callable = "svgp",
        acquisition: str | Callable = "qlogei",
        *,
        q: int = 1,
        num_initial: int | None = None,
        refit_every: int = 1,
        minimize: bool = False,
        seed: int = 0,
        model_options: dict[str, Any] | None = None,
        acquisition_options: dict[str, Any] | None = None,
    ) -> None:
        check_tensor("bounds", bounds, ndim=(2,), shape_hint="`2 x d`")
        if bounds.shape[0] != 2 or not bool((bounds[1] > bounds[0]).all()):
            raise ValueError(f"`bounds` must be `2 x d` with upper > lower, got shape {tuple(bounds.shape)}.")
        if isinstance(acquisition, str) and acquisition.lower() not in ACQUISITIONS:
            raise ValueError(f"Unknown acquisition {acquisition!r}: use one of {ACQUISITIONS} or a callable.")
        for name, value in (("q", q), ("refit_every", refit_every)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        self.bounds = bounds
        self.dim = bounds.shape[-1]
        self.acquisition = acquisition.lower() if isinstance(acquisition, str) else acquisition
        self.is_random = self.acquisition == "random"
        self.factory = None if self.is_random else make_factory(model_factory, **(model_options or {}))
        self.q = q
        self.num_initial = max(5, 2 * self.dim + 1) if num_initial is None else int(num_initial)
        self.refit_every = refit_every
        self.minimize = minimize
        self.seed = seed
        self.acquisition_options = {"beta": 2.0, "num_restarts": 8, "raw_samples": 256, "maxiter": 200}
        unknown = set(acquisition_options or {}) - set(self.acquisition_options)
        if unknown:
            raise ValueError(
                f"Unknown `acquisition_options` {sorted(unknown)}; known: {sorted(self.acquisition_options)}."
            )
        self.acquisition_options.update(acquisition_options or {})
        self.X = bounds.new_zeros(0, self.dim)
        self.Y = bounds.new_zeros(0, 1)
        self.iteration = 0  # the iteration whose points `suggest` returns next (0: the initial design)
        self.model: Model | None = None
        self.timings: list[dict[str, float]] = []
        self._pending: Tensor | None = None
        self._warm: WarmState = None
        self._history = _ModelHistory()
        self._last_timing = {"fit_time": 0.0, "acq_time": 0.0, "n_train": 0}

    # -- ask / tell -------------------------------------------------------------------------------
    def suggest(self) -> Tensor:
        """The next points to evaluate: the Sobol design at iteration 0, then `q x d` per iteration.

        Calling it again before `observe` returns the same points.
        """
        if self._pending is not None:
            return self._pending.clone()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._iteration_seed(self.iteration))
            if self.iteration == 0:
                self._pending = self._initial_design()
                self._last_timing = {"fit_time": 0.0, "acq_time": 0.0, "n_train": 0}
            elif self.is_random:
                self._pending = self._random_points(self.q)
                self._last_timing = {"fit_time": 0.0, "acq_time": 0.0, "n_train": self.X.shape[0]}
            else:
                start = time.perf_counter()
                self._refresh_model()
                fitted = time.perf_counter()
                self._pending = self._optimize_acquisition()
                self._last_timing = {
                    "fit_time": fitted - start,
                    "acq_time": time.perf_counter() - fitted,
                    "n_train": self.X.shape[0],
                }
        return self._pending.clone()

    def observe(self, X: Tensor, Y: Tensor) -> None:
        """Record evaluations: `n x d` inputs and `n x 1` (or `n`) values in the problem's sign."""
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
        self.iteration += 1

    def run(self, f: Callable[[Tensor], Tensor], n: int, *, progress: bool | None = None) -> BOResult:
        """Evaluate ``f`` (`n x d` -> `n` or `n x 1`) on the initial design, then for ``n`` iterations."""
        from gpvi.fit import _progress_bar, _show_progress

        bar = _progress_bar(n + 1, _show_progress(progress), desc="gpvi.BayesOpt")
        try:
            while self.iteration <= n:
                X = self.suggest()
                self.observe(X, f(X))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(best=f"{self.best[1]:.4g}")
        finally:
            if bar is not None:
                bar.close()
        best_X, best_Y = self.best
        return BOResult(self.X.clone(), self.Y.clone(), best_X, best_Y, list(self.timings))

    @property
    def best(self) -> tuple[Tensor, float]:
        """(x, y) of the best observation so far (smallest y when minimising)."""
        if self.X.shape[0] == 0:
            raise RuntimeError("No observations yet.")
        i = int(self.Y[:, 0].argmin() if self.minimize else self.Y[:, 0].argmax())
        return self.X[i].clone(), float(self.Y[i, 0])

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
        if checkpoint is None or self.is_random:
            return
        state = torch.load(io.BytesIO(checkpoint), weights_only=False)
        self._warm = state["warm"]
        self._history = _ModelHistory(**state["history"])
        if not self._refit_due(self.iteration) and self._history.refit_iteration >= 0:
            self.model = self._replay()

    def _replay(self) -> Model:
        """Rebuild the model of the latest iteration from its refit and updates (same seeds)."""
        h = self._history
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._iteration_seed(h.refit_iteration))
            model = self.factory.fit(self.X[: h.refit_n], self._signed(self.Y[: h.refit_n]), self.bounds, h.refit_warm)
        n = h.refit_n
        for iteration, n_after in h.updates:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._iteration_seed(iteration))
                model = self.factory.update(model, self.X[n:n_after], self._signed(self.Y[n:n_after]))
            n = n_after
        return model

    # -- internals --------------------------------------------------------------------------------
    def _iteration_seed(self, iteration: int) -> int:
        return (self.seed * 1_000_003 + iteration * 7919) % (2**31 - 1)

    def _refit_due(self, iteration: int) -> bool:
        return (iteration - 1) % self.refit_every == 0

    def _signed(self, Y: Tensor) -> Tensor:
        return -Y if self.minimize else Y

    def _initial_design(self) -> Tensor:
        # torch's scrambled Sobol points carry the precision of the *default* dtype whatever
        # `draw(dtype=...)` says; fix it to float64 so the design never depends on global state.
        with default_dtype(torch.float64):
            sobol = SobolEngine(self.dim, scramble=True, seed=self._iteration_seed(0))
            unit = sobol.draw(self.num_initial, dtype=torch.float64)
        unit = unit.to(self.bounds)
        return self.bounds[0] + unit * (self.bounds[1] - self.bounds[0])

    def _random_points(self, n: int) -> Tensor:
        unit = torch.rand(n, self.dim, dtype=self.bounds.dtype, device=self.bounds.device)
        return self.bounds[0] + unit * (self.bounds[1] - self.bounds[0])

    def _refresh_model(self) -> None:
        """Full refit every ``refit_every`` iterations (warm-started), `factory.update` in between."""
        n = self.X.shape[0]
        if self.model is not None and not self._refit_due(self.iteration):
            n_model = self._history.updates[-1][1] if self._history.updates else self._history.refit_n
            updated = self.factory.update(self.model, self.X[n_model:], self._signed(self.Y[n_model:]))
            if updated is not None:
                self.model = updated
                self._history.updates.append((self.iteration, n))
                self._warm = self.factory.warm_state(updated)
                return
        warm = self._warm
        self.model = self.factory.fit(self.X, self._signed(self.Y), self.bounds, warm)
        self._history = _ModelHistory(self.iteration, n, warm, [])
        self._warm = self.factory.warm_state(self.model)

    def build_acquisition(self, model: Model) -> AcquisitionFunction:
        """The acquisition function of the current iteration for ``model``."""
        from botorch.acquisition import (
            UpperConfidenceBound,
            qLogExpectedImprovement,
            qLogNoisyExpectedImprovement,
            qUpperConfidenceBound,
        )
        from botorch.acquisition.thompson_sampling import PathwiseThompsonSampling

        Y = self._signed(self.Y)
        if callable(self.acquisition):
            return self.acquisition(model, self.X, Y)
        if self.acquisition == "qlogei":
            return qLogExpectedImprovement(model, best_f=Y.max())
        if self.acquisition == "qlognei":
            return qLogNoisyExpectedImprovement(model, X_baseline=self.X, prune_baseline=True)
        if self.acquisition == "ucb":
            beta = self.acquisition_options["beta"]
            return UpperConfidenceBound(model, beta=beta) if self.q == 1 else qUpperConfidenceBound(model, beta=beta)
        if self.acquisition == "ts":
            return PathwiseThompsonSampling(model)
        raise ValueError(f"Unknown acquisition {self.acquisition!r}.")

    def _optimize_acquisition(self) -> Tensor:
        opts = self.acquisition_options
        candidates, _ = optimize_acqf(
            self.build_acquisition(self.model),
            bounds=self.bounds,
            q=self.q,
            num_restarts=opts["num_restarts"],
            raw_samples=opts["raw_samples"],
            options={"maxiter": opts["maxiter"]},
        )
        return candidates.detach()


__all__ = ["ACQUISITIONS", "BOResult", "BayesOpt"]
