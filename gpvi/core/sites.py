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

Three objects, from the data up:
- `batch_sites`: per-datum (α_n, β_n) at the current q of a batch, from the core's expectations
  (the one place where sites are computed from a likelihood);
- `PointSites`: a store of per-datum sites with their inputs (and weights), which re-projects
  exactly onto any features because it keeps the inputs (a memory, a coreset, the last E-step);
- `GaussianSites`: sites summed onto M features, the form every posterior reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gpvi.core.likelihoods import expected_log_prob, expected_log_prob_and_grads, likelihood_layout
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


def batch_sites(
    likelihood: Any,
    y: Tensor,
    marginals: Any,
    *,
    weights: Tensor | None = None,
    differentiable: bool = False,
    min_precision: float = 1e-8,
    num_quadrature: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-datum sites (α, β) of a batch at the current q, from the core's expected log-likelihoods.

    With g = ∂E/∂m and h = ∂E/∂v at the marginals of q(f_n) (`expected_log_prob_and_grads`):
    α_n = g_n − 2 h_n (m_n − μ₀(x_n)), β_n = −2 h_n ≥ ``min_precision`` (`sites_from_grads`).

    Args:
        likelihood: A gpytorch likelihood supported by `gpvi.core.likelihoods`.
        y: Targets in the likelihood's layout ((*b, N); (*b, P, N) for P outputs; labels for softmax).
        marginals: Any object with ``prior_mean``, ``centred_mean`` and ``var``, each (*b, N) or
            (*b, P, N) (a strategy's `Marginals`).
        weights: Optional per-datum weights (tempering, memory, coreset), broadcastable to ``y``.
        differentiable: Keep the graph from the marginals to (α, β) (second-order autograd), for
            objectives built from sites at the current q (the EP-like minibatch M-step). Without it
            the sites are detached values.
        min_precision: Floor of β, so that sites stay proper for non-log-concave likelihoods.
        num_quadrature: Rule of the expectations: None, the adaptive rule (accurate for any q), or K
            Gauss–Hermite nodes (`gpvi.core.likelihoods`).

    Returns:
        (alpha, beta), each shaped like ``marginals.centred_mean``.
    """
    mean, var = marginals.prior_mean + marginals.centred_mean, marginals.var
    if differentiable and (mean.requires_grad or var.requires_grad):
        mean, var = (t if t.requires_grad else t.detach().requires_grad_() for t in (mean, var))
        with torch.enable_grad():
            value = expected_log_prob(
                likelihood, y, *likelihood_layout(likelihood, mean, var), weights=weights, num_quadrature=num_quadrature
            )
            d_mean, d_var = torch.autograd.grad(value.sum(), (mean, var), create_graph=True)
    else:
        grads = expected_log_prob_and_grads(
            likelihood, y, *likelihood_layout(likelihood, mean, var), weights=weights, num_quadrature=num_quadrature
        )
        d_mean, d_var = likelihood_layout(likelihood, grads.d_mean, grads.d_var)
    return sites_from_grads(marginals.centred_mean, d_mean, d_var, min_precision=min_precision)


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

    def log_normalizer(self, chol_K: Tensor) -> Tensor:
        """log ∫ N(u; 0, K) t(u) du = ½ η_vᵀ B⁻¹ η_v − ½ log|B|, B = I + LᵀHL, η_v = Lᵀη (K = LLᵀ); (*b,).

        The evidence the sites carry: with Gaussian-likelihood sites it is the log marginal
        likelihood up to the sites' own normalising constants (MagmaClust's collapsed ELBO).
        """
        white = self.whiten(chol_K)
        chol_B = cholesky(white.prec + eye_like(white.prec), what="site precision I + LᵀHL")
        c = tri_solve(chol_B, white.eta.unsqueeze(-1)).squeeze(-1)
        return 0.5 * c.pow(2).sum(-1) - chol_B.diagonal(dim1=-2, dim2=-1).log().sum(-1)

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
        """The sites with η and H converted by `Tensor.to` (same arguments)."""
        return GaussianSites(self.eta.to(*args, **kwargs), self.prec.to(*args, **kwargs))


@dataclass(frozen=True)
class PointSites:
    """A store of per-datum sites t_n(f_n) = exp(w_n (α_n f_n − ½ β_n f_n²)) with their inputs.

    Because the inputs are kept, the store re-projects *exactly* onto any feature set (a Nyström map
    of summed sites, `GaussianSites.project`, cannot): for features with Kuf = Cov(u, f(X)) and
    Kuu = LLᵀ, f_n's site on u − E[u] has w_n = Kuu⁻¹ k_u(x_n), so

        η = Σ_n w_n α_n Kuu⁻¹k_n,    H = Σ_n w_n β_n Kuu⁻¹ k_n k_nᵀ Kuu⁻¹        (`project`).

    This is the per-datum site source of the dual E-step (`DualSVGP.point_sites`), and the form a
    memory of past data or a coreset takes.

    Attributes:
        inputs: (*b, N, D) model-space inputs x_n.
        alpha, beta: (*b, N) (or (*b, P, N) for P latent outputs) site parameters, β ≥ 0.
        weights: optional (*b, N) multipliers of α and β (tempering, memory weights); None: 1.
    """

    inputs: Tensor
    alpha: Tensor
    beta: Tensor
    weights: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.inputs.shape[-2]
        if self.alpha.shape != self.beta.shape or self.alpha.shape[-1] != n:
            raise ValueError(
                f"`alpha` {tuple(self.alpha.shape)} and `beta` {tuple(self.beta.shape)} must share one shape "
                f"ending in the number of inputs N = {n}."
            )
        if self.weights is not None and self.weights.shape[-1] != n:
            raise ValueError(f"`weights` {tuple(self.weights.shape)} must end in N = {n}.")

    @property
    def num_points(self) -> int:
        """N, the data points in the store."""
        return self.inputs.shape[-2]

    def weighted(self) -> tuple[Tensor, Tensor]:
        """(w α, w β), the parameters that enter the sums."""
        if self.weights is None:
            return self.alpha, self.beta
        return self.alpha * self.weights, self.beta * self.weights

    def summed(self, projection: Tensor) -> GaussianSites:
        """The sites summed on coordinates s with f_n − μ₀(x_n) = w_nᵀ s (``projection`` (*b, M, N): the w_n)."""
        alpha, beta = self.weighted()
        return GaussianSites.from_data(projection, alpha, beta)

    def project(self, Kuf: Tensor, chol_Kuu: Tensor) -> GaussianSites:
        """Exact sites on u − E[u] of features with Kuf (*b, M, N) at these inputs and Kuu = LLᵀ (see above)."""
        W = tri_solve(chol_Kuu.mT, tri_solve(chol_Kuu, Kuf), upper=True)
        return self.summed(W)

    def add(self, other: PointSites) -> PointSites:
        """Both stores' sites (the inputs and parameters concatenated)."""
        if (self.weights is None) != (other.weights is None):
            ones = self.alpha.new_ones(())
            mine = self.weights if self.weights is not None else ones.expand(self.alpha.shape[-1])
            theirs = other.weights if other.weights is not None else ones.expand(other.alpha.shape[-1])
        else:
            mine, theirs = self.weights, other.weights
        return PointSites(
            torch.cat([self.inputs, other.inputs], -2),
            torch.cat([self.alpha, other.alpha], -1),
            torch.cat([self.beta, other.beta], -1),
            None if mine is None else torch.cat([mine, theirs], -1),
        )

    def select(self, index: Tensor) -> PointSites:
        """The sites at positions ``index`` (a long index or a boolean mask over the N points)."""
        if index.dtype == torch.bool:
            index = index.nonzero().squeeze(-1)
        weights = None if self.weights is None else self.weights[..., index]
        return PointSites(self.inputs[..., index, :], self.alpha[..., index], self.beta[..., index], weights)

    def remove(self, index: Tensor) -> PointSites:
        """The store without the sites at positions ``index`` (long index or boolean mask)."""
        keep = torch.ones(self.num_points, dtype=torch.bool, device=self.inputs.device)
        keep[index] = False
        return self.select(keep)


__all__ = ["GaussianSites", "PointSites", "batch_sites", "sites_from_grads"]
