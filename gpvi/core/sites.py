"""Gaussian sites: pseudo-observations on the inducing variables, and the algebra around them.

A site collection is the unnormalised Gaussian factor

    t(u) = exp(ηᵀu − ½ uᵀ H u),        η (*b, M),  H (*b, M, M) symmetric PSD,

and the approximate posterior is q(u) ∝ p(u) t(u). This is the "u-space natural" storage form (U) of
Adam, Chang, Khan & Solin (2021), "Dual Parameterization of Sparse Variational Gaussian Processes",
NeurIPS: with prior p(u) = N(0, K) (centred u; prior means are handled by the caller),

    S = (K⁻¹ + H)⁻¹,    m = S η.

Per-datum sites (α_n, β_n) on f_n = w_nᵀ u sum to η = Σ α_n w_n, H = Σ β_n w_n w_nᵀ, and come from
the expected-log-likelihood derivatives g_n = ∂E/∂m_n, h_n = ∂E/∂v_n as

    α_n = g_n − 2 h_n m_n,    β_n = −2 h_n          (m_n the centred mean of q(f_n)).

For a Gaussian likelihood with noise σ², α_n = (y_n − μ₀(x_n))/σ² and β_n = 1/σ², whatever q is.

The same algebra serves whitened coordinates v = L⁻¹u (L = chol K, prior N(0, I)): there
η_v = Lᵀη and H_v = LᵀHL, and q(v) = N((I + H_v)⁻¹ η_v, (I + H_v)⁻¹). SVGP's natural-gradient step,
`condition_on_observations`, the dual SVGP, memory and coreset methods all reduce to: build sites,
add or remove them, damp them (CVI), project them onto new features, and read off q.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gpvi.core.linalg import batched_outer_sum, cholesky, eye_like, symmetrize, tri_solve


def sites_from_grads(mean: Tensor, d_mean: Tensor, d_var: Tensor, *, min_precision: float = 1e-8):
    """Per-datum site parameters from expected-log-likelihood derivatives (all (*b, N)).

    α = g − 2 h m,  β = −2 h, with β clamped to ≥ ``min_precision`` so sites stay proper for
    likelihoods that are not log-concave (Student-t), as in the reference t-SVGP code.

    Returns:
        (alpha, beta), each (*b, N).
    """
    beta = (-2.0 * d_var).clamp_min(min_precision)
    alpha = d_mean + beta * mean
    return alpha, beta


@dataclass(frozen=True)
class GaussianSites:
    """Gaussian site factor t(u) = exp(ηᵀu − ½ uᵀHu) on M features (see the module docstring).

    Attributes:
        eta: (*b, M) first natural parameter.
        prec: (*b, M, M) site precision H (symmetric PSD).
    """

    eta: Tensor
    prec: Tensor

    @classmethod
    def zeros(
        cls, num_features: int, *, batch_shape: tuple[int, ...] = (), like: Tensor | None = None
    ) -> GaussianSites:
        """Empty sites (t ≡ 1): q equals the prior."""
        kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
        return cls(
            torch.zeros(*batch_shape, num_features, **kw), torch.zeros(*batch_shape, num_features, num_features, **kw)
        )

    @classmethod
    def from_data(cls, W: Tensor, alpha: Tensor, beta: Tensor, *, scale: float | Tensor = 1.0) -> GaussianSites:
        """Sum per-datum sites on f_n = w_nᵀu: η = s Σ α_n w_n, H = s Σ β_n w_n w_nᵀ.

        Args:
            W: (*b, M, N) projection vectors as columns (w_n = K⁻¹k_n, or L⁻¹k_n when whitened).
            alpha, beta: (*b, N) per-datum sites.
            scale: s, e.g. N/B for a minibatch estimate of the full-data sum.
        """
        eta = (W @ alpha.unsqueeze(-1)).squeeze(-1)
        return cls(scale * eta, scale * batched_outer_sum(W, beta))

    @classmethod
    def from_whitened_posterior(cls, mean: Tensor, scale_tril: Tensor) -> GaussianSites:
        """Whitened sites of q(v) = N(m, S S_trilᵀ) under the prior N(0, I): η = S⁻¹m, H = S⁻¹ − I."""
        eye = eye_like(scale_tril)
        inv_tril = tri_solve(scale_tril, eye.expand_as(scale_tril))  # L_S⁻¹
        prec_q = inv_tril.mT @ inv_tril
        return cls((prec_q @ mean.unsqueeze(-1)).squeeze(-1), symmetrize(prec_q - eye))

    def __add__(self, other: GaussianSites) -> GaussianSites:
        return GaussianSites(self.eta + other.eta, self.prec + other.prec)

    def __sub__(self, other: GaussianSites) -> GaussianSites:
        return GaussianSites(self.eta - other.eta, self.prec - other.prec)

    def scaled(self, factor: float | Tensor) -> GaussianSites:
        """Sites raised to a power: t(u)^factor (tempering, minibatch scaling)."""
        return GaussianSites(factor * self.eta, factor * self.prec)

    def damped(self, target: GaussianSites, step: float) -> GaussianSites:
        """CVI / natural-gradient step of size ρ = ``step``: (1 − ρ) self + ρ target.

        On q's natural parameters this is exactly a natural-gradient step of size ρ on the ELBO
        (Khan & Lin 2017; Salimbeni et al. 2018) when ``target`` holds the sites computed at the
        current q; ρ = 1 jumps to the fixed point (the optimum, for a Gaussian likelihood).
        """
        return GaussianSites(torch.lerp(self.eta, target.eta, step), torch.lerp(self.prec, target.prec, step))

    def project(self, P: Tensor) -> GaussianSites:
        """Move sites to new features u' through w_n' = P w_n: η' = Pη, H' = P H Pᵀ.

        With P = K'⁻¹ K(Z', Z) this replaces k(Z', x_n) by its Nyström approximation through the
        old features; rows of features kept from the old set are exact. With Z' = [Z; Z_new] it is
        exact (P = [I; 0]): the same posterior process on an enlarged inducing set.
        """
        return GaussianSites((P @ self.eta.unsqueeze(-1)).squeeze(-1), symmetrize(P @ self.prec @ P.mT))

    def whiten(self, chol_K: Tensor) -> GaussianSites:
        """Sites on u = L v expressed on v: η_v = Lᵀη, H_v = LᵀHL."""
        return GaussianSites(
            (chol_K.mT @ self.eta.unsqueeze(-1)).squeeze(-1), symmetrize(chol_K.mT @ self.prec @ chol_K)
        )

    def unwhiten(self, chol_K: Tensor) -> GaussianSites:
        """Inverse of `whiten`: η = L⁻ᵀη_v, H = L⁻ᵀ H_v L⁻¹."""
        eta = tri_solve(chol_K.mT, self.eta.unsqueeze(-1), upper=True).squeeze(-1)
        half = tri_solve(chol_K.mT, self.prec, upper=True)
        prec = tri_solve(chol_K.mT, half.mT, upper=True)
        return GaussianSites(eta, symmetrize(prec))

    def whitened_posterior(self, *, jitter: float = 0.0) -> tuple[Tensor, Tensor]:
        """q(v) ∝ N(v; 0, I) t(v) for whitened sites: mean (I + H)⁻¹η and a lower factor of (I + H)⁻¹.

        One Cholesky and one triangular inverse, differentiable: with J the reversal permutation
        and J(I + H)J = C Cᵀ, the lower-triangular J C⁻ᵀ J satisfies (J C⁻ᵀ J)(J C⁻ᵀ J)ᵀ = (I + H)⁻¹.
        I + H has eigenvalues ≥ 1, so this is well conditioned whatever K is.

        Returns:
            (mean (*b, M), scale_tril (*b, M, M)).
        """
        prec = self.prec + (1.0 + jitter) * eye_like(self.prec)
        chol_flip = cholesky(prec.flip(-1, -2), what="whitened posterior precision I + H")
        mean = torch.cholesky_solve(self.eta.flip(-1).unsqueeze(-1), chol_flip).squeeze(-1).flip(-1)
        inv_t = tri_solve(chol_flip, eye_like(prec).expand_as(prec)).mT  # C⁻ᵀ, upper
        return mean, inv_t.flip(-1, -2)

    def posterior(self, chol_K: Tensor) -> tuple[Tensor, Tensor]:
        """q(u) ∝ N(u; 0, K) t(u) in u-space, computed through the whitened form.

        S = L (I + LᵀHL)⁻¹ Lᵀ and m = S η (never forming K + KHK, which loses precision).

        Returns:
            (mean (*b, M), covariance (*b, M, M)).
        """
        mean_v, tril_v = self.whiten(chol_K).whitened_posterior()
        root = chol_K @ tril_v
        return (chol_K @ mean_v.unsqueeze(-1)).squeeze(-1), root @ root.mT

    def to(self, *args, **kwargs) -> GaussianSites:
        return GaussianSites(self.eta.to(*args, **kwargs), self.prec.to(*args, **kwargs))


__all__ = ["GaussianSites", "sites_from_grads"]
