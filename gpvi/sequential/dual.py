"""Dual (site) parameterisation of a sparse variational GP: the state, its E-step and its M-step objectives.

Adam, Chang, Khan & Solin (2021), "Dual Parameterization of Sparse Variational Gaussian
Processes", NeurIPS (t-SVGP); Li, John & Solin (2023), "Improving Hyperparameter Learning under
Approximate Inference in Gaussian Process Models", ICML (the EP-like M-step).

State. q(u) is held as Gaussian sites on the centred inducing variables u − E[u], in the
u-space natural form (U) of the paper (`gpvi.core.sites.GaussianSites`):

    η = Σ_n α_n w_n,   H = Σ_n β_n w_n w_nᵀ,   w_n = K⁻¹ k_n          (η (*b, M), H (*b, M, M))
    q(u − E[u]) = N(S η, S),   S = (K⁻¹ + H)⁻¹          (computed whitened: q(v) = N(B⁻¹Lᵀη, B⁻¹),
                                                          B = I + LᵀHL, K = LLᵀ; never K + KHK)

The sites are buffers, never optimiser parameters; q is rebuilt from them and the *current* K_θ,
so M-step gradients flow through K_θ into q (this is what makes the dual M-step bound tighter
than freezing (m, S): form (U) is exact under outputscale changes, see the method note §1.6).

E-step (CVI / natural gradient, closed form; §1.3 of the note). At the current q, on a batch b of
B points out of N, with g_n = ∂E_n/∂μ_n, h_n = ∂E_n/∂σ²_n and centred means μ_n − μ₀(x_n):

    α_n = g_n − 2 h_n (μ_n − μ₀(x_n)),   β_n = −2 h_n ≥ 1e-8
    (η, H) ← (1 − ρ)(η, H) + ρ (N/B) (Σ_b α_n w_n, Σ_b β_n w_n w_nᵀ)

This is exactly a natural-gradient step of size ρ on the ELBO in q's natural parameters. With a
Gaussian likelihood, the full batch and ρ = 1 it lands on the optimal (Titsias/SGPR) q at once.
The sites are centred on the prior mean (the fix of the reference code's mean-function bug).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.module import Module
from gpytorch.variational import _VariationalDistribution
from torch import Tensor

from gpvi.core.linalg import tri_solve
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
        return GaussianSites(self.eta, self.prec)

    @torch.no_grad()
    def assign(self, sites: GaussianSites) -> None:
        """Overwrite the buffers in place (bumps their version, so prediction caches refresh)."""
        self.eta.copy_(sites.eta.expand_as(self.eta))
        self.prec.copy_(sites.prec.expand_as(self.prec))

    def forward(self) -> MultivariateNormal:
        raise RuntimeError("DualSites define q(u) only together with Kuu: use the strategy's `whitened_q(L)`.")

    def initialize_variational_distribution(self, prior_dist: MultivariateNormal) -> None:
        """Zero sites are the prior: nothing to do."""


class DualSVGPStrategy(WhitenedSVGPStrategy):
    """`WhitenedSVGPStrategy` whose q(v) is built from `DualSites` and the current Kuu = LLᵀ.

    q(v) = N(B⁻¹ Lᵀη, B⁻¹) with B = I + LᵀHL (one Cholesky, `GaussianSites.whitened_posterior`).
    Everything else (marginals, lazy predictive covariance, pathwise sampling, conditioning) is
    inherited, since it reads q only through `whitened_q(L)`.
    """

    def __init__(self, model: Module, features: InducingFeatures, sites: DualSites, jitter: float | None = None):
        super().__init__(model, features, sites, jitter=jitter, whiten=True)  # type: ignore[arg-type]
        self.variational_params_initialized.fill_(1)

    @property
    def _dtype(self) -> torch.dtype:
        return self._variational_distribution.eta.dtype

    @property
    def prior_distribution(self) -> MultivariateNormal:
        eta = self._variational_distribution.eta
        zeros = torch.zeros_like(eta)
        from linear_operator.operators import DiagLinearOperator

        return MultivariateNormal(zeros, DiagLinearOperator(torch.ones_like(zeros)))

    @property
    def dual_sites(self) -> DualSites:
        return self._variational_distribution

    def q_parameters(self) -> tuple[Tensor, Tensor]:
        """(m, lower S^{1/2}) of q(v) at the current hyperparameters."""
        return self.whitened_q(self._chol_Kuu())

    def whitened_q(self, chol_Kuu: Tensor) -> tuple[Tensor, Tensor]:
        memo = self.__dict__.get("_memo")
        if memo is not None and memo.get("q_for") is chol_Kuu:
            return memo["q"]
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
        L = self._chol_Kuu() if chol_Kuu is None else chol_Kuu
        self.dual_sites.assign(GaussianSites.from_whitened_posterior(mean, scale_tril).unwhiten(L))

    def _initialize_if_needed(self) -> None:
        """Zero sites are already the prior."""


def batch_sites(model: Any, X: Tensor, Y: Tensor, *, weights: Tensor | None = None):
    """Per-datum sites (α, β) (*b, B) at the current q on model-space data, with the marginals used.

    Y in the likelihood's layout (see `SVGP._latent_targets`). Returns (alpha, beta, marginals),
    α and β shaped like the strategy's marginals ((P, B) for P latents).
    """
    from gpvi.core.likelihoods import expected_log_prob_and_grads
    from gpvi.core.sites import sites_from_grads
    from gpvi.fit import _latent_layout

    X_in = X.unsqueeze(-3) if model._num_latents > 1 else X
    marg = model.strategy.marginals(X_in)
    y, mean, var = _latent_layout(model, Y, marg.prior_mean + marg.centred_mean, marg.var)
    grads = expected_log_prob_and_grads(model.likelihood, y, mean, var, weights=weights)
    _, d_mean, d_var = _latent_layout(model, Y, grads.d_mean, grads.d_var)
    alpha, beta = sites_from_grads(marg.centred_mean, d_mean, d_var)
    return alpha, beta, marg


class DualStep(NamedTuple):
    """What one E-step computed: the batch's target sites (scaled by N/B) and its per-datum (α, β)."""

    target: GaussianSites
    alpha: Tensor
    beta: Tensor


@torch.no_grad()
def dual_step(
    model: Any,
    X: Tensor,
    Y: Tensor,
    *,
    step: float = 1.0,
    num_data: int | None = None,
    weights: Tensor | None = None,
) -> DualStep:
    """One CVI E-step of size ρ = ``step`` on the batch (X, Y) (model space); returns the batch's sites.

    (η, H) ← (1 − ρ)(η, H) + ρ (N/B) (Σ α_n w_n, Σ β_n w_n w_nᵀ), w_n = K⁻¹k_n = L⁻ᵀL⁻¹k_n.
    """
    N = model.num_data if num_data is None else num_data
    alpha, beta, marg = batch_sites(model, X, Y, weights=weights)
    L = marg.chol_Kuu
    W = tri_solve(L.mT, tri_solve(L, marg.Kuf), upper=True)
    target = GaussianSites.from_data(W, alpha, beta, scale=N / X.shape[-2])
    store = model.strategy.dual_sites
    store.assign(store.sites.damped(target, step))
    return DualStep(target, alpha, beta)


__all__ = ["DualSVGPStrategy", "DualSites", "DualStep", "batch_sites", "dual_step"]
