"""SVGP: a sparse variational GP built from data, usable anywhere BoTorch expects a model.

Hensman, Fusi & Lawrence (2013), "Gaussian Processes for Big Data", UAI; Hensman, Matthews &
Ghahramani (2015), "Scalable Variational Gaussian Process Classification", AISTATS.

    q(f) = N(μ(X) + Kfu L⁻ᵀ m,  Kff + Kfu L⁻ᵀ(S − I)L⁻¹ Kuf)          (whitened: u = μ(Z) + L v)
    ELBO = (N / B) Σ_{b in batch} E_{q(f_b)}[log p(y_b | f_b)] − β KL[q(v) ‖ N(0, I)]

The model is the shared `VariationalGPModel` with two extension points: ``features`` (default
inducing points chosen from the data) and ``strategy`` (default the whitened SVGP strategy). Any
`InducingFeatures` and any strategy class with a ``from_features`` constructor plug in; the rest
(BoTorch's posterior, fantasies, transforms, `gpvi.fit`) comes from the base.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from botorch.models.transforms.input import InputTransform
from botorch.models.transforms.outcome import OutcomeTransform
from botorch.utils.types import DEFAULT, _DefaultType
from gpytorch.kernels import Kernel
from gpytorch.likelihoods import Likelihood
from gpytorch.means import ConstantMean, Mean
from torch import Tensor

from gpvi.core.likelihoods import check_num_quadrature
from gpvi.features.base import InducingFeatures
from gpvi.features.points import InducingPoints
from gpvi.features.selection import select_inducing_points
from gpvi.models.base import VariationalGPModel
from gpvi.models.data import TrainingData, is_gaussian, prepare_training_data
from gpvi.models.priors import default_kernel, singletaskgp_modules
from gpvi.models.registry import ModelEntry, register_model
from gpvi.variational.base import PosteriorStrategy
from gpvi.variational.svgp import WhitenedSVGPStrategy

#: The default Gaussian likelihood's noise floor (BoTorch's ``MIN_INFERRED_NOISE_LEVEL``), in the units of
#: the (standardised) targets: noise-free data meet it rather than an ill-conditioned bound.
MIN_NOISE = 1e-4


def spread(X: Tensor) -> Tensor:
    """Per-column standard deviation of `n x d` inputs, 1 where it is undefined or zero (n = 1, constant)."""
    std = X.std(0) if X.shape[0] > 1 else torch.ones_like(X[0])
    return torch.where(std > 1e-8, std, torch.ones_like(std))


class SVGP(VariationalGPModel):
    """Sparse variational GP (SVGP) as a BoTorch model.

    Example:
        >>> model = SVGP(train_X, train_Y, num_inducing=64)
        >>> gpvi.fit(model, max_steps=500)
        >>> model.posterior(test_X).mean                      # `n x 1`

    Args:
        train_X: `n x d` training inputs (float64 recommended).
        train_Y: `n x m` training targets; m > 1 gives m independent outputs. For
            `SoftmaxLikelihood`, an `n x 1` tensor of class labels (one latent GP per class).
        likelihood: A gpytorch likelihood (default SingleTaskGP's: `GaussianLikelihood`, one noise
            per output, LogNormal(−4, 1) prior, at least `MIN_NOISE` = 1e-4 of the standardised
            targets' variance).
        num_inducing: M, the number of inducing points (capped at n: M >= n gives Z = X).
        inducing: "kmeans", "greedy" (greedy variance reduction) or an `M x d` tensor.
        kernel: A gpytorch kernel (default SingleTaskGP's: RBF, ARD, dimension-scaled lengthscale
            prior, batched over outputs; in a `ScaleKernel` for non-Gaussian likelihoods; see
            `gpvi.models.priors.default_kernel`).
        mean_module: A gpytorch mean (default `ConstantMean`).
        features: `InducingFeatures` to use instead of inducing points chosen by ``inducing``.
        strategy: The posterior: a `PosteriorStrategy` class (built on the features with
            ``from_features(features, batch_shape=..., jitter=...)``) or an instance (which
            brings its own features); default `WhitenedSVGPStrategy`.
        whiten: Parameterise q on whitened v = L⁻¹(u − μ(Z)) (default) or on u directly
            (the default strategy only).
        learn_inducing: Train the inducing inputs (features chosen here only).
        jitter: Added to Kuu's diagonal (default 1e-6 in float64).
        input_transform: A BoTorch input transform, applied once to the training inputs (so
            minibatches see fixed statistics) and to every `posterior` input.
        outcome_transform: A BoTorch outcome transform applied to ``train_Y`` at construction and
            undone in `posterior`; default `Standardize(m)` for a Gaussian likelihood (as
            SingleTaskGP), none for other likelihoods; None: the targets as given.
        num_quadrature: The rule of the expected log-likelihoods of non-Gaussian likelihoods: None
            (default: adaptive, accurate for any q(f)) or K Gauss–Hermite nodes (faster, accurate
            only while q(f) is narrow on the likelihood's scale); `gpvi.fit` takes it too.
        seed: Seed for the inducing-point initialisation.
    """

    #: The strategy built when ``strategy`` is not given.
    default_strategy: ClassVar[type[PosteriorStrategy]] = WhitenedSVGPStrategy

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        likelihood: Likelihood | None = None,
        num_inducing: int = 128,
        inducing: str | Tensor = "kmeans",
        kernel: Kernel | None = None,
        *,
        mean_module: Mean | None = None,
        features: InducingFeatures | None = None,
        strategy: type[PosteriorStrategy] | PosteriorStrategy | None = None,
        whiten: bool = True,
        learn_inducing: bool = True,
        jitter: float | None = None,
        input_transform: InputTransform | None = None,
        outcome_transform: OutcomeTransform | _DefaultType | None = DEFAULT,
        num_quadrature: int | None = None,
        seed: int = 0,
    ) -> None:
        check_num_quadrature(num_quadrature)
        data = prepare_training_data(
            train_X, train_Y, likelihood, input_transform, outcome_transform, check_scaling=kernel is None
        )
        batch, d = data.latent_batch, data.X.shape[-1]
        if kernel is None:
            kernel = default_kernel(data.X_model, gaussian=is_gaussian(likelihood), batch_shape=batch)
        if mean_module is None:
            mean_module = ConstantMean(batch_shape=batch)
        if likelihood is None:
            _, likelihood = singletaskgp_modules(d, batch_shape=batch, dtype=data.X.dtype)
        strategy = self._build_strategy(
            data, strategy, features, kernel, num_inducing, inducing, learn_inducing, whiten, jitter, seed
        )
        super().__init__(
            data,
            strategy=strategy,
            mean_module=mean_module,
            covar_module=kernel,
            likelihood=likelihood,
            input_transform=input_transform,
            outcome_transform=data.outcome_transform,
        )
        self.num_quadrature = num_quadrature

    def _build_strategy(
        self,
        data: TrainingData,
        strategy: Any,
        features: InducingFeatures | None,
        kernel: Kernel,
        num_inducing: int,
        inducing: str | Tensor,
        learn_inducing: bool,
        whiten: bool,
        jitter: float | None,
        seed: int,
    ) -> PosteriorStrategy:
        if isinstance(strategy, PosteriorStrategy):
            if features is not None:
                raise TypeError("Pass `features` or a `strategy` instance (which holds its features), not both.")
            return strategy
        if strategy is not None and not (isinstance(strategy, type) and issubclass(strategy, PosteriorStrategy)):
            raise TypeError(f"`strategy` must be a PosteriorStrategy class or instance, got {strategy!r}.")
        if features is None:
            Z = select_inducing_points(data.X_model, num_inducing, inducing, kernel.to(data.X), seed=seed)
            features = InducingPoints(Z, learn_locations=learn_inducing)
        elif not isinstance(features, InducingFeatures):
            raise TypeError(f"`features` must be InducingFeatures, got {type(features).__name__}.")
        cls = self.default_strategy if strategy is None else strategy
        if not whiten:
            if cls is not WhitenedSVGPStrategy:
                raise TypeError(f"`whiten=False` applies to WhitenedSVGPStrategy only, not {cls.__name__}.")
            return WhitenedSVGPStrategy(features, jitter=jitter, whiten=False, batch_shape=data.latent_batch)
        return cls.from_features(features, batch_shape=data.latent_batch, jitter=jitter)


register_model(
    ModelEntry(
        name="svgp",
        label="gpvi SVGP",
        constructor=SVGP,
        trainer="gpvi",
        defaults={
            "bo": {"max_steps": 300, "warm_steps": 100, "update_steps": 20, "fit": "collapsed"},
            "regression": {
                "num_inducing": 256,
                "inducing": "kmeans",
                "max_steps": 2000,
                "batch_size": 1024,
                "optimizer": "ngd",
                "lr": 0.01,
                "early_stopping": False,
            },
        },
    )
)

__all__ = ["MIN_NOISE", "SVGP", "spread"]
