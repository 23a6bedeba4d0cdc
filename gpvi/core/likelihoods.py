"""Expected log-likelihoods E_q[log p(y | f)] for q(f) = N(m, v), and their derivatives in m and v.

Every gpvi objective (ELBO, EP-like estimate) and every site update (CVI / dual / memory) reads the
likelihood through the two functions here:

    expected_log_prob(likelihood, y, mean, var, weights=None)              -> E_n            (*b, N)
    expected_log_prob_and_grads(likelihood, y, mean, var, weights=None)    -> E_n, ∂E_n/∂m_n, ∂E_n/∂v_n

    E_n(m_n, v_n) = w_n ∫ log p(y_n | f) N(f; m_n, v_n) df

Per-datum weights w_n (tempering, coreset weights, memory weights) enter here and nowhere else.

How each likelihood is integrated:
- `GaussianLikelihood` (noise σ²): closed form  −½ log 2πσ² − ((y − m)² + v) / 2σ²,
  with ∂/∂m = (y − m)/σ² and ∂/∂v = −1/(2σ²).
- `ExpPoissonLikelihood` (log-rate f): closed form  y m − exp(m + v/2) − log y!,
  with ∂/∂m = y − exp(m + v/2) and ∂/∂v = −½ exp(m + v/2).
- `BernoulliLikelihood` (gpytorch's probit link, p(y|f) = Φ((2y−1) f)): E_q[log Φ] has no closed
  form; Gauss–Hermite quadrature of `log_ndtr`, which stays finite far in the tails.
- `LogitBernoulliLikelihood`, `StudentTLikelihood`, gpytorch's (softplus) `PoissonLikelihood` and
  any other `_OneDimensionalLikelihood`: Gauss–Hermite quadrature (``num_quadrature`` nodes) of
  ``likelihood.forward(f).log_prob(y)``.
- `SoftmaxLikelihood` (one independent latent per class; mean, var are (*b, N, C)): Monte Carlo with
  ``num_samples`` fixed standard-normal draws from a seeded generator (common random numbers), so
  E is a smooth deterministic function of (m, v) and its derivatives are exact for that estimator.

Derivatives of the quadrature and MC rules come from autograd with m and v as leaves; since E_n
depends only on (m_n, v_n), the gradient of Σ_n E_n gives every per-datum derivative in one pass.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from gpytorch.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    Likelihood,
    SoftmaxLikelihood,
    _OneDimensionalLikelihood,
)
from gpytorch.likelihoods.gaussian_likelihood import _GaussianLikelihoodBase
from torch import Tensor
from torch.distributions import Bernoulli, Poisson

DEFAULT_QUADRATURE = 20
DEFAULT_MC_SAMPLES = 256


class ExpectationGrads(NamedTuple):
    """Per-datum expected log-likelihood and its derivatives, all shaped like ``mean`` (*b, N[, C])."""

    value: Tensor
    d_mean: Tensor
    d_var: Tensor


class LogitBernoulliLikelihood(_OneDimensionalLikelihood):
    """Bernoulli likelihood with a logit link: p(y = 1 | f) = σ(f), labels y in {0, 1}."""

    def forward(self, function_samples: Tensor, *args: Any, **kwargs: Any) -> Bernoulli:
        return Bernoulli(logits=function_samples)


class ExpPoissonLikelihood(_OneDimensionalLikelihood):
    """Poisson likelihood with the canonical log link: y ~ Poisson(exp(f)).

    gpytorch's `PoissonLikelihood` uses a softplus link instead (integrated by quadrature here).
    """

    def forward(self, function_samples: Tensor, *args: Any, **kwargs: Any) -> Poisson:
        return Poisson(rate=function_samples.exp())


def _hermgauss(num: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Probabilists' Gauss–Hermite nodes ξ and weights ω with Σ ω g(ξ) ≈ E_{N(0,1)}[g]."""
    x, w = np.polynomial.hermite.hermgauss(num)
    nodes = torch.as_tensor(x * math.sqrt(2.0), dtype=like.dtype, device=like.device)
    weights = torch.as_tensor(w / math.sqrt(math.pi), dtype=like.dtype, device=like.device)
    return nodes, weights


