"""The BoTorch model every gpvi posterior family shares, written once against the posterior contract.

A family is a `PosteriorStrategy` (`gpvi.variational.base`); `VariationalGPModel` turns it into a
BoTorch `Model` built from data:

- data (`gpvi.models.data`): validation, BoTorch input/outcome transforms applied once at
  construction (minibatches see fixed statistics), model-space copies, the likelihood's target
  layout (P outputs, softmax);
- BoTorch: `posterior` (latent or with observation noise; a `TorchPosterior` of the predictive
  for non-Gaussian likelihoods), `condition_on_observations` (exact Gaussian sites through the
  strategy's `conditioned`: fantasies, qKG, qNIPV), pathwise sampling (`gpvi.models.pathwise`),
  `fit_gpytorch_mll` (the ``custom_fit`` hook hands over to `gpvi.fit`), state round trips;
- what `gpvi.fit`'s recipes call: `elbo`, `natural_gradient_step`, `set_optimal_q`,
  `collapsed_elbo`, `log_prior`, `training_data`, and the parameter groups;
- `update`: absorbing new data without training (Trieste's split: `gpvi.fit` trains).

Shapes: train_X `n x d`, train_Y `n x m`; inputs to `posterior` `(*b) x q x d`. Multiple outputs
are independent latent GPs held in a batch dimension P of the kernel, mean, likelihood and q.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Any

import gpytorch
import torch
from botorch.models.approximate_gp import ApproximateGPyTorchModel
from botorch.models.model import FantasizeMixin
from botorch.models.transforms.input import InputTransform
from botorch.models.transforms.outcome import OutcomeTransform
from botorch.posteriors.gpytorch import GPyTorchPosterior
from botorch.posteriors.torch import TorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from gpytorch.kernels import Kernel
from gpytorch.likelihoods import GaussianLikelihood, Likelihood, SoftmaxLikelihood
from gpytorch.means import Mean
from gpytorch.models import ApproximateGP
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from gpvi._validation import check_tensor
from gpvi.core.likelihoods import softmax_probabilities
from gpvi.core.objectives import ElboParts, collapsed_elbo
from gpvi.features.base import InducingFeatures
from gpvi.models.data import TrainingData, check_targets
from gpvi.variational.base import InducingStrategy, PosteriorStrategy
from gpvi.variational.elbo import SiteTarget, natural_gradient_step, site_target, variational_elbo

#: Draws of q(f) behind a softmax classifier's `predict_proba` (Monte Carlo error ≲ 0.5 / √512 ≈ 0.02).
SOFTMAX_PROBA_SAMPLES = 512
#: Rows per chunk of a full-data pass (`full_data_step`): bounds the memory of one site computation.
FULL_DATA_CHUNK = 4096
#: N·M up to which the default recipe trains on all data at once ("collapsed", "cvi-em"); beyond, minibatches.
FULL_BATCH_MAX_SIZE = 50_000_000


class VariationalGPModule(ApproximateGP):
    """The gpytorch `ApproximateGP` inside a gpvi model: prior mean, kernel and the strategy.

    Keeps gpytorch's and BoTorch's names (``mean_module``, ``covar_module``,
    ``variational_strategy``), which BoTorch's pathwise sampling and `fit_gpytorch_mll` read.
    """

    def __init__(self, strategy: PosteriorStrategy, mean_module: Mean, covar_module: Kernel) -> None:
        super().__init__(strategy)
        strategy.attach(self)
        self.mean_module = mean_module
        self.covar_module = covar_module

    def forward(self, x: Tensor) -> MultivariateNormal:
        """The GP prior at ``x``: N(mean_module(x), covar_module(x))."""
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> VariationalGPModule:
        """Convert the training data with the parameters (``.to(dtype)``, ``.cuda()``), as gpytorch's ExactGP."""
        if getattr(self, "train_inputs", None) is not None:
            self.train_inputs = tuple(fn(t) for t in self.train_inputs)
            self.train_targets = fn(self.train_targets)
        return super()._apply(fn, *args, **kwargs)

    def set_strategy(self, strategy: PosteriorStrategy) -> None:
        """Replace the strategy (e.g. by a conditioned one) and make this module its owner."""
        self.variational_strategy = strategy.attach(self)

    def custom_fit(self, mll: Any = None, **kwargs: Any) -> Any:
        """Hook read by `botorch.fit.fit_gpytorch_mll`: fit the owning gpvi model with `gpvi.fit`."""
        owner = getattr(self, "_owner", None)
        if owner is None:
            raise RuntimeError("This module is not attached to a gpvi model.")
        return owner.custom_fit(mll=mll, **kwargs)


