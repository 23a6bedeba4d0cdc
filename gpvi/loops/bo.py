"""Bayesian optimisation as an ask/tell loop over any BoTorch model factory.

    loop = BayesOpt(bounds, model_factory="svgp", acquisition="qlogei", minimize=True, seed=0)
    result = loop.run(f, 50)                      # initial design + 50 iterations; run(f, 10): 10 more
    X = loop.suggest(); loop.observe(X, f(X))

Each iteration t: (re)fit the model on all observations (warm-started, step-capped for variational
models; every ``refit_every`` iterations a full refit, in between ``factory.update`` absorbs the
new points), build the acquisition, and maximise it with BoTorch's `optimize_acqf` over the
problem's box. The initial design is a scrambled Sobol sequence. Seeding, checkpoints and exact
replay come from the loop base (`gpvi.loops.base`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.models.model import Model
from botorch.optim import optimize_acqf
from torch import Tensor

from gpvi.loops.base import AskTellLoop, sobol_design
from gpvi.loops.factories import ModelFactory

#: The acquisition names `BayesOpt` accepts (besides a callable).
ACQUISITIONS = ("qlogei", "qlognei", "ucb", "ts", "random")
#: The ``acquisition_options`` and their defaults (a value must have the default's type; an int passes for beta).
ACQUISITION_DEFAULTS: dict[str, float | int] = {"beta": 2.0, "num_restarts": 8, "raw_samples": 256, "maxiter": 200}


@dataclass
class BOResult:
    """What `BayesOpt.run` returns: all observations (problem's sign) and per-iteration timings."""

    X: Tensor  # n x d
    Y: Tensor  # n x 1
    best_X: Tensor  # d
    best_Y: float
    timings: list[dict[str, float]] = field(default_factory=list)


class BayesOpt(AskTellLoop):
    """Ask/tell Bayesian optimisation (maximises by default; ``minimize=True`` for test functions).

    Args:
        bounds: `2 x d` box of the inputs.
        model_factory: "singletaskgp" (BoTorch's exact GP), "svgp" or "dual-svgp" (gpvi), any name of
            the model registry, a "module:callable" path, a `ModelFactory`, or
            ``fn(train_X, train_Y) -> fitted Model``.
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

    label = "gpvi.BayesOpt"

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
        if isinstance(acquisition, str) and acquisition.lower() not in ACQUISITIONS:
            raise ValueError(f"Unknown acquisition {acquisition!r}: use one of {ACQUISITIONS} or a callable.")
        if not isinstance(q, int) or q < 1:
            raise ValueError(f"`q` must be a positive int, got {q!r}.")
        self.acquisition = acquisition.lower() if isinstance(acquisition, str) else acquisition
        self.is_random = self.acquisition == "random"
        options = dict(ACQUISITION_DEFAULTS)
        unknown = set(acquisition_options or {}) - set(options)
        if unknown:
            raise ValueError(f"Unknown `acquisition_options` {sorted(unknown)}; known: {sorted(options)}.")
        self.acquisition_options = {**options, **(acquisition_options or {})}
        super().__init__(
            bounds,
            None if self.is_random else model_factory,
            refit_every=refit_every,
            seed=seed,
            model_options=model_options,
        )
        self.q = q
        self.num_initial = max(5, 2 * self.dim + 1) if num_initial is None else int(num_initial)
        self.minimize = minimize

    # -- the loop's decisions ---------------------------------------------------------------------
    def initial_design(self) -> Tensor:
        return sobol_design(self.bounds, self.num_initial, self.iteration_seed(0))

    def propose(self) -> Tensor:
        if self.is_random:
            unit = torch.rand(self.q, self.dim, dtype=self.bounds.dtype, device=self.bounds.device)
            return self.bounds[0] + unit * (self.bounds[1] - self.bounds[0])
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

    def model_targets(self) -> Tensor:
        """The observations in maximisation sign."""
        return -self.Y if self.minimize else self.Y

    def progress_postfix(self) -> dict[str, str]:
        return {"best": f"{self.best[1]:.4g}"}

    def result(self) -> BOResult:
        best_X, best_Y = self.best
        return BOResult(self.X.clone(), self.Y.clone(), best_X, best_Y, list(self.timings))

    @property
    def best(self) -> tuple[Tensor, float]:
        """(x, y) of the best observation so far (smallest y when minimising)."""
        if self.X.shape[0] == 0:
            raise RuntimeError("No observations yet.")
        i = int(self.Y[:, 0].argmin() if self.minimize else self.Y[:, 0].argmax())
        return self.X[i].clone(), float(self.Y[i, 0])

    def build_acquisition(self, model: Model) -> AcquisitionFunction:
        """The acquisition function of the current iteration for ``model``."""
        from botorch.acquisition import (
            UpperConfidenceBound,
            qLogExpectedImprovement,
            qLogNoisyExpectedImprovement,
            qUpperConfidenceBound,
        )
        from botorch.acquisition.thompson_sampling import PathwiseThompsonSampling

        Y = self.model_targets()
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


__all__ = ["ACQUISITIONS", "ACQUISITION_DEFAULTS", "BOResult", "BayesOpt"]