def _quadrature(log_prob, y: Tensor, mean: Tensor, var: Tensor, num: int) -> Tensor:
    """Σ_i ω_i log p(y | m + √v ξ_i) over Gauss–Hermite nodes; shapes (*b, N)."""
    nodes, weights = _hermgauss(num, mean)
    f = mean.unsqueeze(-1) + var.clamp_min(0).sqrt().unsqueeze(-1) * nodes  # (*b, N, Q)
    return (log_prob(y.unsqueeze(-1), f) * weights).sum(-1)


def _gaussian_noise(likelihood: _GaussianLikelihoodBase, like: Tensor) -> Tensor:
    noise = likelihood.noise
    # noise has shape (*batch, 1) for a homoskedastic likelihood: broadcast against (*b, N).
    return noise.to(like)


def _check_shapes(y: Tensor, mean: Tensor, var: Tensor, weights: Tensor | None) -> None:
    if mean.shape != var.shape:
        raise ValueError(f"`mean` {tuple(mean.shape)} and `var` {tuple(var.shape)} must have one shape.")
    if weights is not None and torch.broadcast_shapes(weights.shape, y.shape) != y.shape:
        raise ValueError(f"`weights` {tuple(weights.shape)} must broadcast to `y` {tuple(y.shape)}.")


def expected_log_prob(
    likelihood: Likelihood,
    y: Tensor,
    mean: Tensor,
    var: Tensor,
    *,
    weights: Tensor | None = None,
    num_quadrature: int = DEFAULT_QUADRATURE,
    num_samples: int = DEFAULT_MC_SAMPLES,
) -> Tensor:
    """Per-datum E_{N(f; m, v)}[log p(y | f)] times the optional weights.

    Args:
        likelihood: A gpytorch likelihood (see the module docstring for the supported ones).
        y: Targets (*b, N); class labels for `SoftmaxLikelihood`.
        mean, var: Marginals of q(f), (*b, N), or (*b, N, C) for `SoftmaxLikelihood`.
        weights: Optional per-datum weights broadcastable to (*b, N).
        num_quadrature: Gauss–Hermite nodes for 1-D likelihoods without a closed form.
        num_samples: Monte Carlo draws for `SoftmaxLikelihood`.

    Returns:
        (*b, N) expected log-likelihoods; differentiable in mean, var and likelihood parameters.
    """
    _check_shapes(y, mean, var, weights)
    value = _expected_log_prob(likelihood, y, mean, var, num_quadrature, num_samples)
    return value if weights is None else value * weights


def _expected_log_prob(
    likelihood: Likelihood, y: Tensor, mean: Tensor, var: Tensor, num_quadrature: int, num_samples: int
) -> Tensor:
    if isinstance(likelihood, GaussianLikelihood) or type(likelihood) is _GaussianLikelihoodBase:
        noise = _gaussian_noise(likelihood, mean)
        return -0.5 * (torch.log(2 * math.pi * noise) + ((y - mean) ** 2 + var) / noise)
    if isinstance(likelihood, ExpPoissonLikelihood):
        return y * mean - torch.exp(mean + 0.5 * var) - torch.lgamma(y + 1)
    if isinstance(likelihood, BernoulliLikelihood):
        # log Φ((2y−1) f) with log_ndtr, finite far in the tails
        return _quadrature(lambda yy, f: torch.special.log_ndtr((2 * yy - 1) * f), y, mean, var, num_quadrature)
    if isinstance(likelihood, LogitBernoulliLikelihood):
        # log σ((2y−1) f) = −softplus(−(2y−1) f)
        return _quadrature(lambda yy, f: -torch.nn.functional.softplus(-(2 * yy - 1) * f), y, mean, var, num_quadrature)
    if isinstance(likelihood, SoftmaxLikelihood):
        return _softmax_mc(likelihood, y, mean, var, num_samples)
    if isinstance(likelihood, _OneDimensionalLikelihood):
        return _quadrature(lambda yy, f: likelihood.forward(f).log_prob(yy), y, mean, var, num_quadrature)
    raise TypeError(
        f"No expected log-likelihood for {type(likelihood).__name__}: use a gpytorch "
        "_OneDimensionalLikelihood, GaussianLikelihood or SoftmaxLikelihood."
    )


