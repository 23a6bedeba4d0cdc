"""Whitened sparse variational GP strategy, written against inducing features.

Hensman, Fusi & Lawrence (2013), "Gaussian Processes for Big Data", UAI; Hensman, Matthews &
Ghahramani (2015), "Scalable Variational Gaussian Process Classification", AISTATS.

With Kuu = L Lᵀ (+ jitter), u = E[u] + L v, q(v) = N(m, S) and p(v) = N(0, I):

    q(f(X)) = N( μ(X) + Kfu L⁻ᵀ m,   Kff + Kfu W Kuf ),    W = L⁻ᵀ (S − I) L⁻¹
    KL[q(v) ‖ p(v)] = ½ (tr S + mᵀm − M − log|S|)

Shapes: X (*b, N, D); m (*b, M); S, Kuu, W (*b, M, M); Kuf (*b, M, N); the marginals (*b, N).
Cost per training step: one M×M Cholesky, two M×M triangular solves for W (no explicit L⁻¹),
one (M×M)(M×N) product for the variances and two for their gradients (O(N M²)). Grouping
L⁻ᵀ(S − I)L⁻¹ once per step (in float64) replaces gpytorch's triangular solve against Kuf (and
its backward, another solve and an outer product) by a single matrix product.

Prediction returns a lazy covariance Kff + Aᵀ(S − I)A with A = L⁻¹Kuf, so `.variance` at many
test points costs O(N M²) and never forms the N×N matrix. It does not use the grouped W there:
‖W‖ grows like 1/λ_min(Kuu), and its round-off made the predictive variance rough at the 1e-7
(relative) level, enough for L-BFGS-B line searches on acquisition functions to end ABNORMAL.

Caching: in eval mode the M×M terms (L, W, L⁻ᵀm, S − I) are cached, keyed on the storage and
version counter of every parameter and buffer of the model, so any change (an optimiser step,
`load_state_dict`, `.to()`) invalidates them; as in gpytorch (`detach_test_caches`) the cached
terms are detached from the hyperparameters. Nothing is cached in train mode.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.variational import CholeskyVariationalDistribution, _VariationalDistribution
from gpytorch.variational.variational_strategy import ComputePredictiveUpdates
from linear_operator.operators import DiagLinearOperator, MatmulLinearOperator, SumLinearOperator
from torch import Tensor

from gpvi.core.kernels import prior_covariance
from gpvi.core.linalg import cholesky, eye_like, symmetrize, tri_solve
from gpvi.core.objectives import kl_whitened
from gpvi.core.sites import GaussianSites, PointSites
from gpvi.features.base import InducingFeatures
from gpvi.features.points import InducingPoints
from gpvi.variational.base import InducingMarginals, InducingStrategy


class WhitenedTerms(NamedTuple):
    """The M×M quantities every prediction needs; see the module docstring."""

    chol_Kuu: Tensor  # L            (*b, M, M)
    middle: Tensor  # W = L⁻ᵀ(S − I)L⁻¹  (*b, M, M)
    mean_weights: Tensor  # L⁻ᵀ m    (*b, M)
    shift: Tensor  # S − I          (*b, M, M)


class FixedGaussian(_VariationalDistribution):
    """q(v) = N(mean, scale_tril scale_trilᵀ) held as given tensors, not trained.

    Used by conditioned (fantasy) models, whose q depends on the new inputs and targets: the
    tensors may carry an autograd graph back to them (qKG, qNIPV differentiate through it).
    """

    def __init__(self, mean: Tensor, scale_tril: Tensor) -> None:
        super().__init__(num_inducing_points=mean.shape[-1], batch_shape=mean.shape[:-1])
        self.register_buffer("variational_mean", mean)
        self.register_buffer("chol_variational_covar", scale_tril)

    def forward(self) -> MultivariateNormal:
        """q(v) = N(mean, scale_tril scale_trilᵀ)."""
        tril = self.chol_variational_covar
        return MultivariateNormal(self.variational_mean, tril @ tril.mT)

    def initialize_variational_distribution(self, prior_dist: MultivariateNormal) -> None:
        """Nothing to initialise: the distribution is given."""


class WhitenedSVGPStrategy(InducingStrategy):
    """Whitened SVGP over any `InducingFeatures` (see the module docstring for the formulas).

    Site coordinates (`sites`, `set_sites`, ``marginals(x).projection``): whitened v = L⁻¹(u − E[u]),
    q(v) ∝ N(v; 0, I) t(v).

    Args:
        features: The inducing features (inducing points, or inter-domain features).
        variational_distribution: q(v); default a `CholeskyVariationalDistribution` of shape
            (*batch_shape, M) in the features' dtype (initialised to the prior).
        jitter: Added to the diagonal of Kuu (default 1e-6 in float64).
        whiten: If False, q's parameters describe the centred u − E[u] = L v directly
            (unwhitened); the algebra maps them to v with L⁻¹ first, so both give the same q(f).
        batch_shape: Batch shape of the default q (one q per latent output).
    """

    #: The coordinates of `sites` and of the marginals' projection: "whitened" v or "u" (u − E[u]).
    site_space: str = "whitened"
    #: In training, use the A = L⁻¹Kuf algebra when M >= interp_threshold · N (see `_marginal_updates`).
    interp_threshold: float = 0.5

    def __init__(
        self,
        features: InducingFeatures,
        variational_distribution: _VariationalDistribution | None = None,
        jitter: float | None = None,
        whiten: bool = True,
        *,
        batch_shape: torch.Size = torch.Size(),  # noqa: B008
    ) -> None:
        super().__init__(features, jitter)
        if variational_distribution is None:
            variational_distribution = CholeskyVariationalDistribution(features.num_inducing, batch_shape=batch_shape)
            variational_distribution = variational_distribution.to(dtype=features.dtype)
        self._variational_distribution = variational_distribution
        self.whiten = whiten
        self._eval_cache: tuple[tuple, WhitenedTerms] | None = None

    @classmethod
    def from_features(
        cls, features: InducingFeatures, *, batch_shape: torch.Size, jitter: float | None = None
    ) -> WhitenedSVGPStrategy:
        """The default strategy of a model on ``features`` with one q per member of ``batch_shape``."""
        return cls(features, jitter=jitter, batch_shape=batch_shape)

    @property
    def _dtype(self) -> torch.dtype:
        return self._variational_distribution.variational_mean.dtype

    @property
    def prior_distribution(self) -> MultivariateNormal:
        """p(v) = N(0, I), shaped like q(v)."""
        q = self._variational_distribution
        zeros = torch.zeros(q.shape(), dtype=q.variational_mean.dtype, device=q.variational_mean.device)
        return MultivariateNormal(zeros, DiagLinearOperator(torch.ones_like(zeros)))

    def kl_divergence(self) -> Tensor:
        """KL[q(v) ‖ N(0, I)] = KL[q(u) ‖ p(u)] in closed form, (*b,)."""
        if self.whiten and self.__dict__.get("_held_sites") is None:  # q is its parameters: no Kuu needed
            return kl_whitened(*self.q_parameters())
        return kl_whitened(*self.whitened_q(self.whitened_terms().chol_Kuu))

    # -- sites ----------------------------------------------------------------------------------
    def sites(self) -> GaussianSites:
        """Whitened sites of q(v): η = S⁻¹m, H = S⁻¹ − I."""
        return GaussianSites.from_whitened_posterior(*self.whitened_q(self.chol_Kuu()))

    def set_sites(self, sites: GaussianSites) -> None:
        """q(v) = N((I + H)⁻¹η, (I + H)⁻¹) from whitened sites."""
        self.set_q(*sites.whitened_posterior())

    def conditioned(self, X_new: Tensor, alpha: Tensor, beta: Tensor) -> WhitenedSVGPStrategy:
        """q conditioned on sites at X_new, by growing the inducing set to [Z; X_new] (exact).

        In u-space the move to [Z; X_new] is exact (η' = [η; 0], H' = blkdiag(H, 0)), and the new
        sites sit on the new inducing variables themselves: q'(u, f_new) ∝ q(u) p(f_new | u) Π t_i(f_new,i).
        Batch shapes: X_new (*b, n', D) (with a latent dimension (*b, P, n', D) for P outputs),
        α, β (*b, n') or (*b, P, n'); the result has the broadcast batch shape.
        """
        if not isinstance(self.features, InducingPoints):
            raise NotImplementedError(
                f"conditioning grows the inducing set: it needs InducingPoints, not {type(self.features).__name__}."
            )
        M, n_new = self.features.num_inducing, X_new.shape[-2]
        # the trained parameters are frozen by the caller; a conditioned q (nested fantasies) keeps its
        # graph to the inputs it was conditioned on, so the new model stays differentiable in them
        old = self.u_space_sites()
        like = X_new
        lift = torch.zeros(M + n_new, M, dtype=like.dtype, device=like.device)  # [Z; X_new] keeps u exactly
        lift[:M].fill_diagonal_(1.0)
        select = torch.zeros(M + n_new, n_new, dtype=like.dtype, device=like.device)
        select[M:].fill_diagonal_(1.0)
        sites = old.project(lift) + GaussianSites.from_data(select, alpha, beta)
        features = self.features.extended(X_new)
        Kuu = features.Kuu(self.model.covar_module)
        jitter = self.jitter_val
        L = cholesky(Kuu + jitter * eye_like(Kuu), jitter=jitter, what="Kuu of the conditioned model")
        q = FixedGaussian(*sites.whiten(L).whitened_posterior())
        strategy = WhitenedSVGPStrategy(features, q, jitter=jitter)
        strategy.variational_params_initialized.fill_(1)
        return strategy

    # -- q(v) -----------------------------------------------------------------------------------
    def q_parameters(self) -> tuple[Tensor, Tensor]:
        """(m (*b, M), lower-triangular S^{1/2} (*b, M, M)) of q(v)."""
        self._initialize_if_needed()
        q = self._variational_distribution
        return q.variational_mean, q.chol_variational_covar.tril()

    def whitened_q(self, chol_Kuu: Tensor) -> tuple[Tensor, Tensor]:
        """(m, S^{1/2}) of q(v) whatever the parameterisation: raw, or L⁻¹ times the u-space ones."""
        held = self.held_q(chol_Kuu)
        if held is not None:
            return held
        mean, tril = self.q_parameters()
        if self.whiten:
            return mean, tril
        mean = tri_solve(chol_Kuu, mean.unsqueeze(-1)).squeeze(-1)
        return mean, tri_solve(chol_Kuu, tril)

    # -- q held as per-datum sites (the M-step of "cvi-em") ----------------------------------------
    def held_q(self, chol_Kuu: Tensor) -> tuple[Tensor, Tensor] | None:
        """q(v) rebuilt at the current θ from the sites of `holding`, or None outside it:
        q(v) ∝ N(v; 0, I) Π_n exp(α_n a_nᵀv − ½ β_n (a_nᵀv)²), a_n = L⁻¹ k(Z, x_n). Cost O(N M² + M³)."""
        held = self.__dict__.get("_held_sites")
        return None if held is None else self.held_q_at(held, chol_Kuu)

    @contextlib.contextmanager
    def holding(self, sites: PointSites, *, write: bool = True) -> Iterator[None]:
        """Inside, q is the one the per-datum ``sites`` (on f_n − μ₀(x_n)) give at the current θ
        (`held_q`), not the stored q; on leaving, the stored q is set to it at the θ reached
        (``write=False``: left alone; holds nest).

        The M-step of `gpvi.fit`'s "cvi-em" recipe. With a Gaussian likelihood the per-datum sites
        are exact for every θ, so the ELBO inside is the collapsed bound; with others they move
        little with θ, while a stored (m, S) or u-space q held fixed lets EM creep along the ridge
        where the outputscale and q trade off.
        """
        previous = self.__dict__.get("_held_sites")
        self.__dict__["_held_sites"] = sites
        try:
            yield
        finally:
            self.__dict__["_held_sites"] = previous
        if write:
            self.set_q_from_sites(sites)

    @torch.no_grad()
    def set_q_from_sites(self, sites: PointSites) -> None:
        """Set q to the one per-datum ``sites`` give at the current θ (`held_q_at`)."""
        L = self.chol_Kuu()
        self.set_q(*self.held_q_at(sites, L), chol_Kuu=L)

    def held_q_at(self, sites: PointSites, chol_Kuu: Tensor) -> tuple[Tensor, Tensor]:
        """q(v) from per-datum ``sites`` at the factor ``chol_Kuu`` (see `held_q`)."""
        A = tri_solve(chol_Kuu, self.features.Kuf(self.model.covar_module, sites.inputs))
        return sites.summed(A).whitened_posterior()

    @torch.no_grad()
    def set_q(self, mean: Tensor, scale_tril: Tensor, chol_Kuu: Tensor | None = None) -> None:
        """Overwrite q(v) = N(mean, scale_tril scale_trilᵀ) in place (v-space arguments).

        For an unwhitened strategy they are mapped to u-space with L = ``chol_Kuu``
        (computed at the current hyperparameters when not given).
        """
        if not self.whiten:
            L = self.chol_Kuu() if chol_Kuu is None else chol_Kuu
            mean, scale_tril = (L @ mean.unsqueeze(-1)).squeeze(-1), L @ scale_tril
        q = self._variational_distribution
        q.variational_mean.copy_(mean.expand_as(q.variational_mean))
        q.chol_variational_covar.copy_(scale_tril.expand_as(q.chol_variational_covar))
        self.variational_params_initialized.fill_(1)

    def _initialize_if_needed(self) -> None:
        if not self.variational_params_initialized.item():
            self._variational_distribution.initialize_variational_distribution(self.prior_distribution)
            self.variational_params_initialized.fill_(1)

    # -- the M×M algebra ------------------------------------------------------------------------
    def whitened_terms(self) -> WhitenedTerms:
        """L, W and L⁻ᵀm at the current parameters (cached in eval mode)."""
        if self.training or self._carries_graph():
            self._eval_cache = None
            return self.compute_terms()
        key = self._state_key()
        if self._eval_cache is None or self._eval_cache[0] != key:
            with torch.no_grad():
                self._eval_cache = (key, self.compute_terms())
        return self._eval_cache[1]

    def clear_cache(self) -> None:
        """Drop the eval-mode cache (never needed for correctness; frees memory)."""
        self._eval_cache = None

    def _carries_graph(self) -> bool:
        """True for conditioned models whose features or q depend on differentiable inputs."""
        return any(b.requires_grad for b in self.buffers())

    def _state_key(self) -> tuple:
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())
        return tuple((t.data_ptr(), t._version, t.shape, t.dtype, t.device) for t in tensors)

    def compute_terms(self) -> WhitenedTerms:
        """L, W = L⁻ᵀ(S − I)L⁻¹ by two triangular solves, and L⁻ᵀm (differentiable; no cache)."""
        self._initialize_if_needed()
        L = self.chol_Kuu()
        mean, tril = self.whitened_q(L)
        inner = tril @ tril.mT - eye_like(L)  # S − I
        middle = tri_solve(L.mT, tri_solve(L, inner, left=False), upper=True)
        mean_weights = tri_solve(L.mT, mean.unsqueeze(-1), upper=True).squeeze(-1)
        if not self.training:  # the marginals see only W's symmetric part; covariances need symmetry
            middle, inner = symmetrize(middle), symmetrize(inner)
        return WhitenedTerms(L, middle, mean_weights, inner)

    # -- q(f) -----------------------------------------------------------------------------------
    def __call__(self, x: Tensor, prior: bool = False, diag: bool = True, **kwargs: Any) -> MultivariateNormal:
        """q(f(x)) = ∫ p(f(x) | u) q(u) du, or the prior p(f(x)) when ``prior=True``.

        In train mode with ``diag=True`` the covariance is diagonal (the ELBO needs only marginals);
        otherwise it is the lazy sum Kff + Aᵀ(S − I)A + jitter·I with A = L⁻¹Kuf (see `_predictive_update`).
        """
        if prior:
            return self.model.forward(x)
        if diag and self.training:
            marginals = self.marginals(x)
            mean = marginals.prior_mean + marginals.centred_mean
            return MultivariateNormal(mean, DiagLinearOperator(marginals.var))
        terms = self.whitened_terms()
        kernel = self.model.covar_module
        Kuf = self.features.Kuf(kernel, x)  # (*b, M, N)
        mean = self.model.mean_module(x) + (terms.mean_weights.unsqueeze(-2) @ Kuf).squeeze(-2)
        jitter = DiagLinearOperator(torch.full_like(mean, self.jitter_val))
        covar = SumLinearOperator(prior_covariance(kernel, x), self._predictive_update(terms, Kuf), jitter)
        return MultivariateNormal(mean, covar)

    @staticmethod
    def _predictive_update(terms: WhitenedTerms, Kuf: Tensor) -> MatmulLinearOperator:
        """Kfu W Kuf as Aᵀ(S − I)A with A = L⁻¹Kuf, lazily (*b, N, N).

        The same matrix as with the grouped W = L⁻ᵀ(S − I)L⁻¹ at the same cost (one M²N solve instead
        of one M²N product), but with round-off of order eps·k(x, x): S − I is O(1) and AᵀA ≤ Kff,
        whereas ‖W‖ grows like 1/λ_min(Kuu) (up to 1/jitter), and its round-off, not smooth in x,
        made L-BFGS-B line searches on acquisition functions end ABNORMAL.
        """
        A = tri_solve(terms.chol_Kuu, Kuf)
        return MatmulLinearOperator(A.mT, terms.shift @ A)

    def marginals(self, x: Tensor, *, index: Tensor | None = None) -> InducingMarginals:
        """The marginals of q(f(x)), with Kuf and L for the projections site updates use."""
        kernel = self.model.covar_module
        Kuf = self.features.Kuf(kernel, x)
        L, centred, var_update = self._marginal_updates(Kuf)
        var = kernel(x, diag=True) + var_update
        return InducingMarginals(
            self.model.mean_module(x), centred, var.clamp_min(1e-10), Kuf, L, whitened=self.site_space == "whitened"
        )

    def _marginal_updates(self, Kuf: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(L, Kfu L⁻ᵀm, diag(Kfu W Kuf)) for Kuf (*b, M, N).

        Two equal algebras, picked by measured speed (studies/perf): with W (cached in eval mode;
        in training cheaper while M < N/2), or, for M >= ``interp_threshold``·N in training, A = L⁻¹Kuf through
        gpytorch's `ComputePredictiveUpdates` (mean Aᵀm, variance Σ A ⊙ (S − I)A, with its
        hand-written backward), which skips W's M³ solves.
        """
        M, N = Kuf.shape[-2:]
        if self.training and M >= self.interp_threshold * N and torch.is_grad_enabled():
            L = self.chol_Kuu()
            mean, tril = self.whitened_q(L)
            middle = tril @ tril.mT - eye_like(L)
            shape = torch.broadcast_shapes(L.shape[:-2], Kuf.shape[:-2], mean.shape[:-1])
            centred, var_update = ComputePredictiveUpdates.apply(
                L.expand(*shape, M, M), Kuf.expand(*shape, M, N), middle.expand(*shape, M, M), mean.expand(*shape, M)
            )
            return L, centred, var_update
        terms = self.whitened_terms()
        centred = (terms.mean_weights.unsqueeze(-2) @ Kuf).squeeze(-2)
        return terms.chol_Kuu, centred, ((terms.middle @ Kuf) * Kuf).sum(-2)


__all__ = ["FixedGaussian", "WhitenedSVGPStrategy", "WhitenedTerms"]
