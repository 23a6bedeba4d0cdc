"""Expectations over the latent marginals q(f(x)) of a classifier: the numbers behind the scores.

Every score of `gpvi.acquisition` is a function of the per-point marginal of the latent process,
q(f(x)) = N(μ(x), σ²(x)) (one latent) or Π_c N(μ_c(x), σ_c²(x)) (C independent latents of a
softmax), read from ``model.posterior(X)``:

    p̄(y | x)     = E_q[p(y | f)]                     (class probabilities)
    E_q H[p(y|f)] = E_q[−Σ_y p(y | f) log p(y | f)]    (expected aleatoric entropy, for BALD)

Bernoulli (one latent): p̄ in closed form for gpytorch's probit, Φ(μ / √(1 + σ²)); any other link and
the expected entropy by quadrature over the 1-D marginal (`bernoulli_expectations`). Softmax: Monte
Carlo over draws f_s = μ + σ ε_s with fixed base samples ε_s ~ N(0, I_C) from a seeded generator,
the same for every point and every call (`softmax_expectations`), so the scores are deterministic
and differentiable in X. The Laplace site of a label (`laplace_site`) lets `select_batch` condition
a model without label conditioning on a Gaussian pseudo-observation.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from gpytorch.likelihoods import BernoulliLikelihood, Likelihood, SoftmaxLikelihood
from gpytorch.likelihoods.gaussian_likelihood import _GaussianLikelihoodBase
from torch import Tensor
from torch.distributions import Bernoulli

#: Draws of f per point for softmax class probabilities (the same count as gpvi's ``predict_proba``).
SOFTMAX_SAMPLES = 512
#: Seed of the fixed softmax base samples ε_s (a private generator: the global RNG is untouched).
SOFTMAX_SEED = 0
#: Gauss–Hermite nodes of the Bernoulli quadrature while σ ≤ `WIDE_STD`.
HERMITE_NODES = 64
#: σ above which the Bernoulli quadrature switches to fixed Gauss–Legendre panels in f.
WIDE_STD = 2.0
#: Half-width B of the f-interval of the wide rule; outside it p(y | f) is taken as constant.
LATENT_RANGE = 40.0
#: Panels and nodes per panel of the wide rule's Gauss–Legendre grid on [−B, B].
LEGENDRE_PANELS, LEGENDRE_NODES = 32, 8
#: Smallest negative Hessian of a Laplace site (its noise is at most 1 / this).
MIN_CURVATURE = 1e-12

Kind = Literal["bernoulli", "softmax"]


def classifier_kind(model: object, what: str) -> Kind:
    """The kind of likelihood at ``model.likelihood``: "bernoulli" or "softmax".

    Raises a `TypeError` naming the model type otherwise (``what`` names the caller in the message)."""
    likelihood = getattr(model, "likelihood", None)
    name = type(model).__name__
    if isinstance(likelihood, _GaussianLikelihoodBase):
        raise TypeError(
            f"{what} needs a classifier (a Bernoulli or Softmax likelihood); {name} has a "
            f"{type(likelihood).__name__}: use 'variance' or 'nipv' for a regression model."
        )
    if isinstance(likelihood, SoftmaxLikelihood):
        return "softmax"
    if isinstance(likelihood, Likelihood):
        try:
            probe = likelihood.forward(torch.zeros(1, dtype=torch.float64))
        except Exception:  # noqa: BLE001  (a likelihood that needs more than f: not a classifier)
            probe = None
        if isinstance(probe, Bernoulli):
            return "bernoulli"
    raise TypeError(
        f"{what} needs a classifier with a Bernoulli or Softmax gpytorch likelihood at `model.likelihood`; "
        f"{name} has {type(likelihood).__name__ if likelihood is not None else 'none'}."
    )


def is_gaussian_model(model: object) -> bool:
    """Whether ``model.likelihood`` is one of gpytorch's Gaussian likelihoods."""
    return isinstance(getattr(model, "likelihood", None), _GaussianLikelihoodBase)


def latent_marginals(model: object, X: Tensor, kind: Kind) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(f(X)), `(*b) x n x P` each (P = 1 for Bernoulli, the latents of a softmax)."""
    posterior = model.posterior(X)
    mean, var = posterior.mean, posterior.variance
    if kind == "bernoulli" and mean.shape[-1] != 1:
        raise ValueError(
            f"A Bernoulli classifier must have one latent output; {type(model).__name__} has {mean.shape[-1]}."
        )
    return mean, var


def _std(var: Tensor) -> Tensor:
    """σ from a variance that may be a roundoff below zero (gradient 0 there, never NaN)."""
    return var.clamp_min(1e-30).sqrt()


def _probit(likelihood: Likelihood) -> bool:
    """Whether p(y = 1 | f) is gpytorch's probit Φ(f) (a `BernoulliLikelihood` whose ``forward`` is not overridden)."""
    return isinstance(likelihood, BernoulliLikelihood) and type(likelihood).forward is BernoulliLikelihood.forward