def _softmax_mc(likelihood: SoftmaxLikelihood, y: Tensor, mean: Tensor, var: Tensor, num: int) -> Tensor:
    """MC estimate of E[log softmax(W f)_y] with fixed draws eps (S, C) shared across data."""
    if mean.dim() < 2:
        raise ValueError(f"SoftmaxLikelihood needs `mean` of shape (*b, N, C), got {tuple(mean.shape)}.")
    gen = torch.Generator(device=mean.device).manual_seed(0)
    eps = torch.randn(num, mean.shape[-1], generator=gen, dtype=mean.dtype, device=mean.device)
    f = mean.unsqueeze(-2) + var.clamp_min(0).sqrt().unsqueeze(-2) * eps  # (*b, N, S, C)
    if likelihood.mixing_weights is not None:
        f = f @ likelihood.mixing_weights.t().to(f)
    log_p = torch.log_softmax(f, dim=-1)
    labels = y.long().unsqueeze(-1).unsqueeze(-1).expand(*log_p.shape[:-1], 1)
    return log_p.gather(-1, labels).squeeze(-1).mean(-1)


def likelihood_layout(likelihood: Likelihood, *latent: Tensor) -> tuple[Tensor, ...]:
    """Marginals in the latent layout (*b, P, N) -> the layout ``likelihood`` reads.

    `SoftmaxLikelihood` reads its C latents last, (*b, N, C); every other likelihood reads (*b, P, N)
    (P independent outputs, or (*b, N) for one). Applied to the site derivatives it is its own inverse.
    """
    if isinstance(likelihood, SoftmaxLikelihood):
        return tuple(t.transpose(-1, -2) for t in latent)
    return latent


def expected_log_prob_and_grads(
    likelihood: Likelihood,
    y: Tensor,
    mean: Tensor,
    var: Tensor,
    *,
    weights: Tensor | None = None,
    num_quadrature: int = DEFAULT_QUADRATURE,
    num_samples: int = DEFAULT_MC_SAMPLES,
) -> ExpectationGrads:
    """E_n and its derivatives g_n = ∂E_n/∂m_n and h_n = ∂E_n/∂v_n (detached values).

    These are what CVI / dual updates need: the site parameters are α_n = g_n − 2 h_n m_n and
    β_n = −2 h_n (see `gpvi.core.sites.sites_from_grads`). Same arguments as `expected_log_prob`.
    """
    _check_shapes(y, mean, var, weights)
    closed = _closed_form_grads(likelihood, y, mean.detach(), var.detach())
    if closed is None:
        with torch.enable_grad():
            m = mean.detach().requires_grad_(True)
            v = var.detach().requires_grad_(True)
            value = _expected_log_prob(likelihood, y, m, v, num_quadrature, num_samples)
            d_mean, d_var = torch.autograd.grad(value.sum(), (m, v))
        closed = ExpectationGrads(value.detach(), d_mean, d_var)
    if weights is None:
        return closed
    return ExpectationGrads(*(t * weights if t.shape == y.shape else t * weights.unsqueeze(-1) for t in closed))


def _closed_form_grads(likelihood: Likelihood, y: Tensor, mean: Tensor, var: Tensor) -> ExpectationGrads | None:
    if isinstance(likelihood, GaussianLikelihood):
        noise = _gaussian_noise(likelihood, mean).detach()
        value = -0.5 * (torch.log(2 * math.pi * noise) + ((y - mean) ** 2 + var) / noise)
        return ExpectationGrads(value, (y - mean) / noise, (-0.5 / noise).expand_as(value))
    if isinstance(likelihood, ExpPoissonLikelihood):
        rate = torch.exp(mean + 0.5 * var)
        return ExpectationGrads(y * mean - rate - torch.lgamma(y + 1), y - rate, -0.5 * rate)
    return None


__all__ = [
    "ExpPoissonLikelihood",
    "ExpectationGrads",
    "LogitBernoulliLikelihood",
    "expected_log_prob",
    "expected_log_prob_and_grads",
    "likelihood_layout",
]
