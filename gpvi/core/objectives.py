"""Objectives shared by every variational method, each returning its parts.

ELBO (Hensman, Fusi & Lawrence 2013; Hensman, Matthews & Ghahramani 2015):

    ELBO = (N / B) Σ_{n ∈ batch} w_n E_{q(f_n)}[log p(y_n | f_n)] − β KL[q(u) ‖ p(u)] + log p(θ)

EP-like marginal-likelihood estimate from sites (Li, John & Solin 2023, "Improving Hyperparameter
Learning under Approximate Inference in Gaussian Process Models", ICML; the sparse power-EP energy
of Bui, Yan & Turner 2017), for whitened q(v) = N(m, S), per-datum sites (α_n, β_n), power a:

    τ_n = β_n, g_n = α_n / β_n, s_n = w_nᵀ S w_n, μ_n = w_nᵀ m (centred), c_n = max(1 − a τ_n s_n, 1e-5)
    cavity of f_n: mean μ₀(x_n) + μ_n + a s_n τ_n (μ_n − g_n) / c_n,  variance k_nn − Q_nn + s_n / c_n
    log Ẑ_n = log ∫ p(y_n | f)^a N(f; cavity) df        (`log_predictive_density`: closed form or quadrature)
    log Z_EP ≈ ½ log|S| + ½ mᵀS⁻¹m + (N/B) Σ_n [ (1/a) log Ẑ_n − (1/2a) log c_n
                 + ½ τ_n μ_n² / c_n + ½ a τ_n² g_n² s_n / c_n − τ_n g_n μ_n / c_n ]

(whitened coordinates, so the −½ log|K| of the u-space form is absorbed in log|S|). With Z = X, a
Gaussian likelihood and exact sites it equals the exact log marginal likelihood. The reference code
raises the log-likelihood to the power a instead of multiplying by it; here a · log p is used.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from gpytorch.likelihoods import GaussianLikelihood, Likelihood, _OneDimensionalLikelihood
from torch import Tensor

from gpvi.core.likelihoods import DEFAULT_QUADRATURE, log_predictive_density
from gpvi.core.linalg import gram_and_project, symmetrize, tri_solve


class ElboParts(NamedTuple):
    """The ELBO and its parts (all scalars, or (*b,) for batched models).

    elbo = expected_log_lik − kl_weight · kl + log_prior.
    """

    elbo: Tensor
    expected_log_lik: Tensor
    kl: Tensor
    log_prior: Tensor


def kl_whitened(mean: Tensor, scale_tril: Tensor) -> Tensor:
    """KL[N(m, S) ‖ N(0, I)] = ½ (tr S + mᵀm − M − log|S|) with S = L Lᵀ; (*b, M), (*b, M, M) -> (*b,)."""
    M = mean.shape[-1]
    log_det = 2.0 * scale_tril.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)
    trace = scale_tril.pow(2).sum((-1, -2))
    return 0.5 * (trace + mean.pow(2).sum(-1) - M - log_det)


def elbo(
    expected_log_lik: Tensor,
    kl: Tensor,
    *,
    num_data: int,
    kl_weight: float = 1.0,
    log_prior: Tensor | float = 0.0,
) -> ElboParts:
    """Combine per-datum expected log-likelihoods (*b, B) and the KL (*b,) into the ELBO.

    The data term is scaled by N/B so that its expectation over uniform minibatches equals the
    full-data sum; the KL is weighted by ``kl_weight`` (β: tempering, coresets).
    """
    batch_size = expected_log_lik.shape[-1]
    data = expected_log_lik.sum(-1) * (num_data / batch_size)
    log_prior = torch.as_tensor(log_prior, dtype=data.dtype, device=data.device)
    return ElboParts(data - kl_weight * kl + log_prior, data, kl, log_prior)


def collapsed_elbo(chol_Kuu: Tensor, Kuf: Tensor, k_diag: Tensor, y_centred: Tensor, noise: Tensor) -> Tensor:
    """The collapsed (Titsias 2009, SGPR) bound for a Gaussian likelihood, with q(u) optimal in closed form.

    Titsias (2009), "Variational Learning of Inducing Variables in Sparse Gaussian Processes":

        log N(y | 0, Qff + σ²I) − tr(Kff − Qff) / 2σ²,    Qff = Kfu Kuu⁻¹ Kuf

    computed from Φ = Kuf Kfu and b = Kuf y (the only O(N M²) and O(N M) work), whitened in M×M:
    AAᵀ = L⁻¹ Φ L⁻ᵀ / σ² (A = L⁻¹Kuf / σ, never formed), B = I + AAᵀ = L_B L_Bᵀ, c = L_B⁻¹ L⁻¹ b / σ²:

        −N/2 log 2πσ² − Σ log diag L_B − yᵀy / 2σ² + cᵀc / 2 − Σ k_nn / 2σ² + tr(AAᵀ) / 2

    Forming Φ first costs one N×M×M product forwards and one backwards, against a triangular
    solve against Kuf, the product AAᵀ and both their backwards (about 2.5x the work) for A.
    Below float64 A itself is formed (Φ's round-off grows with Kuu's condition number).

    It equals the ELBO at the dual fixed point (one full-data E-step with ρ = 1), and the exact log
    marginal likelihood when Z = X (up to jitter). Cost O(N M²).

    Args:
        chol_Kuu: (*b, M, M), the lower Cholesky factor of Kuu.
        Kuf: (*b, M, N).
        k_diag: (*b, N) prior variances.
        y_centred: (*b, N) targets minus the prior mean.
        noise: σ², broadcastable to (*b, 1).

    Returns:
        (*b,) the bound (a total over the N points, not per datum).
    """
    N = Kuf.shape[-1]
    noise = noise.reshape(1) if noise.dim() == 0 else noise
    noise = noise.expand(*y_centred.shape[:-1], 1)  # (*b, 1)
    gram_white, proj = _whitened_gram(chol_Kuu, Kuf, y_centred.unsqueeze(-1), noise, k_diag)
    inner = gram_white / noise.unsqueeze(-1)  # AAᵀ
    chol_B = torch.linalg.cholesky(inner + torch.eye(inner.shape[-1], dtype=Kuf.dtype, device=Kuf.device))
    c = tri_solve(chol_B, proj).squeeze(-1) / noise
    noise = noise.squeeze(-1)
    return (
        -0.5 * N * torch.log(2 * math.pi * noise)
        - chol_B.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        - 0.5 * y_centred.pow(2).sum(-1) / noise
        + 0.5 * c.pow(2).sum(-1)
        - 0.5 * k_diag.sum(-1) / noise
        + 0.5 * inner.diagonal(dim1=-2, dim2=-1).sum(-1)
    )


#: Largest tolerated round-off, relative to B's unit diagonal, of the whitened Gram formed from Φ = Kuf Kfu.
GRAM_ROUNDOFF = 1e-6


def phi_route_roundoff(chol_Kuu: Tensor, k_diag: Tensor, noise: Tensor) -> Tensor:
    """Bound on the round-off of L⁻¹ Φ L⁻ᵀ / σ² (the Φ = Kuf Kfu route), relative to B = I + AAᵀ.

    Whitening Φ multiplies its round-off ε N max k_nn by up to κ(Kuu) ≈ (max L_ii / min L_ii)²
    (a lower estimate of the condition number, from the factor already at hand):

        err ≈ ε κ N max k_nn / σ²
    """
    diag = chol_Kuu.diagonal(dim1=-2, dim2=-1).detach()
    kappa = (diag.max(-1).values / diag.min(-1).values).pow(2)
    eps = torch.finfo(chol_Kuu.dtype).eps
    scale = k_diag.detach().amax(-1) * k_diag.shape[-1] / noise.detach().reshape(-1).amin()
    return eps * kappa * scale


def _whitened_gram(
    chol_Kuu: Tensor, Kuf: Tensor, y: Tensor, noise: Tensor | None = None, k_diag: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(L⁻¹ Kuf Kfu L⁻ᵀ (*b, M, M), L⁻¹ Kuf y (*b, M, 1)) for y (*b, N, 1).

    In float64 from Φ = Kuf Kfu (whitened in M×M; see `collapsed_elbo`) when its round-off, amplified
    by Kuu's condition number, stays below `GRAM_ROUNDOFF` of B (`phi_route_roundoff`); otherwise
    (lower precision, or small noise with an ill-conditioned Kuu: noise-free data) from A = L⁻¹Kuf,
    whose round-off is not amplified by Kuu's condition number, so B stays positive definite.
    """
    stable = Kuf.dtype != torch.float64
    if not stable and noise is not None and k_diag is not None:
        stable = bool((phi_route_roundoff(chol_Kuu, k_diag, noise) > GRAM_ROUNDOFF).any())
    if stable:
        return gram_and_project(tri_solve(chol_Kuu, Kuf), y)
    phi, proj = gram_and_project(Kuf, y)
    half = tri_solve(chol_Kuu, phi)  # L⁻¹ Φ
    white = tri_solve(chol_Kuu, half.mT)  # L⁻¹ Φ L⁻ᵀ (Φ symmetric)
    return symmetrize(white), tri_solve(chol_Kuu, proj)


