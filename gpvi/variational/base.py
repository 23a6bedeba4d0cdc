"""The posterior contract: what every approximate posterior in gpvi gives the rest of the library.

A strategy holds q(f) = ∫ p(f | s) q(s) ds for some finite set of variables s (inducing variables,
two feature blocks, a sparse factor over the training latents, a coreset) and answers five
questions; everything above it (the ELBO, natural-gradient and CVI steps, `fit`, conditioning,
BoTorch's posterior) asks only these:

    marginals(X, index=None) -> Marginals     q(f(X)) marginals (*b, N), and the projection W (*b, S, N)
                                              with f_n − μ₀(x_n) = w_nᵀ s, in the strategy's site coordinates
    kl_divergence()          -> (*b,)         KL[q(s) ‖ p(s)]
    sites() / set_sites(t)                    q read and written as Gaussian sites t(s) = exp(ηᵀs − ½sᵀHs)
                                              on the prior: q(s) ∝ p(s) t(s) (`gpvi.core.sites`)
    conditioned(X_new, α, β) -> strategy      a fixed copy given extra per-datum sites at X_new
    __call__(X, diag=...)    -> MultivariateNormal   q(f(X)) with its covariance (prediction)

With these, a natural-gradient / CVI step is written once for every family
(`gpvi.variational.elbo.natural_gradient_step`, `PosteriorStrategy.step_sites`):

    target = (N/B) Σ_b (α_n w_n, β_n w_n w_nᵀ),    sites ← (1 − ρ) sites + ρ target

Site coordinates are the strategy's choice: whitened v = L⁻¹(u − E[u]) for `WhitenedSVGPStrategy`,
u − E[u] for the dual strategy; a caller never mixes them, because the projection W comes from
the same strategy as the sites. ``index`` (row indices of X in the training set, carried by
`fit`'s minibatches) is for strategies whose variables are the training latents themselves.

`InducingStrategy` implements the parts shared by posteriors on inducing features (the Kuu
factor, its memo within one objective evaluation, q's sites on u − E[u], in which an inducing set
can grow exactly).
Adding a family: `gpvi/variational/README.md`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.module import Module
from gpytorch.variational import _VariationalStrategy
from torch import Tensor

from gpvi.core.linalg import cholesky, default_jitter, eye_like, tri_solve
from gpvi.core.sites import GaussianSites
from gpvi.features.base import InducingFeatures


class Marginals:
    """q(f(X)) marginals and the projection that a site update needs.

    Attributes:
        prior_mean: μ₀(X), (*b, N).
        centred_mean: E_q[f(X)] − μ₀(X), (*b, N).
        var: Var_q[f(X)], (*b, N).
        projection: W (*b, S, N) with f_n − μ₀(x_n) = w_nᵀ s in the strategy's site coordinates;
            computed on first use (an ELBO evaluation never pays for it).
    """

    def __init__(self, prior_mean: Tensor, centred_mean: Tensor, var: Tensor, projection: Callable[[], Tensor]):
        self.prior_mean, self.centred_mean, self.var = prior_mean, centred_mean, var
        self._projection = projection

    @property
    def mean(self) -> Tensor:
        """E_q[f(X)], (*b, N)."""
        return self.prior_mean + self.centred_mean

    @cached_property
    def projection(self) -> Tensor:
        return self._projection()


class InducingMarginals(Marginals):
    """`Marginals` of a posterior on inducing features, with Kuf (*b, M, N) and L = chol Kuu (*b, M, M).

    ``whitened_projection`` is A = L⁻¹Kuf (f_n − μ₀ = a_nᵀ v); ``projection`` is A for whitened site
    coordinates and L⁻ᵀA = Kuu⁻¹Kuf for sites on u − E[u].
    """

    def __init__(
        self, prior_mean: Tensor, centred_mean: Tensor, var: Tensor, Kuf: Tensor, chol_Kuu: Tensor, *, whitened: bool
    ) -> None:
        super().__init__(prior_mean, centred_mean, var, self._site_projection)
        self.Kuf, self.chol_Kuu, self._whitened = Kuf, chol_Kuu, whitened

    @cached_property
    def whitened_projection(self) -> Tensor:
        return tri_solve(self.chol_Kuu, self.Kuf)

    def _site_projection(self) -> Tensor:
        A = self.whitened_projection
        return A if self._whitened else tri_solve(self.chol_Kuu.mT, A, upper=True)


class PosteriorStrategy(_VariationalStrategy, ABC):
    """The contract (see the module docstring), as a gpytorch `_VariationalStrategy`.

    A strategy belongs to a gpytorch `ApproximateGP` (its ``model``, holding ``mean_module`` and
    ``covar_module``), set by `attach` when the owner is built; it is not a submodule of it.
    """

    def __init__(self) -> None:
        # gpytorch's base __init__ registers inducing points of its own; gpvi's strategies keep
        # their variables in their own modules, so only Module's init runs.
        Module.__init__(self)
        self.register_buffer("variational_params_initialized", torch.tensor(0))

    def attach(self, model: Module) -> PosteriorStrategy:
        """Make ``model`` (an `ApproximateGP` with ``mean_module`` and ``covar_module``) the owner."""
        object.__setattr__(self, "model", model)
        return self

    # -- the contract ---------------------------------------------------------------------------
    @abstractmethod
    def marginals(self, x: Tensor, *, index: Tensor | None = None) -> Marginals:
        """q(f(x)) marginals at model-space inputs x (*b, N, D) (``index``: their training rows, if known)."""

    @abstractmethod
    def kl_divergence(self) -> Tensor:
        """KL[q ‖ p] of the strategy's variables, (*b,)."""

    @abstractmethod
    def sites(self) -> GaussianSites:
        """q as Gaussian sites on the prior, in the strategy's site coordinates."""

    @abstractmethod
    def set_sites(self, sites: GaussianSites) -> None:
        """Set q ∝ p · sites (in place; the inverse of `sites`)."""

    @abstractmethod
    def conditioned(self, X_new: Tensor, alpha: Tensor, beta: Tensor) -> PosteriorStrategy:
        """A fixed (prediction-only) strategy for q(f) conditioned on sites (α, β) at X_new (*b, n', D).

        The sites t_i(f_i) = exp(α_i f_i − ½ β_i f_i²) are on f_i − μ₀(x_i); for Gaussian data
        α = (y − μ₀)/σ², β = 1/σ², and the result is exact GP conditioning of q. Unattached: the caller
        attaches it to the (frozen) model it belongs to.
        """

    @abstractmethod
    def __call__(self, x: Tensor, prior: bool = False, diag: bool = True, **kwargs: Any) -> MultivariateNormal:
        """q(f(x)) (or the prior, ``prior=True``); diagonal covariance in train mode with ``diag=True``."""

    # -- shared defaults ------------------------------------------------------------------------
    @contextlib.contextmanager
    def shared_terms(self) -> Iterator[None]:
        """Within the block, terms needed by several calls (marginals and KL) may be computed once."""
        yield

    def clear_cache(self) -> None:
        """Drop any prediction cache (never needed for correctness; frees memory)."""

    @torch.no_grad()
    def step_sites(self, target: GaussianSites, step: float) -> None:
        """sites ← (1 − ρ) sites + ρ target with ρ = ``step``: the damped natural-gradient (CVI) update.

        With ``target`` the batch's sites at the current q (`gpvi.variational.elbo.site_target`) this
        is exactly a natural-gradient step of size ρ on the ELBO in q's natural parameters (Khan &
        Lin 2017; Salimbeni et al. 2018); ρ = 1 jumps to the fixed point.
        """
        self.set_sites(self.sites().damped(target, step))