class VariationalGPModel(ApproximateGPyTorchModel, FantasizeMixin):
    """A BoTorch model around any `PosteriorStrategy` (see the module docstring).

    Subclasses build the defaults (kernel, likelihood, features, strategy) and call this
    constructor; they declare the `gpvi.fit` recipe used when none is asked for.
    """

    @property
    def default_recipe(self) -> str:
        """The `gpvi.fit` recipe used when none is given (see `gpvi.fit.recipes`).

        While the data fit in one pass (N·M ≤ `FULL_BATCH_MAX_SIZE`): "collapsed" for a Gaussian
        likelihood on inducing features (q exact, L-BFGS on the collapsed bound), else "cvi-em"
        (full-data CVI E-steps, L-BFGS M-steps). Beyond, minibatches: "cvi" for dual models, "ngd"
        for the others (natural-gradient steps on q, Adam on the rest), with early stopping.
        """
        features = getattr(self.strategy, "features", None)
        size = self.num_data * (features.num_inducing if features is not None else self.num_data)
        if size <= FULL_BATCH_MAX_SIZE:
            if self.is_gaussian and isinstance(self.strategy, InducingStrategy):
                return "collapsed"
            return "cvi-em"
        return "cvi" if hasattr(self, "dual_step") else "ngd"

    _is_fantasy: bool = False
    #: The rule of the expected log-likelihoods: None (adaptive, accurate for any q; the default) or K
    #: Gauss–Hermite nodes (`gpvi.core.likelihoods`). Read by every objective and site update.
    num_quadrature: int | None = None

    def __init__(
        self,
        data: TrainingData,
        *,
        strategy: PosteriorStrategy,
        mean_module: Mean,
        covar_module: Kernel,
        likelihood: Likelihood,
        input_transform: InputTransform | None = None,
        outcome_transform: OutcomeTransform | None = None,
    ) -> None:
        module = VariationalGPModule(strategy, mean_module, covar_module)
        super().__init__(model=module, likelihood=likelihood, num_outputs=data.Y.shape[-1])
        object.__setattr__(module, "_owner", self)
        if input_transform is not None:
            self.input_transform = input_transform
        if outcome_transform is not None:
            self.outcome_transform = outcome_transform
        self._num_latents = data.num_latents
        self._set_train_data(data.X, data.X_model, data.Y_model)
        self.to(data.X)

    # -- data -----------------------------------------------------------------------------------
    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> VariationalGPModel:
        """Convert the training data with the parameters: ``model.to(torch.float32)`` gives a float32
        model whose data, transforms and q are float32 (as gpytorch's ExactGP)."""
        if getattr(self, "train_inputs", None) is not None:
            self.train_inputs = tuple(fn(t) for t in self.train_inputs)
            self.train_targets = fn(self.train_targets)
        return super()._apply(fn, *args, **kwargs)

    @property
    def dtype(self) -> torch.dtype:
        """The model's floating-point dtype (its training inputs'): inputs must share it."""
        return self.train_inputs[0].dtype

    def check_dtype(self, **tensors: Tensor) -> None:
        """Refuse tensors of another dtype than the model's, by name (no silent casts either way)."""
        for name, tensor in tensors.items():
            if tensor is not None and tensor.dtype != self.dtype:
                raise TypeError(
                    f"`{name}` is {tensor.dtype} but the model is {self.dtype}: convert `{name}` with "
                    f"`{name}.to({self.dtype})`, or the model with `model.to({tensor.dtype})`."
                )

    @staticmethod
    def _check_noise(
        name: str, noise: Any, shape: tuple[int, ...], *, zero_ok: bool, exact_shape: bool = False
    ) -> None:
        """A tensor of noise variances: finite, non-negative (positive unless ``zero_ok``), of ``shape``
        (or broadcastable to it)."""
        check_tensor(name, noise, shape_hint=f"`{' x '.join(map(str, shape))}`")
        try:
            fits = noise.shape == shape if exact_shape else torch.broadcast_shapes(noise.shape, shape) == shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"`{name}` must have shape {shape}{'' if exact_shape else ' (or broadcast to it)'}, "
                f"got {tuple(noise.shape)}."
            )
        if (noise < 0).any() or (not zero_ok and (noise == 0).any()):
            bound = "non-negative" if zero_ok else "positive"
            raise ValueError(f"`{name}` holds noise variances: they must be {bound}, got min {noise.min().item():.3g}.")

    def _set_train_data(self, X_raw: Tensor, X_model: Tensor, Y_model: Tensor) -> None:
        """Store raw inputs (BoTorch's `train_inputs`) and model-space inputs and targets."""
        self.train_inputs = (X_raw,)
        self.train_targets = Y_model
        self.model.train_inputs = (X_model,)
        self.model.train_targets = self.latent_targets(Y_model)

    def latent_targets(self, Y: Tensor) -> Tensor:
        """`... x n x m` targets -> the likelihood's layout: (..., n) or (..., m, n)."""
        if self.is_softmax or self._num_latents == 1:
            return Y[..., 0]
        return Y.transpose(-1, -2)

    def training_data(self) -> tuple[Tensor, Tensor]:
        """(model-space inputs `n x d`, targets in the likelihood's layout): what objectives read."""
        return self.model.train_inputs[0], self.model.train_targets

    @property
    def train_X_model(self) -> Tensor:
        """Training inputs in model space (after the input transform), `n x d`."""
        return self.model.train_inputs[0]

    @property
    def num_data(self) -> int:
        """N, the number of training points."""
        return self.train_X_model.shape[-2]

    @property
    def num_latents(self) -> int:
        """P, the latent GPs (outputs, or classes of a softmax likelihood)."""
        return self._num_latents

    @property
    def is_softmax(self) -> bool:
        """Whether the likelihood is gpytorch's `SoftmaxLikelihood` (one latent GP per class)."""
        return isinstance(self.likelihood, SoftmaxLikelihood)

    @property
    def is_gaussian(self) -> bool:
        """Whether the likelihood is a `GaussianLikelihood` (q exact in closed form, the collapsed bound)."""
        return isinstance(self.likelihood, GaussianLikelihood)

    @property
    def strategy(self) -> PosteriorStrategy:
        """The approximate posterior (`gpvi.variational.PosteriorStrategy`) that holds q."""
        return self.model.variational_strategy

    @property
    def features(self) -> InducingFeatures:
        """The strategy's inducing features (`gpvi.features.InducingFeatures`)."""
        return self.strategy.features

    def plot_locations(self) -> dict[str, Tensor]:
        """The input-space locations a plot marks (`gpvi.plots`): label -> `k x d` tensor.

        Here the inducing inputs (none for features that are not point evaluations, or when the
        input transform cannot be undone); a family with other special points (a coreset, a
        memory) adds its own entries to ``super().plot_locations()``.
        """
        features = getattr(self.strategy, "features", None)
        Z = None if features is None else features.locations
        if Z is None:
            return {}
        Z = Z.detach().reshape(-1, Z.shape[-1])
        if hasattr(self, "input_transform"):
            try:
                Z = self.input_transform.untransform(Z)
            except NotImplementedError:
                return {}
        return {"inducing inputs": Z}

    @property
    def batch_shape(self) -> torch.Size:
        """Batch shape of the model (non-empty only for fantasy / conditioned models)."""
        q_batch = self.strategy._variational_distribution.batch_shape
        return q_batch[:-1] if self._num_latents > 1 else q_batch

    # -- parameter groups (what recipes optimise) -------------------------------------------------
    def variational_parameters(self) -> list[Tensor]:
        """q's trainable parameters (empty when q is held as sites)."""
        return list(self.model.variational_parameters())

    def inducing_parameters(self) -> list[Tensor]:
        """The features' trainable parameters (inducing inputs)."""
        features = getattr(self.strategy, "features", None)
        return [] if features is None else list(features.parameters())

    # -- q(f) -----------------------------------------------------------------------------------
    def latent(self, X_model: Tensor, *, diag: bool = False) -> MultivariateNormal:
        """q(f) at model-space inputs `(*b) x n x d`; batch (*b, P) for P latents."""
        if self._num_latents > 1:
            X_model = X_model.unsqueeze(-3)
        return self.model.variational_strategy(X_model, diag=diag)

    def forward(self, X: Tensor) -> MultivariateNormal:
        """q(f(X)) of the latent GP(s); in training mode ``X`` is transformed first and only marginals are built."""
        if self.training:
            X = self.transform_inputs(X)
        return self.latent(X, diag=self.training)

    def posterior(
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | Tensor = False,
        posterior_transform: Any = None,
        **kwargs: Any,
    ) -> GPyTorchPosterior | TorchPosterior:
        """Posterior at `(*b) x q x d` inputs: a `GPyTorchPosterior` (mean `(*b) x q x m`).

        ``observation_noise=True`` adds the likelihood's noise (for non-Gaussian likelihoods it
        returns the predictive distribution, e.g. Bernoulli probabilities, as a `TorchPosterior`);
        a tensor `(*b) x q x m` adds that noise variance instead.
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__}.posterior got unexpected option(s) {sorted(kwargs)}.")
        check_tensor("X", X, ndim=tuple(range(2, 10)), shape_hint="`(*b) x q x d`")
        if X.shape[-1] != self.train_inputs[0].shape[-1]:
            raise ValueError(f"`X` must have d = {self.train_inputs[0].shape[-1]} columns, got {X.shape[-1]}.")
        if isinstance(observation_noise, Tensor):
            self._check_noise("observation_noise", observation_noise, (*X.shape[:-1], self.num_outputs), zero_ok=True)
        elif not isinstance(observation_noise, bool):
            raise TypeError(
                f"`observation_noise` must be a bool or a `(*b) x q x m` tensor of noise variances, "
                f"got {type(observation_noise).__name__}."
            )
        self.check_dtype(X=X, observation_noise=observation_noise if isinstance(observation_noise, Tensor) else None)
        self.eval()
        X_model = self.transform_inputs(X)
        mvn = self.latent(X_model)
        if self.is_softmax:
            dist = (
                self.likelihood(MultitaskMultivariateNormal.from_batch_mvn(mvn, task_dim=-1))
                if observation_noise is True
                else mvn
            )
            return TorchPosterior(dist) if observation_noise is True else _multi(mvn, output_indices)
        if isinstance(observation_noise, Tensor):
            noise = observation_noise.transpose(-1, -2) if self._num_latents > 1 else observation_noise[..., 0]
            mvn = MultivariateNormal(mvn.mean, mvn.lazy_covariance_matrix + DiagLinearOperator(noise))
        elif observation_noise:
            dist = self.likelihood(mvn)
            if not isinstance(dist, MultivariateNormal):
                return TorchPosterior(dist)
            mvn = dist
        posterior = _multi(mvn, output_indices) if self._num_latents > 1 else GPyTorchPosterior(mvn)
        if hasattr(self, "outcome_transform"):
            transform = self.outcome_transform
            if output_indices is not None:
                transform = transform.subset_output(list(output_indices))
            posterior = transform.untransform_posterior(posterior, X=X)
        if posterior_transform is not None:
            posterior = posterior_transform(posterior)
        return posterior

    @torch.no_grad()
    def predict_proba(self, X: Tensor) -> Tensor:
        """Class probabilities of a classifier at `(*b) x n x d` inputs, averaged over q(f).

        Bernoulli: p(y = 1 | x) = ∫ p(y = 1 | f) q(f) df, `(*b) x n x 1` (probit: Φ(μ / √(1 + σ²))
        in closed form; logit: gpytorch's quadrature), the same numbers as
        ``posterior(X, observation_noise=True).distribution.probs`` in BoTorch's `n x m` layout.
        Softmax: p(y = c | x), `(*b) x n x C`, the mean of softmax(f_s) over `SOFTMAX_PROBA_SAMPLES`
        fixed draws of each point's marginal q(f(x)) (`gpvi.core.likelihoods.softmax_probabilities`:
        deterministic, the global random state untouched; the posterior's likelihood call draws
        afresh and, in gpytorch, misreads n equal to the number of classes as a transposed input).
        """
        if self.is_gaussian:
            raise TypeError(f"predict_proba needs a classifier; {type(self).__name__} has a GaussianLikelihood.")
        if self.is_softmax:  # per-point marginals: gpytorch's likelihood call misreads n == C as (C, n)
            latent = self.posterior(X)
            return softmax_probabilities(self.likelihood, latent.mean, latent.variance, SOFTMAX_PROBA_SAMPLES)
        with gpytorch.settings.num_likelihood_samples(SOFTMAX_PROBA_SAMPLES):
            probs = getattr(self.posterior(X, observation_noise=True).distribution, "probs", None)
        if probs is None:
            raise TypeError(f"predict_proba needs a classifier, not a {type(self.likelihood).__name__}.")
        return probs.reshape(*X.shape[:-1], 1)

    # -- absorbing data -------------------------------------------------------------------------
    def condition_on_observations(
        self, X: Tensor, Y: Tensor, noise: Tensor | None = None, **kwargs: Any
    ) -> VariationalGPModel:
        """The posterior process conditioned exactly on new observations (Gaussian noise).

        The new data enter as exact Gaussian sites on f(X), α = (y − μ₀(x))/σ², β = 1/σ², through the
        strategy's `conditioned` (for inducing points: the inducing set grows to [Z; X], and
        q'(u, f_X) ∝ q(u) p(f_X | u) Π N(y_i | f_X,i, σ²)). Batch shapes follow BoTorch's
        `fantasize`: X `(*b) x n' x d`, Y `(*s, *b) x n' x m`; the returned model has batch shape
        `Y.shape[:-2]`. Trained parameters are frozen copies; the returned model is for prediction.
        """
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}.condition_on_observations got unexpected option(s) {sorted(kwargs)}."
            )
        if noise is None and not self.is_gaussian and not self.conditions_any_likelihood:
            raise NotImplementedError(
                "condition_on_observations adds Gaussian sites: it needs a GaussianLikelihood or an explicit `noise`."
            )
        check_tensor("X", X, ndim=tuple(range(2, 10)), shape_hint="`(*b) x n' x d`")
        check_tensor("Y", Y, ndim=tuple(range(2, 10)), shape_hint="`(*b) x n' x m`")
        if Y.shape[-1] != self.num_outputs or Y.shape[-2] != X.shape[-2]:
            raise ValueError(
                f"`Y` must be `(*b) x {X.shape[-2]} x {self.num_outputs}` to match `X`, got {tuple(Y.shape)}."
            )
        if X.shape[-1] != self.train_inputs[0].shape[-1]:
            raise ValueError(f"`X` must have d = {self.train_inputs[0].shape[-1]} columns, got {X.shape[-1]}.")
        try:
            batch_ok = torch.broadcast_shapes(X.shape[:-2], Y.shape[:-2]) == Y.shape[:-2]
        except RuntimeError:
            batch_ok = False
        if not batch_ok:
            raise ValueError(
                f"`Y`'s batch shape {tuple(Y.shape[:-2])} must end with `X`'s {tuple(X.shape[:-2])} "
                "(BoTorch's convention: X `(*b) x n' x d`, Y `(*s, *b) x n' x m`)."
            )
        if noise is not None:
            self._check_noise("noise", noise, tuple(Y.shape), zero_ok=False)
        self.check_dtype(X=X, Y=Y, noise=noise)
        self.eval()
        Yvar = noise
        if hasattr(self, "outcome_transform"):
            Y, Yvar = self.outcome_transform(Y, Yvar, X=X)
        X_model = self.transform_inputs(X)
        X_model = X_model.expand(*Y.shape[:-2], *X_model.shape[-2:])
        new = copy.deepcopy(self, memo=_shared_non_leaves(self))
        for p in new.parameters():
            p.requires_grad_(False)  # the trained state is a constant of the conditioned model
        X_latent = X_model.unsqueeze(-3) if self._num_latents > 1 else X_model
        y = new.latent_targets(Y)  # (*b, n') or (*b, P, n')
        alpha, beta = new.conditioning_sites(X_latent, y, None if Yvar is None else new.latent_targets(Yvar))
        new.model.set_strategy(new.strategy.conditioned(X_latent, alpha, beta))
        X_raw = (
            torch.cat([self.train_inputs[0].expand(*Y.shape[:-2], -1, -1), X_model], dim=-2)
            if not hasattr(self, "input_transform")
            else self.train_inputs[0]
        )
        new.train_inputs = (X_raw,)
        new._is_fantasy = True
        return new.eval()

    #: Whether `condition_on_observations` accepts non-Gaussian likelihoods without ``noise`` (sites by CVI).
    conditions_any_likelihood: bool = False

    def conditioning_sites(self, X_latent: Tensor, y: Tensor, noise: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per-datum sites (α, β) of new observations y at X_latent, on f − μ₀ (used by `condition_on_observations`).

        Gaussian data with noise variance σ² (``noise``, else the likelihood's): α = (y − μ₀(x))/σ²,
        β = 1/σ², exact. Called on the conditioned copy; shapes (*b, n') or (*b, P, n').
        """
        noise = self.likelihood.noise.expand_as(y) if noise is None else noise
        return (y - self.model.mean_module(X_latent)) / noise, 1.0 / noise

    def check_new_data(self, X: Tensor, Y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Validate a batch of new observations (`n x d`, `n x m`) and map it to model space.

        Raises before anything changes: shapes, NaN/inf, an empty batch, the dtype, and targets the
        likelihood cannot take. Returns (raw X, model-space X, outcome-transformed Y (`n x m`)).
        """
        X = check_tensor("X", X, ndim=(2,), shape_hint="`n x d`")
        Y = check_tensor("Y", Y, ndim=(2,), shape_hint="`n x m`")
        if X.shape[-1] != self.train_inputs[0].shape[-1] or Y.shape != (X.shape[0], self.train_targets.shape[-1]):
            raise ValueError(
                f"`X` must be `n x {self.train_inputs[0].shape[-1]}` and `Y` `n x {self.train_targets.shape[-1]}`, "
                f"got {tuple(X.shape)} and {tuple(Y.shape)}."
            )
        self.check_dtype(X=X, Y=Y)
        if not self.is_gaussian:
            check_targets(self.likelihood, Y)
        X_model = self.transform_inputs(X)
        Y_model = Y
        transform = getattr(self, "outcome_transform", None)
        if transform is not None:  # with the statistics fitted at construction, whatever the mode
            was_training = transform.training
            transform.eval()
            try:
                Y_model, _ = transform(Y, X=X)
            finally:
                transform.train(was_training)
        return X, X_model, Y_model

    def update(self, X: Tensor, Y: Tensor, **options: Any) -> VariationalGPModel:
        """Absorb new observations in place (`append`; a streaming family bounds its memory instead).

        Returns the model."""
        return self.append(X, Y, **options)

    def append(self, X: Tensor, Y: Tensor, **options: Any) -> VariationalGPModel:
        """Absorb new observations in place, keeping all data, without training the hyperparameters; returns the model.

        The points are appended (through the transforms fitted at construction) and q takes them in
        at the current θ and Z: with a Gaussian likelihood q becomes the optimal q on all data (one
        full-data natural-gradient step of size 1: exact); otherwise 5 full-data natural-gradient
        (CVI) steps of size 0.5. Absorbing data is not training (Trieste's split): to move θ and Z
        as well, call ``gpvi.fit(model, max_steps=...)`` after it (a warm start).
        """
        if options:
            raise TypeError(
                f"{type(self).__name__}.append got option(s) {sorted(options)}; it absorbs data without training: "
                "call gpvi.fit(model, max_steps=...) after it to move the hyperparameters."
            )
        X, X_model, Y = self.check_new_data(X, Y)
        self._set_train_data(
            torch.cat([self.train_inputs[0], X]),
            torch.cat([self.train_X_model, X_model]),
            torch.cat([self.train_targets, Y]),
        )
        if self.is_gaussian:
            self.set_optimal_q()
        else:
            for _ in range(5):
                self.full_data_step(0.5)
        return self.eval()

    def load_state_dict(self, state_dict: Any, strict: bool = True, keep_transforms: bool = True, assign: bool = False):
        """Load parameters; with an outcome transform, the stored targets follow its loaded statistics."""
        transform = getattr(self, "outcome_transform", None) if keep_transforms else None
        if transform is not None:
            with torch.no_grad():
                Y_raw, _ = transform.untransform(self.train_targets)
        result = torch.nn.Module.load_state_dict(self, state_dict, strict=strict, assign=assign)
        if transform is not None:
            transform.eval()
            with torch.no_grad():
                Y_model, _ = transform(Y_raw)
            self.train_targets = Y_model
            self.model.train_targets = self.latent_targets(Y_model)
        return result

    # -- objectives and steps (what gpvi.fit's recipes call) --------------------------------------
    def elbo(
        self,
        X: Tensor | None = None,
        Y: Tensor | None = None,
        *,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        weights: Tensor | None = None,
        index: Tensor | None = None,
    ) -> ElboParts:
        """The ELBO and its parts (`gpvi.core.ElboParts`) on model-space (X, Y) (default: all data).

        Y is in the likelihood's layout (`latent_targets`); the data term is scaled by N / B
        (N = ``num_data``, default the training size); the hyperparameters' log prior is included.
        """
        if X is None:
            X, Y = self.training_data()
        return variational_elbo(
            self.strategy,
            self.likelihood,
            X,
            Y,
            num_data=self.num_data if num_data is None else num_data,
            num_latents=self._num_latents,
            kl_weight=kl_weight,
            weights=weights,
            log_prior=self.log_prior(),
            index=index,
            num_quadrature=self.num_quadrature,
        )

    def log_prior(self) -> Tensor:
        """Σ log p(θ) over the priors registered on the GP module and the likelihood (0 when none)."""
        X = self.train_X_model
        total = torch.zeros((), dtype=X.dtype, device=X.device)
        for owner in (self.model, self.likelihood):
            for _, module, prior, closure, _ in owner.named_priors():
                total = total + prior.log_prob(closure(module)).sum()
        return total

    def natural_gradient_step(
        self,
        X: Tensor,
        Y: Tensor,
        *,
        step: float,
        num_data: int | None = None,
        weights: Tensor | None = None,
        index: Tensor | None = None,
    ) -> SiteTarget:
        """One natural-gradient (CVI) step of size ρ on q from a model-space batch (`gpvi.variational.elbo`)."""
        return natural_gradient_step(
            self.strategy,
            self.likelihood,
            X,
            Y,
            step=step,
            num_data=self.num_data if num_data is None else num_data,
            num_latents=self._num_latents,
            weights=weights,
            index=index,
            num_quadrature=self.num_quadrature,
        )

    @torch.no_grad()
    def full_data_step(self, step: float, *, chunk_size: int = FULL_DATA_CHUNK) -> SiteTarget:
        """A natural-gradient step of size ρ on all training data, its sites summed over chunks of rows.

        Returns the full-data target sites and the per-datum (α, β) (concatenated over chunks).
        """
        X, Y = self.training_data()
        was_training = self.training
        self.train()
        try:
            target, alphas, betas = None, [], []
            for idx in torch.arange(X.shape[-2], device=X.device).split(chunk_size):
                part = site_target(
                    self.strategy,
                    self.likelihood,
                    X[idx],
                    Y[..., idx],
                    num_data=idx.numel(),
                    num_latents=self._num_latents,
                    num_quadrature=self.num_quadrature,
                )
                target = part.target if target is None else target + part.target
                alphas.append(part.alpha)
                betas.append(part.beta)
            self.strategy.step_sites(target, step)
        finally:
            self.train(was_training)
        return SiteTarget(target, torch.cat(alphas, -1), torch.cat(betas, -1))

    def set_optimal_q(self) -> None:
        """Set q to its optimum on all data for the current θ and Z (Gaussian likelihood, closed form).

        One full-data natural-gradient step of size 1 (`full_data_step`): the Titsias/SGPR q.
        """
        self.require_gaussian("set_optimal_q")
        self.full_data_step(1.0)

    def collapsed_elbo(self) -> Tensor:
        """The ELBO at the optimal q for the current θ and Z, on all data (Gaussian likelihood only).

        With a Gaussian likelihood the optimal q is closed form and the ELBO at it is the collapsed
        Titsias (2009) bound (`gpvi.core.objectives.collapsed_elbo`):

            log N(y | μ, Qff + σ²I) − tr(Kff − Qff) / (2σ²),  Qff = Kfu Kuu⁻¹ Kuf,

        the objective of the closed-form recipe (``gpvi.fit(model, objective="collapsed")``); with
        Z = X it is the exact log marginal likelihood. Total over the data, summed over outputs.
        Without the hyperparameters' log prior. Needs a posterior on inducing features.
        """
        self.require_gaussian("collapsed_elbo")
        strategy = self.strategy
        if not isinstance(strategy, InducingStrategy):
            raise TypeError(f"collapsed_elbo needs a posterior on inducing features, not {type(strategy).__name__}.")
        X, Y = self.training_data()
        X_in = X.unsqueeze(-3) if self._num_latents > 1 else X
        kernel = self.model.covar_module
        value = collapsed_elbo(
            strategy.chol_Kuu(),
            strategy.features.Kuf(kernel, X_in),
            kernel(X_in, diag=True),
            Y - self.model.mean_module(X_in),
            self.likelihood.noise,
        )
        return value.sum(-1) if self._num_latents > 1 else value

    def require_gaussian(self, what: str) -> None:
        """Raise `TypeError` naming ``what`` unless the likelihood is Gaussian."""
        if not self.is_gaussian:
            raise TypeError(f"{what} needs a GaussianLikelihood, got {type(self.likelihood).__name__}.")

    # -- fitting hooks --------------------------------------------------------------------------
    def custom_fit(
        self, mll: Any = None, closure: Any = None, optimizer_kwargs: dict | None = None, **kwargs: Any
    ) -> Any:
        """`botorch.fit.fit_gpytorch_mll` hook: fit the objective ``mll`` names with `gpvi.fit.fit_mll`.

        ExactMarginalLogLikelihood -> the collapsed bound, VariationalELBO(beta) -> the ELBO with
        kl_weight beta, PredictiveLogLikelihood(beta) -> the predictive log likelihood; any other mll
        is a `TypeError`. ``optimizer_kwargs`` takes `gpvi.fit`'s options and BoTorch's
        ``options={"maxiter": k}``, ``step_limit``, ``lr`` (`gpvi.fit.mll`). BoTorch asks the model to
        fit itself; the hook hands over to `gpvi.fit` (the one import of a higher floor in
        `gpvi.models`, allowed by the layering test for this reason). Returns ``mll`` in eval mode.
        """
        from gpvi.fit import fit_mll

        ignored = sorted(k for k, v in kwargs.items() if v is not None)  # BoTorch's fallback-fit keywords
        if ignored:
            warnings.warn(f"fit_gpytorch_mll options {ignored} are not used by gpvi models.", stacklevel=3)
        fit_mll(self, mll, closure=closure, optimizer_kwargs=optimizer_kwargs)
        return mll.eval()


def _shared_non_leaves(model: torch.nn.Module) -> dict[int, Any]:
    """A `copy.deepcopy` memo that shares the model's non-leaf tensors instead of copying them.

    A conditioned (fantasy) model holds tensors computed from the new inputs (the grown inducing set,
    its sites), which autograd cannot copy; shared, they stay differentiable in those inputs when the
    model is conditioned again (multi-step lookahead). They are never changed in place.
    """
    memo: dict[int, Any] = {}
    seen: set[int] = set()
    stack: list[Any] = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Tensor):
            if obj.grad_fn is not None:
                memo[id(obj)] = obj
        elif isinstance(obj, torch.nn.Module):
            stack.extend(obj.__dict__.values())
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(getattr(obj, f.name) for f in dataclasses.fields(obj))
    return memo


def _multi(mvn: MultivariateNormal, output_indices: list[int] | None) -> GPyTorchPosterior:
    """Batch (*b, P, n) MVN -> multi-output posterior (*b, n, P), optionally a subset of outputs."""
    if output_indices is not None:
        mvn = MultivariateNormal(
            mvn.mean[..., output_indices, :], mvn.lazy_covariance_matrix[..., output_indices, :, :]
        )
        if len(output_indices) == 1:
            return GPyTorchPosterior(MultivariateNormal(mvn.mean[..., 0, :], mvn.lazy_covariance_matrix[..., 0, :, :]))
    return GPyTorchPosterior(MultitaskMultivariateNormal.from_batch_mvn(mvn, task_dim=-1))


__all__ = ["FULL_DATA_CHUNK", "VariationalGPModel", "VariationalGPModule"]