def _prob_and_entropy(likelihood: Likelihood, f: Tensor) -> tuple[Tensor, Tensor]:
    """p(y = 1 | f) and the entropy H[p(y | f)] at values f (probit: through log Φ, accurate in the tails)."""
    if _probit(likelihood):
        log_p, log_q = torch.special.log_ndtr(f), torch.special.log_ndtr(-f)
        p, q = log_p.exp(), log_q.exp()
        return p, -(p * log_p + q * log_q)
    dist = likelihood.forward(f)
    return dist.probs, dist.entropy()


def _hermite(num: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Gauss–Hermite nodes t_k and weights w_k / √π for E_{N(0, 1/2)}: E[g(μ + √2 σ t)] ≈ Σ w_k g(...)."""
    t, w = np.polynomial.hermite.hermgauss(num)
    return torch.as_tensor(t, dtype=like.dtype, device=like.device), torch.as_tensor(
        w / np.sqrt(np.pi), dtype=like.dtype, device=like.device
    )


def _legendre(like: Tensor) -> tuple[Tensor, Tensor]:
    """Composite Gauss–Legendre nodes and weights on [−B, B] (`LEGENDRE_PANELS` x `LEGENDRE_NODES`)."""
    x, w = np.polynomial.legendre.leggauss(LEGENDRE_NODES)
    half = LATENT_RANGE / LEGENDRE_PANELS
    centres = -LATENT_RANGE + half * (2 * np.arange(LEGENDRE_PANELS) + 1)
    nodes = (centres[:, None] + half * x[None, :]).ravel()
    weights = np.tile(half * w, LEGENDRE_PANELS)
    return torch.as_tensor(nodes, dtype=like.dtype, device=like.device), torch.as_tensor(
        weights, dtype=like.dtype, device=like.device
    )


def bernoulli_expectations(likelihood: Likelihood, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """p̄ = E_q[p(y = 1 | f)] and E_q H[p(y | f)] for f ~ N(mean, var), each shaped like ``mean``.

    The rule depends on σ: while σ ≤ `WIDE_STD`, `HERMITE_NODES` Gauss–Hermite nodes at μ + √2 σ t_k;
    beyond, where h(f) = H[p(y|f)] (a bump about one unit wide) is narrow against the Gaussian and
    Gauss–Hermite would step over it, composite Gauss–Legendre panels on f ∈ [−B, B] with weights
    w_k N(f_k; μ, σ²), plus the Gaussian mass beyond ±B times p (or h) at ±B, where the link has
    saturated (B = `LATENT_RANGE`). Both rules agree with adaptive quadrature to ≲ 1e-9 (probit and
    logit, any μ). gpytorch's probit takes p̄ = Φ(μ / √(1 + σ²)) in closed form. Cost: O(n K),
    K = 64 + 256 nodes; differentiable in μ and σ.
    """
    std = _std(var)
    # narrow: Gauss–Hermite at the marginal's own scale
    t, w = _hermite(HERMITE_NODES, mean)
    p, h = _prob_and_entropy(likelihood, mean.unsqueeze(-1) + np.sqrt(2.0) * std.unsqueeze(-1) * t)
    p_narrow, h_narrow = (p * w).sum(-1), (h * w).sum(-1)
    # wide: fixed panels in f weighted by the Gaussian density (σ floored so the unused branch stays finite)
    wide_std = std.clamp_min(WIDE_STD)
    nodes, weights = _legendre(mean)
    z = (nodes - mean.unsqueeze(-1)) / wide_std.unsqueeze(-1)
    density = weights * torch.exp(-0.5 * z**2) / (wide_std.unsqueeze(-1) * np.sqrt(2 * np.pi))
    p_nodes, h_nodes = _prob_and_entropy(likelihood, nodes)
    ends = torch.tensor([-LATENT_RANGE, LATENT_RANGE], dtype=mean.dtype, device=mean.device)
    p_ends, h_ends = _prob_and_entropy(likelihood, ends)
    below = torch.special.ndtr((-LATENT_RANGE - mean) / wide_std)
    above = torch.special.ndtr((mean - LATENT_RANGE) / wide_std)
    p_wide = (density * p_nodes).sum(-1) + below * p_ends[0] + above * p_ends[1]
    h_wide = (density * h_nodes).sum(-1) + below * h_ends[0] + above * h_ends[1]
    wide = std > WIDE_STD
    p_bar = torch.where(wide, p_wide, p_narrow)
    if _probit(likelihood):
        p_bar = torch.special.ndtr(mean / torch.sqrt(1 + var.clamp_min(0)))
    return p_bar, torch.where(wide, h_wide, h_narrow)


def softmax_base_samples(num: int, num_latents: int, like: Tensor) -> Tensor:
    """The fixed base samples ε_s ~ N(0, I), `num x P`, from a generator seeded with `SOFTMAX_SEED`.

    Drawn in float64 on the CPU and then moved, so every device and dtype sees the same draws; a
    smaller ``num`` gives the leading rows of a larger one."""
    generator = torch.Generator().manual_seed(SOFTMAX_SEED)
    eps = torch.randn(max(num, SOFTMAX_SAMPLES), num_latents, generator=generator, dtype=torch.float64)
    return eps[:num].to(like)


def softmax_probabilities(likelihood: SoftmaxLikelihood, mean: Tensor, var: Tensor, eps: Tensor) -> Tensor:
    """softmax(W f_s) at the draws f_s = μ + σ ε_s: `S x (*b) x n x C` (W: the mixing weights, if any)."""
    eps = eps.reshape(eps.shape[0], *([1] * (mean.dim() - 1)), eps.shape[-1])
    f = mean + _std(var) * eps
    weights = likelihood.mixing_weights
    logits = f if weights is None else f @ weights.transpose(-1, -2)
    return torch.softmax(logits, dim=-1)


def entropy(probs: Tensor) -> Tensor:
    """H[p] = −Σ_c p_c log p_c over the last dimension (0 log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def softmax_expectations(
    likelihood: SoftmaxLikelihood, mean: Tensor, var: Tensor, num_samples: int
) -> tuple[Tensor, Tensor]:
    """p̄ (`(*b) x n x C`, the mean over `SOFTMAX_SAMPLES` draws) and E_q H[p(y | f)] (`(*b) x n`,
    the mean over the first ``num_samples`` of the same draws). Cost O(S n C) per chunk of n points."""
    eps = softmax_base_samples(max(SOFTMAX_SAMPLES, num_samples), mean.shape[-1], mean)
    probs = softmax_probabilities(likelihood, mean, var, eps)
    return probs[:SOFTMAX_SAMPLES].mean(0), entropy(probs[:num_samples]).mean(0)


def class_probs_from_marginals(likelihood: Likelihood, kind: Kind, mean: Tensor, var: Tensor) -> Tensor:
    """p̄(y | x), `(*b) x n x C` (Bernoulli: the columns [1 − p̄, p̄]), from the latent marginals."""
    if kind == "bernoulli":
        p, _ = bernoulli_expectations(likelihood, mean[..., 0], var[..., 0])
        return torch.stack([1 - p, p], dim=-1)
    return softmax_expectations(likelihood, mean, var, 1)[0]


def expected_entropy(likelihood: Likelihood, kind: Kind, mean: Tensor, var: Tensor, num_samples: int) -> Tensor:
    """E_q H[p(y | f)], `(*b) x n`: quadrature (Bernoulli) or ``num_samples`` fixed draws (softmax)."""
    if kind == "bernoulli":
        return bernoulli_expectations(likelihood, mean[..., 0], var[..., 0])[1]
    return softmax_expectations(likelihood, mean, var, num_samples)[1]


def laplace_site(likelihood: Likelihood, mean: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
    """The Laplace (second-order) Gaussian site of a Bernoulli label at the latent mean: (target, noise).

    With g = ∂ log p(y | f)/∂f and h = −∂² log p(y | f)/∂f² at f = μ,

        log p(y | f) ≈ log p(y | μ) + g (f − μ) − ½ h (f − μ)² = −½ h (f − (μ + g/h))² + const,

    a Gaussian observation of f with pseudo-target μ + g/h and noise 1/h (h floored at
    `MIN_CURVATURE`). For gpytorch's probit, with s = 2y − 1, z = s μ and r = φ(z)/Φ(z):
    g = s r and h = r (z + r) > 0. Other links are differentiated by autograd. Shapes: ``mean`` and
    ``label`` `n x 1`.
    """
    with torch.enable_grad():
        f = mean.detach().clone().requires_grad_(True)
        if _probit(likelihood):
            log_p = torch.special.log_ndtr((2 * label - 1) * f)
        else:
            log_p = likelihood.forward(f).log_prob(label)
        (g,) = torch.autograd.grad(log_p.sum(), f, create_graph=True)
        (second,) = torch.autograd.grad(g.sum(), f)
    g, h = g.detach(), (-second).clamp_min(MIN_CURVATURE)
    return mean + g / h, 1.0 / h