class InducingStrategy(PosteriorStrategy):
    """Shared machinery of posteriors on inducing features u (Kuu = Cov(u, u), Kuf = Cov(u, f)).

    Args:
        features: The `InducingFeatures` (inducing points, or inter-domain features).
        jitter: Added to Kuu's diagonal (default 1e-6 in float64, 1e-4 in float32).
    """

    def __init__(self, features: InducingFeatures, jitter: float | None = None) -> None:
        super().__init__()
        self.features = features
        self._jitter_val = jitter

    @property
    def inducing_points(self) -> Tensor:
        """Z (*b, M, D) for point features (read by BoTorch's pathwise sampling)."""
        Z = self.features.locations
        if Z is None:
            raise AttributeError(f"{type(self.features).__name__} features have no input locations.")
        return Z

    @property
    def jitter_val(self) -> float:
        """The jitter added to Kuu's diagonal: the one given, else 1e-6 in float64 and 1e-4 in float32."""
        return default_jitter(self._dtype) if self._jitter_val is None else self._jitter_val

    @jitter_val.setter
    def jitter_val(self, value: float) -> None:
        self._jitter_val = value

    @property
    @abstractmethod
    def _dtype(self) -> torch.dtype:
        """The dtype of q's parameters."""

    # -- Kuu ------------------------------------------------------------------------------------
    def chol_Kuu(self) -> Tensor:
        """L with LLᵀ = Kuu + jitter·I (memoised inside `shared_terms`, recomputed outside)."""
        memo = self.__dict__.get("_memo")
        if memo is not None and "chol_Kuu" in memo:
            return memo["chol_Kuu"]
        Kuu = self.features.Kuu(self.model.covar_module)
        L = cholesky(Kuu + self.jitter_val * eye_like(Kuu), jitter=self.jitter_val, what="Kuu")
        if memo is not None:
            memo["chol_Kuu"] = L
        return L

    @contextlib.contextmanager
    def shared_terms(self) -> Iterator[None]:
        """Within this block, Kuu's Cholesky factor (and q, where derived from it) is computed once.

        An objective that needs both the marginals and the KL (the ELBO) enters it, so that one
        evaluation factorises Kuu once; outside it nothing is memoised (no stale autograd graphs).
        """
        self.__dict__["_memo"] = {}
        try:
            yield
        finally:
            self.__dict__["_memo"] = None

    # -- q(v), whatever the parameterisation ----------------------------------------------------
    @abstractmethod
    def whitened_q(self, chol_Kuu: Tensor) -> tuple[Tensor, Tensor]:
        """(m (*b, M), lower S^{1/2} (*b, M, M)) of q(v), v = L⁻¹(u − E[u])."""

    def u_space_sites(self) -> GaussianSites:
        """q's sites on u − E[u] at the current Kuu (the coordinates in which Z can grow exactly)."""
        L = self.chol_Kuu()
        return GaussianSites.from_whitened_posterior(*self.whitened_q(L)).unwhiten(L)


__all__ = ["InducingMarginals", "InducingStrategy", "Marginals", "PosteriorStrategy"]
