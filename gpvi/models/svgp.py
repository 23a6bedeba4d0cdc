"""SVGP: a sparse variational GP built from data, usable anywhere BoTorch expects a model.

Hensman, Fusi & Lawrence (2013), "Gaussian Processes for Big Data", UAI; Hensman, Matthews &
Ghahramani (2015), "Scalable Variational Gaussian Process Classification", AISTATS.

    q(f) = N(μ(X) + Kfu L⁻ᵀ m,  Kff + Kfu L⁻ᵀ(S − I)L⁻¹ Kuf)          (whitened: u = μ(Z) + L v)
    ELBO = (N / B) Σ_{b in batch} E_{q(f_b)}[log p(y_b | f_b)] − β KL[q(v) ‖ N(0, I)]

Multiple outputs are independent GPs held in a batch dimension (P, ...) of the kernel, mean,
likelihood and q, sharing the inducing inputs. `condition_on_observations` adds exact Gaussian
sites for the new points on an enlarged inducing set [Z; X_new] (see `gpvi.core.sites`), which is
the exact GP conditioning of the SVGP posterior process; it powers `fantasize`, qKG and qNIPV.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from botorch.models.approximate_gp import ApproximateGPyTorchModel
from botorch.models.model import FantasizeMixin
from botorch.models.transforms.input import InputTransform
from botorch.models.transforms.outcome import OutcomeTransform
from botorch.posteriors.gpytorch import GPyTorchPosterior
from botorch.posteriors.torch import TorchPosterior
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood, Likelihood
from gpytorch.means import ConstantMean, Mean
from gpytorch.models import ApproximateGP
from gpytorch.variational import CholeskyVariationalDistribution
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from gpvi._validation import check_tensor, check_train_data
from gpvi.core.linalg import cholesky, eye_like
from gpvi.core.objectives import collapsed_elbo
from gpvi.core.sites import GaussianSites
from gpvi.features.base import InducingFeatures
from gpvi.features.points import InducingPoints
from gpvi.models._inducing import select_inducing_points
from gpvi.variational.svgp import FixedGaussian, WhitenedSVGPStrategy


class SVGPModule(ApproximateGP):
    """The gpytorch `ApproximateGP` inside `SVGP`: prior mean/kernel plus the whitened strategy.

    Keeps the names ``mean_module`` and ``covar_module`` (BoTorch's pathwise sampling reads them).
    """

    def __init__(
        self,
        features: InducingFeatures,
        mean_module: Mean,
        covar_module: Kernel,
        q_batch_shape: torch.Size,
        jitter: float | None,
        whiten: bool = True,
    ) -> None:
        q = CholeskyVariationalDistribution(features.num_inducing, batch_shape=q_batch_shape)
        q = q.to(dtype=_dtype_of(features))
        super().__init__(WhitenedSVGPStrategy(self, features, q, jitter=jitter, whiten=whiten))
        self.mean_module = mean_module
        self.covar_module = covar_module

    def forward(self, x: Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))

    def custom_fit(self, mll: Any = None, **kwargs: Any) -> Any:
        """Hook read by `botorch.fit.fit_gpytorch_mll`: fit the owning `SVGP` with `gpvi.fit`."""
        owner = getattr(self, "_owner", None)
        if owner is None:
            raise RuntimeError("This SVGPModule is not attached to a gpvi SVGP model.")
        return owner.custom_fit(mll=mll, **kwargs)


class SVGP(ApproximateGPyTorchModel, FantasizeMixin):
    """Sparse variational GP (SVGP) as a BoTorch model.

    Example:
        >>> model = SVGP(train_X, train_Y, num_inducing=64)
        >>> gpvi.fit(model, max_steps=500)
        >>> model.posterior(test_X).mean                      # `n x 1`

    Args:
        train_X: `n x d` training inputs (float64 recommended).
        train_Y: `n x m` training targets; m > 1 gives m independent outputs. For
            `SoftmaxLikelihood`, an `n x 1` tensor of class labels (one latent GP per class).
        likelihood: A gpytorch likelihood (default `GaussianLikelihood`, one noise per output).
        num_inducing: M, the number of inducing points (capped at n: M >= n gives Z = X).
        inducing: "kmeans", "greedy" (BoTorch's `GreedyVarianceReduction`) or an `M x d` tensor.
        kernel: A gpytorch kernel (default `ScaleKernel(MaternKernel(2.5, ard_num_dims=d))`,
            batched over outputs).
        mean_module: A gpytorch mean (default `ConstantMean`).
        whiten: Parameterise q on whitened v = L⁻¹(u − μ(Z)) (default) or on u directly.
        learn_inducing: Train the inducing inputs.
        jitter: Added to Kuu's diagonal (default 1e-6 in float64).
        input_transform: A BoTorch input transform, applied once to the training inputs (so
            minibatches see fixed statistics) and to every `posterior` input.
        outcome_transform: A BoTorch outcome transform applied to ``train_Y`` at construction and
            undone in `posterior` (e.g. `Standardize(m=...)`).
        seed: Seed for the inducing-point initialisation.
    """

    _is_fantasy: bool = False

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
        whiten: bool = True,
        learn_inducing: bool = True,
        jitter: float | None = None,
        input_transform: InputTransform | None = None,
        outcome_transform: OutcomeTransform | None = None,
        seed: int = 0,
    ) -> None:
        train_X, train_Y = check_train_data(train_X, train_Y)
        if likelihood is not None and not isinstance(likelihood, Likelihood):
            raise TypeError(f"`likelihood` must be a gpytorch Likelihood, got {type(likelihood).__name__}.")
        num_latents = _num_latents(likelihood, train_Y)
        batch = torch.Size([num_latents]) if num_latents > 1 else torch.Size()
        d = train_X.shape[-1]

        with torch.no_grad():
            X_model = train_X
            if input_transform is not None:
                input_transform.train()
                X_model = input_transform(train_X)
                input_transform.eval()
            Y_model = train_Y
            if outcome_transform is not None:
                outcome_transform.train()
                Y_model, _ = outcome_transform(train_Y, X=train_X)
                outcome_transform.eval()

        if kernel is None:
            kernel = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=d, batch_shape=batch), batch_shape=batch)
            kernel.base_kernel.lengthscale = 0.5 * d**0.5 * X_model.std(0).clamp_min(1e-3)
        if mean_module is None:
            mean_module = ConstantMean(batch_shape=batch)
        if likelihood is None:
            likelihood = GaussianLikelihood(batch_shape=batch, noise_constraint=GreaterThan(1e-6))
            likelihood.noise = 0.1
        Z = select_inducing_points(X_model, num_inducing, inducing, kernel.to(train_X), seed=seed)
        features = InducingPoints(Z, learn_locations=learn_inducing)
        module = SVGPModule(features, mean_module, kernel, batch, jitter, whiten=whiten)
        super().__init__(model=module, likelihood=likelihood, num_outputs=train_Y.shape[-1])
        object.__setattr__(module, "_owner", self)
        if input_transform is not None:
            self.input_transform = input_transform
        if outcome_transform is not None:
            self.outcome_transform = outcome_transform
        self._num_latents = num_latents
        self._set_train_data(train_X, X_model, Y_model)
        self.to(train_X)

    # -- data -----------------------------------------------------------------------------------
    def _set_train_data(self, X_raw: Tensor, X_model: Tensor, Y_model: Tensor) -> None:
        """Store raw inputs (BoTorch's `train_inputs`) and model-space inputs and targets."""
        self.train_inputs = (X_raw,)
        self.train_targets = Y_model
        self.model.train_inputs = (X_model,)
        self.model.train_targets = self._latent_targets(Y_model)

    def _latent_targets(self, Y: Tensor) -> Tensor:
        """`... x n x m` targets -> the likelihood's layout: (..., n) or (..., m, n)."""
        if self.is_softmax or self._num_latents == 1:
            return Y[..., 0]
        return Y.transpose(-1, -2)

    @property
    def train_X_model(self) -> Tensor:
        """Training inputs in model space (after the input transform), `n x d`."""
        return self.model.train_inputs[0]

    @property
    def num_data(self) -> int:
        return self.train_X_model.shape[-2]

    @property
    def is_softmax(self) -> bool:
        from gpytorch.likelihoods import SoftmaxLikelihood

        return isinstance(self.likelihood, SoftmaxLikelihood)

    @property
    def strategy(self) -> WhitenedSVGPStrategy:
        return self.model.variational_strategy

    @property
    def features(self) -> InducingFeatures:
        return self.strategy.features

    @property
    def batch_shape(self) -> torch.Size:
        """Batch shape of the model (non-empty only for fantasy / conditioned models)."""
        q_batch = self.strategy._variational_distribution.batch_shape
        return q_batch[:-1] if self._num_latents > 1 else q_batch

    # -- q(f) -----------------------------------------------------------------------------------
    def latent(self, X_model: Tensor, *, diag: bool = False) -> MultivariateNormal:
        """q(f) at model-space inputs `(*b) x n x d`; batch (*b, P) for P latents."""
        if self._num_latents > 1:
            X_model = X_model.unsqueeze(-3)
        return self.model.variational_strategy(X_model, diag=diag)

    def forward(self, X: Tensor) -> MultivariateNormal:
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
            raise TypeError(f"SVGP.posterior got unexpected option(s) {sorted(kwargs)}.")
        check_tensor("X", X, ndim=tuple(range(2, 10)), shape_hint="`(*b) x q x d`")
        if X.shape[-1] != self.train_inputs[0].shape[-1]:
            raise ValueError(f"`X` must have d = {self.train_inputs[0].shape[-1]} columns, got {X.shape[-1]}.")
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
        if hasattr(self, "outcome_transform") and output_indices is None:
            posterior = self.outcome_transform.untransform_posterior(posterior, X=X)
        if posterior_transform is not None:
            posterior = posterior_transform(posterior)
        return posterior

    # -- absorbing data -------------------------------------------------------------------------
    def condition_on_observations(self, X: Tensor, Y: Tensor, noise: Tensor | None = None, **kwargs: Any) -> SVGP:
        """The SVGP posterior process conditioned exactly on new observations (Gaussian noise).

        The inducing set grows to [Z; X] and the new data enter as exact Gaussian sites on f(X):
        q'(u, f_X) ∝ q(u) p(f_X | u) Π N(y_i | f_X,i, σ²). Batch shapes follow BoTorch's
        `fantasize`: X `(*b) x n' x d`, Y `(*s, *b) x n' x m`; the returned model has batch shape
        `Y.shape[:-2]`. Trained parameters are frozen copies; the returned model is for prediction.
        """
        if kwargs:
            raise TypeError(f"SVGP.condition_on_observations got unexpected option(s) {sorted(kwargs)}.")
        if not isinstance(self.features, InducingPoints):
            raise NotImplementedError("condition_on_observations needs inducing-point features.")
        if noise is None and not isinstance(self.likelihood, GaussianLikelihood):
            raise NotImplementedError(
                "condition_on_observations adds Gaussian sites: it needs a GaussianLikelihood or an explicit `noise`."
            )
        check_tensor("X", X, ndim=tuple(range(2, 10)), shape_hint="`(*b) x n' x d`")
        check_tensor("Y", Y, ndim=tuple(range(2, 10)), shape_hint="`(*b) x n' x m`")
        if Y.shape[-1] != self.num_outputs or Y.shape[-2] != X.shape[-2]:
            raise ValueError(
                f"`Y` must be `(*b) x {X.shape[-2]} x {self.num_outputs}` to match `X`, got {tuple(Y.shape)}."
            )
        self.eval()
        Yvar = noise
        if hasattr(self, "outcome_transform"):
            Y, Yvar = self.outcome_transform(Y, Yvar, X=X)
        X_model = self.transform_inputs(X)
        batch = Y.shape[:-2]
        X_model = X_model.expand(*batch, *X_model.shape[-2:])
        return self._conditioned(X_model, Y, Yvar)

    def _conditioned(self, X_model: Tensor, Y: Tensor, Yvar: Tensor | None) -> SVGP:
        strategy = self.strategy
        P, n_new, M = self._num_latents, X_model.shape[-2], self.features.num_inducing
        with torch.no_grad():  # the trained state is a constant of the conditioned model
            old_L = strategy.whitened_terms().chol_Kuu
            mean_v, tril_v = strategy.whitened_q(old_L)
            old_sites = GaussianSites.from_whitened_posterior(mean_v, tril_v).unwhiten(old_L)
        # exact move to [Z; X_new]: eta' = [eta; 0], H' = blkdiag(H, 0)
        lift = torch.zeros(M + n_new, M, dtype=X_model.dtype, device=X_model.device)
        lift[:M].fill_diagonal_(1.0)
        sites = old_sites.project(lift)
        # new Gaussian sites on f(X_new): alpha = (y - mu(x)) / s2, beta = 1 / s2
        Z_new = X_model.unsqueeze(-3) if P > 1 else X_model
        y = self._latent_targets(Y)  # (*b, n') or (*b, P, n')
        noise = self._latent_targets(Yvar) if Yvar is not None else self.likelihood.noise.expand_as(y)
        prior_mean = self.model.mean_module(Z_new)
        select = torch.zeros(M + n_new, n_new, dtype=X_model.dtype, device=X_model.device)
        select[M:].fill_diagonal_(1.0)
        sites = sites + GaussianSites.from_data(select, (y - prior_mean) / noise, 1.0 / noise)

        new = copy.deepcopy(self)
        for p in new.parameters():
            p.requires_grad_(False)
        features = self.features.extended(Z_new)
        Kuu = features.Kuu(new.model.covar_module)
        jitter = strategy.jitter_val
        new_L = cholesky(Kuu + jitter * eye_like(Kuu), jitter=jitter, what="Kuu of the conditioned model")
        q = FixedGaussian(*sites.whiten(new_L).whitened_posterior())
        new.model.variational_strategy = WhitenedSVGPStrategy(new.model, features, q, jitter=jitter)
        new.strategy.variational_params_initialized.fill_(1)
        X_raw = (
            torch.cat([self.train_inputs[0].expand(*Y.shape[:-2], -1, -1), X_model], dim=-2)
            if not hasattr(self, "input_transform")
            else self.train_inputs[0]
        )
        new.train_inputs = (X_raw,)
        new._is_fantasy = True
        return new.eval()

    def update(self, X: Tensor, Y: Tensor, *, max_steps: int = 20, **fit_options: Any) -> SVGP:
        """Absorb new data in place: append them and run a short, warm-started refit.

        For SVGP this is not exact (sites on u need Z to cover the new inputs); it appends the
        data and takes ``max_steps`` natural-gradient + Adam steps from the current state.
        """
        from gpvi.fit import fit

        X, Y = check_train_data(X, Y)
        X_model = self.transform_inputs(X)
        if hasattr(self, "outcome_transform"):
            Y, _ = self.outcome_transform(Y, X=X)
        self._set_train_data(
            torch.cat([self.train_inputs[0], X]),
            torch.cat([self.train_X_model, X_model]),
            torch.cat([self.train_targets, Y]),
        )
        fit(self, max_steps=max_steps, optimizer=fit_options.pop("optimizer", "ngd"), **fit_options)
        return self

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
            self.model.train_targets = self._latent_targets(Y_model)
        return result

    # -- fitting hooks --------------------------------------------------------------------------
    def custom_fit(
        self, mll: Any = None, closure: Any = None, optimizer_kwargs: dict | None = None, **kwargs: Any
    ) -> Any:
        """`botorch.fit.fit_gpytorch_mll` hook: fit with `gpvi.fit` (options via ``optimizer_kwargs``)."""
        from gpvi.fit import fit

        if closure is not None:
            raise TypeError("gpvi models fit their own objective; pass options in `optimizer_kwargs`, not a closure.")
        kwargs.pop("closure_kwargs", None)
        if kwargs:
            warnings.warn(f"fit_gpytorch_mll options {sorted(kwargs)} are not used by gpvi.fit.", stacklevel=3)
        fit(self, **{"progress": False, **(optimizer_kwargs or {})})
        return mll

    def collapsed_elbo(self) -> Tensor:
        """The ELBO at the optimal q(u) for the current θ and Z, on all data (Gaussian likelihood only).

        With a Gaussian likelihood the optimal q is closed form and the ELBO at it is the collapsed
        Titsias (2009) bound (`gpvi.core.objectives.collapsed_elbo`),
            log N(y | μ, Qff + σ²I) − tr(Kff − Qff) / (2σ²),  Qff = Kfu Kuu⁻¹ Kuf,
        the M-step objective of the closed-form recipe (``gpvi.fit(model, objective="collapsed")``);
        with Z = X it is the exact log marginal likelihood. For a dual model the same value is the
        dual ELBO at its exact sites α_n = (y_n − μ₀(x_n))/σ², β_n = 1/σ². Total over the data, summed
        over outputs. Without the hyperparameters' log prior.
        """
        self._require_gaussian("collapsed_elbo")
        X, Y = self.train_X_model, self.model.train_targets
        X_in = X.unsqueeze(-3) if self._num_latents > 1 else X
        kernel = self.model.covar_module
        value = collapsed_elbo(
            self.strategy._chol_Kuu(),
            self.features.Kuf(kernel, X_in),
            kernel(X_in, diag=True),
            Y - self.model.mean_module(X_in),
            self.likelihood.noise,
        )
        return value.sum(-1) if self._num_latents > 1 else value

    def _require_gaussian(self, what: str) -> None:
        if not isinstance(self.likelihood, GaussianLikelihood):
            raise TypeError(f"{what} needs a GaussianLikelihood, got {type(self.likelihood).__name__}.")

    def set_optimal_q(self) -> None:
        """Set q(u) to its optimum on all data for the current θ and Z (Gaussian likelihood, closed form).

        One full-data natural-gradient step of size 1 (`gpvi.fit.svgp_natural_gradient_step`).
        """
        from gpvi.fit import svgp_natural_gradient_step

        self._require_gaussian("set_optimal_q")
        svgp_natural_gradient_step(self, self.train_X_model, self.model.train_targets, step=1.0)

    def elbo(self, X: Tensor | None = None, Y: Tensor | None = None, **options: Any):
        """The ELBO and its parts (`gpvi.core.ElboParts`) on (X, Y) in model space (default: all data)."""
        from gpvi.fit import svgp_elbo

        return svgp_elbo(self, X, Y, **options)


def _multi(mvn: MultivariateNormal, output_indices: list[int] | None) -> GPyTorchPosterior:
    """Batch (*b, P, n) MVN -> multi-output posterior (*b, n, P), optionally a subset of outputs."""
    if output_indices is not None:
        mvn = MultivariateNormal(
            mvn.mean[..., output_indices, :], mvn.lazy_covariance_matrix[..., output_indices, :, :]
        )
        if len(output_indices) == 1:
            return GPyTorchPosterior(MultivariateNormal(mvn.mean[..., 0, :], mvn.lazy_covariance_matrix[..., 0, :, :]))
    return GPyTorchPosterior(MultitaskMultivariateNormal.from_batch_mvn(mvn, task_dim=-1))


def _num_latents(likelihood: Likelihood | None, train_Y: Tensor) -> int:
    from gpytorch.likelihoods import SoftmaxLikelihood

    if isinstance(likelihood, SoftmaxLikelihood):
        if train_Y.shape[-1] != 1:
            raise ValueError("With SoftmaxLikelihood, `train_Y` must be `n x 1` class labels.")
        return likelihood.num_features
    return train_Y.shape[-1]


def _dtype_of(features: InducingFeatures) -> torch.dtype:
    for t in list(features.parameters()) + list(features.buffers()):
        return t.dtype
    return torch.get_default_dtype()


__all__ = ["SVGP", "SVGPModule"]
