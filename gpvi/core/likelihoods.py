"""Expected log-likelihoods E_q[log p(y | f)] for q(f) = N(m, v), their derivatives in m and v, and log predictives.

Every gpvi objective (ELBO, predictive log likelihood, EP-like estimate) and every site update (CVI /
dual / memory) reads the likelihood through the functions here:

    expected_log_prob(likelihood, y, mean, var, weights=None)              -> E_n            (*b, N)
    expected_log_prob_and_grads(likelihood, y, mean, var, weights=None)    -> E_n, ∂E_n/∂m_n, ∂E_n/∂v_n
    log_predictive_density(likelihood, y, mean, var, power=1)              -> log Z_n        (*b, N)

    E_n(m_n, v_n) = w_n ∫ log p(y_n | f) N(f; m_n, v_n) df,     log Z_n = log ∫ p(y_n | f)^a N(f; m_n, v_n) df

Per-datum weights w_n (tempering, coreset weights, memory weights) enter here and nowhere else.

Closed forms:
- `GaussianLikelihood` (noise σ²): E = −½ log 2πσ² − ((y − m)² + v) / 2σ², ∂/∂m = (y − m)/σ²,
  ∂/∂v = −1/(2σ²); log Z = ½(1 − a) log 2πσ² − ½ log a + log N(y; m, v + σ²/a).
- `ExpPoissonLikelihood` (log-rate f): E = y m − exp(m + v/2) − log y!, ∂/∂m = y − exp(m + v/2),
  ∂/∂v = −½ exp(m + v/2).
- `BernoulliLikelihood` (gpytorch's probit link, p(y|f) = Φ((2y−1) f)): log Z = log Φ((2y−1) m / √(1 + v))
  for a = 1; E has no closed form.
- `SoftmaxLikelihood` (one independent latent per class; mean, var are (*b, N, C)): Monte Carlo with
  ``num_samples`` fixed standard-normal draws from a seeded generator (common random numbers), so
  E and log Z are smooth deterministic functions of (m, v), with derivatives exact for that estimator.

Every other one-dimensional likelihood (probit E, `LogitBernoulliLikelihood`, gpytorch's softplus
`PoissonLikelihood`, `StudentTLikelihood`, `LaplaceLikelihood`, any `_OneDimensionalLikelihood`) is
integrated numerically by `gpvi.core.quadrature` (its docstring: the rules, the Gauss–Hermite tiers,
the graded composite Gauss–Legendre rule, their cost, derivatives and accuracy), with one of two
rules (``num_quadrature``): K-node Gauss–Hermite for ``num_quadrature=K``, or the adaptive rule for
``num_quadrature=None`` (the default). The adaptive rule reads each likelihood's foci (c_j, ℓ_j),
named here: points in f where log p(y|f) (for E) or p(y|f)^a (for log Z) changes on a scale ℓ_j, the
distance from the real axis to its nearest complex singularity or a peak's width, or a kink. For E:
probit f = 0, ℓ = 2.8 (Φ's nearest complex zero); logit and softplus-Poisson f = 0, ℓ = π (singular
at ±iπ); Student-t f = y, ℓ = σ√ν (σ = √noise); Laplace f = y, a kink. For log Z: Student-t and
Laplace f = y with ℓ = σ (the peak), and the mode of N(f; y, σ²/a) N(f; m, v) with its width (where a
Gaussian-like likelihood's posterior mass lies); softplus-Poisson also its mode softplus⁻¹(y),
ℓ = 1; ExpPoisson its mode log y, ℓ = 1/√y. Other one-dimensional likelihoods: f = 0 and f = y,
ℓ = 1 (a link's bend, a location family's peak). An element takes K-node Gauss–Hermite with K from
20 to 128 by its smallest ratio ℓ_j/√v (`gpvi.core.quadrature.HERMITE_TIERS`), or the composite rule
below ratio 1.1 or across a kink (probit: v < 0.39 takes 20 nodes, v < 1.16 32, v < 6.5 128; logit
v < 1.46 32; Student-t σ²=0.01, ν=4 (ℓ = 0.2): v < 0.033 uses Gauss–Hermite).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from gpytorch.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    LaplaceLikelihood,
    Likelihood,
    PoissonLikelihood,
    SoftmaxLikelihood,
    StudentTLikelihood,
    _OneDimensionalLikelihood,
)
from gpytorch.likelihoods.gaussian_likelihood import _GaussianLikelihoodBase
from torch import Tensor
from torch.distributions import Bernoulli, Poisson

from gpvi.core.quadrature import Integrand, integrate

#: ``num_quadrature`` default: None, the adaptive rule of the module docstring; an int K is K-node Gauss–Hermite.
DEFAULT_QUADRATURE: int | None = None
DEFAULT_MC_SAMPLES = 256


class ExpectationGrads(NamedTuple):
    """Per-datum expected log-likelihood and its derivatives, all shaped like ``mean`` (*b, N[, C])."""

    value: Tensor
    d_mean: Tensor
    d_var: Tensor


class LogitBernoulliLikelihood(_OneDimensionalLikelihood):
    """Bernoulli likelihood with a logit link: p(y = 1 | f) = σ(f), labels y in {0, 1}."""

    def forward(self, function_samples: Tensor, *args: Any, **kwargs: Any) -> Bernoulli:
        """p(y | f) = Bernoulli(σ(f)) at the given values of f."""
        return Bernoulli(logits=function_samples)


class ExpPoissonLikelihood(_OneDimensionalLikelihood):
    """Poisson likelihood with the canonical log link: y ~ Poisson(exp(f)).

    gpytorch's `PoissonLikelihood` uses a softplus link instead (integrated by quadrature here).
    """

    def forward(self, function_samples: Tensor, *args: Any, **kwargs: Any) -> Poisson:
        """p(y | f) = Poisson(exp(f)) at the given values of f."""
        return Poisson(rate=function_samples.exp())


def check_num_quadrature(num_quadrature: object) -> None:
    """Refuse a ``num_quadrature`` that is neither None (the adaptive rule) nor a positive int."""
    if num_quadrature is not None and (
        not isinstance(num_quadrature, int) or isinstance(num_quadrature, bool) or num_quadrature < 1
    ):
        raise ValueError(
            f"`num_quadrature` must be None (adaptive, accurate for any q) or a positive int "
            f"(Gauss–Hermite nodes), got {num_quadrature!r}."
        )


# -- integrands ----------------------------------------------------------------------------------------
def _integrand(likelihood: Likelihood, power: float | None) -> Integrand:
    """The numerical integrand of a one-dimensional likelihood: for E[log p] (``power`` None) or log E[p^a]."""
    link = lambda y, m, v: [(0.0, math.pi, False)]  # logistic / softplus links: singular at f = ±iπ
    if isinstance(likelihood, BernoulliLikelihood):
        # log Φ((2y−1) f) with log_ndtr, finite far in the tails; Φ's complex zeros lie ≥ 2.8 from R
        probit = lambda y, m, v: [(0.0, 2.8, False)]
        return Integrand(lambda y, f: torch.special.log_ndtr((2 * y - 1) * f), probit)
    if isinstance(likelihood, LogitBernoulliLikelihood):
        # log σ((2y−1) f) = −softplus(−(2y−1) f)
        return Integrand(lambda y, f: -torch.nn.functional.softplus(-(2 * y - 1) * f), link)
    log_prob = lambda y, f: likelihood.forward(f).log_prob(y)
    if isinstance(likelihood, ExpPoissonLikelihood):
        # p(y|f) peaks at f = log y with width 1/√y (log p itself is entire: E has a closed form)
        def exp_poisson_foci(y, m, v):
            count = y.clamp_min(1.0)
            return [(count.log(), count.rsqrt(), False)]

        return Integrand(lambda y, f: y * f - f.exp() - torch.lgamma(y + 1), exp_poisson_foci)
    if isinstance(likelihood, PoissonLikelihood):
        # softplus link: singular at f = ±iπ; p(y|f) peaks at softplus⁻¹(y) with width ≥ 1
        def softplus_poisson_foci(y, m, v):
            if power is None:
                return link(y, m, v)
            count = y.clamp_min(1.0)
            return [(0.0, math.pi, False), (count + torch.log(-torch.expm1(-count)), 1.0, False)]

        return Integrand(log_prob, softplus_poisson_foci)
    if isinstance(likelihood, (StudentTLikelihood, LaplaceLikelihood)):
        # location families at f = y. log p: Student-t's is singular at y ± iσ√ν, Laplace's has a kink.
        # p^a: a peak of width σ at y, and where it meets q, the mode of N(f; y, σ²/a) N(f; m, v)
        # (the posterior mass of a Gaussian-like likelihood lies there, between m and y)
        kink = isinstance(likelihood, LaplaceLikelihood)

        def location_foci(y, m, v):
            scale = likelihood.noise.detach().sqrt()
            if power is None:
                width = scale if kink else scale * likelihood.deg_free.detach().sqrt()
                return [(y, width, kink)]
            s2 = scale**2 / power
            mode, mode_width = (y * v + m * s2) / (v + s2), (v * s2 / (v + s2)).sqrt()
            return [(y, scale, kink), (mode, mode_width, False)]

        return Integrand(log_prob, location_foci)
    return Integrand(log_prob, lambda y, m, v: [(0.0, 1.0, False), (y, 1.0, False)])


# -- the public functions ------------------------------------------------------------------------------
def _gaussian_noise(likelihood: _GaussianLikelihoodBase, like: Tensor) -> Tensor:
    noise = likelihood.noise
    # noise has shape (*batch, 1) for a homoskedastic likelihood: broadcast against (*b, N).
    return noise.to(like)


def _check_shapes(y: Tensor, mean: Tensor, var: Tensor, weights: Tensor | None) -> None:
    if mean.shape != var.shape:
        raise ValueError(f"`mean` {tuple(mean.shape)} and `var` {tuple(var.shape)} must have one shape.")
    if weights is not None and torch.broadcast_shapes(weights.shape, y.shape) != y.shape:
        raise ValueError(f"`weights` {tuple(weights.shape)} must broadcast to `y` {tuple(y.shape)}.")


def _check_quadrature(num_quadrature: int | None) -> None:
    if num_quadrature is not None and (
        not isinstance(num_quadrature, int) or isinstance(num_quadrature, bool) or num_quadrature < 1
    ):
        raise ValueError(f"`num_quadrature` must be None (adaptive) or a positive int, got {num_quadrature!r}.")


def _is_gaussian(likelihood: Likelihood) -> bool:
    return isinstance(likelihood, GaussianLikelihood) or type(likelihood) is _GaussianLikelihoodBase


def expected_log_prob(
    likelihood: Likelihood,
    y: Tensor,
    mean: Tensor,
    var: Tensor,
    *,
    weights: Tensor | None = None,
    num_quadrature: int | None = DEFAULT_QUADRATURE,
    num_samples: int = DEFAULT_MC_SAMPLES,
) -> Tensor:
    """Per-datum E_{N(f; m, v)}[log p(y | f)] times the optional weights.

    Args:
        likelihood: A gpytorch likelihood (see the module docstring for the supported ones).
        y: Targets (*b, N); class labels for `SoftmaxLikelihood`.
        mean, var: Marginals of q(f), (*b, N), or (*b, N, C) for `SoftmaxLikelihood`.
        weights: Optional per-datum weights broadcastable to (*b, N).
        num_quadrature: None for the adaptive rule (accurate for any v; module docstring), or K for
            K-node Gauss–Hermite (fast, accurate only while log p is smooth on q's scale).
        num_samples: Monte Carlo draws for `SoftmaxLikelihood`.

    Returns:
        (*b, N) expected log-likelihoods; differentiable in mean, var and likelihood parameters.
        Cost O(N) for the closed forms, 20–128 likelihood evaluations per element in a Gauss–Hermite
        tier and 184–288 per wide one for the adaptive rule, K per element for ``num_quadrature=K``.
    """
    _check_shapes(y, mean, var, weights)
    _check_quadrature(num_quadrature)
    value = _expected_log_prob(likelihood, y, mean, var, num_quadrature, num_samples)
    return value if weights is None else value * weights


def _expected_log_prob(
    likelihood: Likelihood, y: Tensor, mean: Tensor, var: Tensor, num_quadrature: int | None, num_samples: int
) -> Tensor:
    if _is_gaussian(likelihood):
        noise = _gaussian_noise(likelihood, mean)
        return -0.5 * (torch.log(2 * math.pi * noise) + ((y - mean) ** 2 + var) / noise)
    if isinstance(likelihood, ExpPoissonLikelihood):
        return y * mean - torch.exp(mean + 0.5 * var) - torch.lgamma(y + 1)
    if isinstance(likelihood, SoftmaxLikelihood):
        return _softmax_log_probs(likelihood, y, mean, var, num_samples).mean(-1)
    if isinstance(likelihood, _OneDimensionalLikelihood):
        return integrate(_integrand(likelihood, None), y, mean, var, num_quadrature)
    raise TypeError(
        f"No expected log-likelihood for {type(likelihood).__name__}: use a gpytorch "
        "_OneDimensionalLikelihood, GaussianLikelihood or SoftmaxLikelihood."
    )


def _softmax_logits(likelihood: SoftmaxLikelihood, mean: Tensor, var: Tensor, num: int) -> Tensor:
    """The logits W f_s at fixed draws f_s = m + √v ε_s, ε (S, C) from a generator seeded 0; (*b, N, S, K)."""
    if mean.dim() < 2:
        raise ValueError(f"SoftmaxLikelihood needs `mean` of shape (*b, N, C), got {tuple(mean.shape)}.")
    gen = torch.Generator(device=mean.device).manual_seed(0)
    eps = torch.randn(num, mean.shape[-1], generator=gen, dtype=mean.dtype, device=mean.device)
    f = mean.unsqueeze(-2) + var.clamp_min(0).sqrt().unsqueeze(-2) * eps  # (*b, N, S, C)
    if likelihood.mixing_weights is not None:
        f = f @ likelihood.mixing_weights.t().to(f)
    return f


def softmax_probabilities(
    likelihood: SoftmaxLikelihood, mean: Tensor, var: Tensor, num_samples: int = DEFAULT_MC_SAMPLES
) -> Tensor:
    """Class probabilities E_q[softmax(W f)] from the per-class marginals (mean, var (*b, N, C)): (*b, N, K).

    The mean of softmax(W f_s) over the same fixed draws as `expected_log_prob` (deterministic; the
    global random state is untouched). Unlike gpytorch's `SoftmaxLikelihood.__call__`, whose "legacy
    mode" transposes its input whenever N equals the number of latents, any N is read as data.
    Cost O(N S C K).
    """
    return torch.softmax(_softmax_logits(likelihood, mean, var, num_samples), dim=-1).mean(-2)


def _softmax_log_probs(likelihood: SoftmaxLikelihood, y: Tensor, mean: Tensor, var: Tensor, num: int) -> Tensor:
    """log softmax(W f_s)_y at the fixed draws of `_softmax_logits`; (*b, N, S)."""
    log_p = torch.log_softmax(_softmax_logits(likelihood, mean, var, num), dim=-1)
    labels = y.long().unsqueeze(-1).unsqueeze(-1).expand(*log_p.shape[:-1], 1)
    return log_p.gather(-1, labels).squeeze(-1)


def log_predictive_density(
    likelihood: Likelihood,
    y: Tensor,
    mean: Tensor,
    var: Tensor,
    *,
    power: float = 1.0,
    num_quadrature: int | None = DEFAULT_QUADRATURE,
    num_samples: int = DEFAULT_MC_SAMPLES,
) -> Tensor:
    """Per-datum log ∫ p(y | f)^a N(f; m, v) df: the log predictive density (a = 1) or EP's tilted normaliser.

    Closed forms for `GaussianLikelihood` (any a) and the probit `BernoulliLikelihood` (a = 1); for
    `SoftmaxLikelihood` log (1/S) Σ_s p(y | f_s)^a over the fixed draws of `expected_log_prob`; for
    other one-dimensional likelihoods the rule ``num_quadrature`` names (module docstring), in log
    space: log Σ_i exp(a log p(y | f_i) + log w_i), so tiny densities stay finite.

    Args:
        likelihood: A gpytorch likelihood.
        y: Targets (*b, N) (labels for softmax).
        mean, var: Marginals of q(f), (*b, N) ((*b, N, C) for softmax).
        power: a > 0.
        num_quadrature, num_samples: As for `expected_log_prob`.

    Returns:
        (*b, N), differentiable in mean, var and the likelihood's parameters.
    """
    _check_shapes(y, mean, var, None)
    _check_quadrature(num_quadrature)
    if not power > 0:
        raise ValueError(f"`power` must be positive, got {power!r}.")
    if _is_gaussian(likelihood):
        noise = _gaussian_noise(likelihood, mean)
        total = var + noise / power
        log_normal = -0.5 * (torch.log(2 * math.pi * total) + (y - mean) ** 2 / total)
        return 0.5 * (1 - power) * torch.log(2 * math.pi * noise) - 0.5 * math.log(power) + log_normal
    if isinstance(likelihood, BernoulliLikelihood) and power == 1.0:
        return torch.special.log_ndtr((2 * y - 1) * mean / torch.sqrt(1 + var))
    if isinstance(likelihood, SoftmaxLikelihood):
        log_p = power * _softmax_log_probs(likelihood, y, mean, var, num_samples)
        return torch.logsumexp(log_p, -1) - math.log(num_samples)
    if isinstance(likelihood, _OneDimensionalLikelihood):
        return integrate(_integrand(likelihood, power), y, mean, var, num_quadrature, power)
    raise TypeError(
        f"No log predictive density for {type(likelihood).__name__}: use a gpytorch "
        "_OneDimensionalLikelihood, GaussianLikelihood or SoftmaxLikelihood."
    )


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
    num_quadrature: int | None = DEFAULT_QUADRATURE,
    num_samples: int = DEFAULT_MC_SAMPLES,
) -> ExpectationGrads:
    """E_n and its derivatives g_n = ∂E_n/∂m_n and h_n = ∂E_n/∂v_n (detached values).

    These are what CVI / dual updates need: the site parameters are α_n = g_n − 2 h_n m_n and
    β_n = −2 h_n (see `gpvi.core.sites.sites_from_grads`). Same arguments as `expected_log_prob`;
    the derivatives are the chosen rule applied to the derivative integrands (module docstring).
    """
    _check_shapes(y, mean, var, weights)
    _check_quadrature(num_quadrature)
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
    "DEFAULT_QUADRATURE",
    "ExpPoissonLikelihood",
    "ExpectationGrads",
    "LogitBernoulliLikelihood",
    "check_num_quadrature",
    "expected_log_prob",
    "expected_log_prob_and_grads",
    "likelihood_layout",
    "softmax_probabilities",
    "log_predictive_density",
]
