"""The dual (site-parameterised) strategy: q(u) held as Gaussian sites on u − E[u], rebuilt on the current Kuu.

Adam, Chang, Khan & Solin (2021), "Dual Parameterization of Sparse Variational Gaussian
Processes", NeurIPS (t-SVGP). q(u) is stored in the u-space natural form (U) of the paper
(`gpvi.core.sites.GaussianSites`):

    η = Σ_n α_n w_n,   H = Σ_n β_n w_n w_nᵀ,   w_n = K⁻¹ k_n          (η (*b, M), H (*b, M, M))
    q(u − E[u]) = N(S η, S),   S = (K⁻¹ + H)⁻¹          (computed whitened: q(v) = N(B⁻¹Lᵀη, B⁻¹),
                                                          B = I + LᵀHL, K = LLᵀ; never K + KHK)

The sites are buffers, never optimiser parameters; q is rebuilt from them and the *current* K_θ,
so hyperparameter gradients flow through K_θ into q (this is what makes the dual M-step bound
tighter than freezing (m, S): form (U) is exact under outputscale changes, method note §1.6).
Site coordinates of the contract (`sites`, `set_sites`, the marginals' projection K⁻¹Kuf) are
u − E[u], so a natural-gradient step on this strategy *is* the paper's CVI E-step.
"""

from __future__ import annotations

import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.variational import _VariationalDistribution
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from gpvi.core.objectives import kl_whitened
from gpvi.core.sites import GaussianSites
from gpvi.features.base import InducingFeatures
from gpvi.variational.svgp import WhitenedSVGPStrategy


class DualSites(_VariationalDistribution):
    """Buffers η (*b, M) and H (*b, M, M): u-space sites on u − E[u] (zero sites: q = prior)."""

    def __init__(self, num_inducing: int, batch_shape: torch.Size | None = None, dtype: torch.dtype | None = None):
        batch_shape = torch.Size() if batch_shape is None else torch.Size(batch_shape)
        super().__init__(num_inducing_points=num_inducing, batch_shape=batch_shape)
        dtype = dtype or torch.get_default_dtype()
        self.register_buffer("eta", torch.zeros(*batch_shape, num_inducing, dtype=dtype))
        self.register_buffer("prec", torch.zeros(*batch_shape, num_inducing, num_inducing, dtype=dtype))

    @property
    def sites(self) -> GaussianSites:
        """The buffers as `GaussianSites` (η, H); they share the buffers' memory."""
        return GaussianSites(self.eta, self.prec)

    @torch.no_grad()
    def assign(self, sites: GaussianSites) -> None:
        """Overwrite the buffers in place (bumps their version, so prediction caches refresh)."""
        self.eta.copy_(sites.eta.expand_as(self.eta))
        self.prec.copy_(sites.prec.expand_as(self.prec))

    def forward(self) -> MultivariateNormal:
        """Always raises `RuntimeError`: the sites define q(u) only with Kuu (use the strategy's `whitened_q`)."""
        raise RuntimeError("DualSites define q(u) only together with Kuu: use the strategy's `whitened_q(L)`.")

    def initialize_variational_distribution(self, prior_dist: MultivariateNormal) -> None:
        """Zero sites are the prior: nothing to do."""


class DualSVGPStrategy(WhitenedSVGPStrategy):
    """`WhitenedSVGPStrategy` whose q(v) is built from `DualSites` and the current Kuu = LLᵀ.

    q(v) = N(B⁻¹ Lᵀη, B⁻¹) with B = I + LᵀHL (one Cholesky, `GaussianSites.whitened_posterior`).
    Marginals, the lazy predictive covariance, pathwise sampling and conditioning are inherited:
    they read q only through `whitened_q(L)`.

    Args:
        features: The inducing features (fixed during CVI: the sites live on u = f(Z)).
        dual_sites: The site buffers (default: zero sites of shape (*batch_shape, M)).
        jitter: Added to Kuu's diagonal.
        batch_shape: Batch shape of the default sites (one per latent output).
    """

    site_space = "u"

    def __init__(
        self,
        features: InducingFeatures,
        dual_sites: DualSites | None = None,
        jitter: float | None = None,
        *,
        batch_shape: torch.Size = torch.Size(),  # noqa: B008
    ) -> None:
        if dual_sites is None:
            dual_sites = DualSites(features.num_inducing, batch_shape, dtype=features.dtype)
        super().__init__(features, dual_sites, jitter=jitter, whiten=True)  # type: ignore[arg-type]
        self.variational_params_initialized.fill_(1)

    @property
    def _dtype(self) -> torch.dtype:
        return self._variational_distribution.eta.dtype

    @property
    def prior_distribution(self) -> MultivariateNormal:
        zeros = torch.zeros_like(self._variational_distribution.eta)
        return MultivariateNormal(zeros, DiagLinearOperator(torch.ones_like(zeros)))

    @property
    def dual_sites(self) -> DualSites:
        """The `DualSites` buffers (the strategy's variational distribution)."""
        return self._variational_distribution

    def sites(self) -> GaussianSites:
        """The stored u-space sites (η, H) on u − E[u]."""
        return self.dual_sites.sites

    def set_sites(self, sites: GaussianSites) -> None:
        self.dual_sites.assign(sites)

    def q_parameters(self) -> tuple[Tensor, Tensor]:
        """(m, lower S^{1/2}) of q(v) at the current hyperparameters."""
        return self.whitened_q(self.chol_Kuu())

    def whitened_q(self, chol_Kuu: Tensor) -> tuple[Tensor, Tensor]:
        memo = self.__dict__.get("_memo")
        if memo is not None and memo.get("q_for") is chol_Kuu:
            return memo["q"]
        q = self.held_q(chol_Kuu)
        if q is None:
            q = self.dual_sites.sites.whiten(chol_Kuu).whitened_posterior()
        if memo is not None:
            memo["q_for"], memo["q"] = chol_Kuu, q
        return q

    def kl_divergence(self) -> Tensor:
        return kl_whitened(*self.q_parameters())

    @torch.no_grad()
    def set_q(self, mean: Tensor, scale_tril: Tensor, chol_Kuu: Tensor | None = None) -> None:
        """Set the sites that give q(v) = N(mean, scale_tril scale_trilᵀ) at the current Kuu.

        η_v = S⁻¹m, H_v = S⁻¹ − I, then back to u-space: η = L⁻ᵀη_v, H = L⁻ᵀH_vL⁻¹ (the dual
        parameters of an ordinary SVGP's q; the inverse of `whitened_q`).
        """
        L = self.chol_Kuu() if chol_Kuu is None else chol_Kuu
        self.dual_sites.assign(GaussianSites.from_whitened_posterior(mean, scale_tril).unwhiten(L))

    def u_space_sites(self) -> GaussianSites:
        return self.dual_sites.sites

    def _initialize_if_needed(self) -> None:
        """Zero sites are already the prior."""


__all__ = ["DualSVGPStrategy", "DualSites"]