def _log_tilted(likelihood: Likelihood, y: Tensor, mean: Tensor, var: Tensor, power: float, num: int | None) -> Tensor:
    """log ∫ p(y|f)^a N(f; mean, var) df, (*b, B): `log_predictive_density` with power a (closed form for a
    Gaussian likelihood; in log space by the adaptive rule, or ``num`` Gauss–Hermite nodes, otherwise)."""
    if not isinstance(likelihood, (_OneDimensionalLikelihood, GaussianLikelihood)):
        raise TypeError(f"The EP-like estimate needs a one-dimensional likelihood, got {type(likelihood).__name__}.")
    return log_predictive_density(likelihood, y, mean, var, power=power, num_quadrature=num)


def ep_log_marginal(
    likelihood: Likelihood,
    y: Tensor,
    *,
    prior_mean: Tensor,
    proj_mean: Tensor,
    proj_var: Tensor,
    cond_var: Tensor,
    alpha: Tensor,
    beta: Tensor,
    q_mean: Tensor,
    q_scale_tril: Tensor,
    num_data: int,
    power: float = 1.0,
    num_quadrature: int | None = DEFAULT_QUADRATURE,
) -> Tensor:
    """EP-like estimate of log p(y | θ) from sites (formula in the module docstring).

    Args:
        likelihood: A one-dimensional gpytorch likelihood.
        y: (*b, B) targets of the batch.
        prior_mean: (*b, B) μ₀(x_n).
        proj_mean: (*b, B) centred q-mean μ_n = w_nᵀm.
        proj_var: (*b, B) s_n = w_nᵀ S w_n.
        cond_var: (*b, B) k_nn − Q_nn.
        alpha, beta: (*b, B) sites at the current q (`sites_from_grads`).
        q_mean, q_scale_tril: whitened q(v), (*b, M) and (*b, M, M).
        num_data: N (the batch term is scaled by N/B).
        power: the power-EP exponent a (1 = EP).
        num_quadrature: Rule for log Ẑ_n: None, the adaptive rule (accurate for wide cavities), or
            K Gauss–Hermite nodes (`gpvi.core.likelihoods`).

    Returns:
        (*b,) the estimate.
    """
    a = power
    tau, g = beta, alpha / beta
    c = (1.0 - a * tau * proj_var).clamp_min(1e-5)
    cav_mean = prior_mean + proj_mean + a * proj_var * tau * (proj_mean - g) / c
    cav_var = cond_var + proj_var / c
    log_z = _log_tilted(likelihood, y, cav_mean, cav_var, a, num_quadrature)
    per_datum = (
        log_z / a
        - torch.log(c) / (2 * a)
        + 0.5 * tau * proj_mean**2 / c
        + 0.5 * a * tau**2 * g**2 * proj_var / c
        - tau * g * proj_mean / c
    )
    log_det_S = 2.0 * q_scale_tril.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)
    white = tri_solve(q_scale_tril, q_mean.unsqueeze(-1)).squeeze(-1)  # L_S⁻¹ m
    return 0.5 * log_det_S + 0.5 * white.pow(2).sum(-1) + per_datum.sum(-1) * (num_data / y.shape[-1])


__all__ = ["ElboParts", "collapsed_elbo", "elbo", "ep_log_marginal", "kl_whitened"]
