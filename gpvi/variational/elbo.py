"""The ELBO of any posterior strategy, and its natural-gradient (CVI) step, written against the contract.

Hensman, Fusi & Lawrence (2013); Hensman, Matthews & Ghahramani (2015) for the ELBO; Khan & Lin
(2017), Salimbeni, Eleftheriadis & Hensman (2018) and Adam et al. (2021) for the step.

    ELBO = (N / B) Σ_{n ∈ batch} w_n E_{q(f_n)}[log p(y_n | f_n)] − β KL[q ‖ p] + log p(θ)
    PLL  = (N / B) Σ_{n ∈ batch} w_n log E_{q(f_n)}[p(y_n | f_n)] − β KL[q ‖ p] + log p(θ)

    natural-gradient / CVI step of size ρ on a batch of B out of N points:
        (α_n, β_n) = `batch_sites` at the current q(f_n),   W = marginals(X).projection
        target = (N / B) Σ_n (α_n w_n, β_n w_n w_nᵀ),        sites ← (1 − ρ) sites + ρ target

For the whitened SVGP this is the natural-gradient step on q(v); for the dual strategy (sites on
u − E[u]) it is the t-SVGP E-step. With a Gaussian likelihood, all data and ρ = 1 it lands on the
optimal q in one step. Multiple latent outputs are a batch dimension P of the strategy: inputs are
given once, (*b, B, D), and ``num_latents`` = P puts them in the latent layout (*b, 1, B, D).
The predictive log likelihood (PLL; Jankowiak, Pleiss & Gardner 2020, "Parametric Gaussian Process
Regressors", ICML) moves the log outside the expectation; it is not a bound on log p(y), and tends to
give better calibrated predictive variances (gpytorch's `PredictiveLogLikelihood`).

Cost: one `marginals` evaluation (O(B M²) for inducing features) plus, for the step, the projection
and an M×M update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from gpytorch.likelihoods import Likelihood, SoftmaxLikelihood
from torch import Tensor

from gpvi.core.likelihoods import expected_log_prob, likelihood_layout, log_predictive_density
from gpvi.core.objectives import ElboParts, elbo
from gpvi.core.sites import GaussianSites, batch_sites
from gpvi.variational.base import PosteriorStrategy


class PredictiveParts(NamedTuple):
    """The predictive log likelihood and its parts (scalars, or (*b,) for batched models).

    pll = log_predictive − kl_weight · kl + log_prior, log_predictive the data term scaled by N / B.
    """

    pll: Tensor
    log_predictive: Tensor
    kl: Tensor
    log_prior: Tensor


class SiteTarget(NamedTuple):
    """What a natural-gradient step computed: the batch's sites summed onto q's variables (scaled
    by N/B) and the per-datum (α, β) (*b, B) they came from."""

    target: GaussianSites
    alpha: Tensor
    beta: Tensor


def _latent_inputs(X: Tensor, num_latents: int) -> Tensor:
    return X.unsqueeze(-3) if num_latents > 1 else X


def variational_elbo(
    strategy: PosteriorStrategy,
    likelihood: Likelihood,
    X: Tensor,
    y: Tensor,
    *,
    num_data: int,
    num_latents: int = 1,
    kl_weight: float = 1.0,
    weights: Tensor | None = None,
    log_prior: Tensor | float = 0.0,
    index: Tensor | None = None,
    num_quadrature: int | None = None,
) -> ElboParts:
    """The ELBO and its parts on a batch (formula in the module docstring).

    Args:
        strategy: Any `PosteriorStrategy`.
        likelihood: Its likelihood.
        X: (*b, B, D) model-space inputs.
        y: Targets in the likelihood's layout ((*b, B), (*b, P, B) or softmax labels).
        num_data: N; the data term is scaled by N / B.
        num_latents: P, the latent outputs held in the strategy's batch.
        kl_weight: β multiplying the KL.
        weights: Optional per-datum weights of the expected log-likelihoods.
        log_prior: log p(θ), added as is.
        index: Row indices of X in the training data (for strategies that use them).
        num_quadrature: Rule of the expectations: None (adaptive, accurate for any q) or K
            Gauss–Hermite nodes (`gpvi.core.likelihoods`).
    """
    ell, kl = _data_terms_and_kl(
        strategy,
        likelihood,
        X,
        num_latents,
        index,
        lambda mean, var: expected_log_prob(likelihood, y, mean, var, weights=weights, num_quadrature=num_quadrature),
    )
    return elbo(ell, kl, num_data=num_data, kl_weight=kl_weight, log_prior=log_prior)


def _data_terms_and_kl(
    strategy: PosteriorStrategy,
    likelihood: Likelihood,
    X: Tensor,
    num_latents: int,
    index: Tensor | None,
    per_datum: Callable[[Tensor, Tensor], Tensor],
) -> tuple[Tensor, Tensor]:
    """(per-datum terms (*b, B) summed over P outputs, KL (*b,) summed over P) from one factorisation.

    ``per_datum(mean, var)`` reads q(f)'s marginals in the likelihood's layout (`likelihood_layout`).
    """
    with strategy.shared_terms():  # one factorisation for the marginals and the KL
        marg = strategy.marginals(_latent_inputs(X, num_latents), index=index)
        kl = strategy.kl_divergence()
    terms = per_datum(*likelihood_layout(likelihood, marg.mean, marg.var))
    if num_latents > 1 and not isinstance(likelihood, SoftmaxLikelihood):
        terms = terms.sum(-2)
    return terms, kl.sum(-1) if num_latents > 1 else kl


def predictive_log_likelihood(
    strategy: PosteriorStrategy,
    likelihood: Likelihood,
    X: Tensor,
    y: Tensor,
    *,
    num_data: int,
    num_latents: int = 1,
    kl_weight: float = 1.0,
    weights: Tensor | None = None,
    log_prior: Tensor | float = 0.0,
    index: Tensor | None = None,
    num_quadrature: int | None = None,
) -> PredictiveParts:
    """The predictive log likelihood (PLL) and its parts on a batch (formula in the module docstring).

    Same arguments as `variational_elbo`; log E_q[p(y_n | f_n)] is `log_predictive_density` (closed
    form for Gaussian and probit likelihoods, the adaptive quadrature in log space otherwise). With P
    independent latent outputs the per-output terms are summed (q factorises over outputs).
    """

    def weighted_lpd(mean: Tensor, var: Tensor) -> Tensor:
        lpd = log_predictive_density(likelihood, y, mean, var, num_quadrature=num_quadrature)
        return lpd if weights is None else lpd * weights

    lpd, kl = _data_terms_and_kl(strategy, likelihood, X, num_latents, index, weighted_lpd)
    parts = elbo(lpd, kl, num_data=num_data, kl_weight=kl_weight, log_prior=log_prior)  # the same arithmetic
    return PredictiveParts(*parts)


@torch.no_grad()
def site_target(
    strategy: PosteriorStrategy,
    likelihood: Likelihood,
    X: Tensor,
    y: Tensor,
    *,
    num_data: int,
    num_latents: int = 1,
    weights: Tensor | None = None,
    index: Tensor | None = None,
    num_quadrature: int | None = None,
) -> SiteTarget:
    """The batch's sites at the current q, summed onto q's variables and scaled by N / B (no update)."""
    marg = strategy.marginals(_latent_inputs(X, num_latents), index=index)
    alpha, beta = batch_sites(likelihood, y, marg, weights=weights, num_quadrature=num_quadrature)
    target = GaussianSites.from_data(marg.projection, alpha, beta, scale=num_data / X.shape[-2])
    return SiteTarget(target, alpha, beta)


@torch.no_grad()
def natural_gradient_step(
    strategy: PosteriorStrategy,
    likelihood: Likelihood,
    X: Tensor,
    y: Tensor,
    *,
    step: float,
    num_data: int,
    num_latents: int = 1,
    weights: Tensor | None = None,
    index: Tensor | None = None,
    num_quadrature: int | None = None,
) -> SiteTarget:
    """One natural-gradient (CVI) step of size ρ = ``step`` on the batch; returns what it computed."""
    with strategy.shared_terms():  # one factorisation for the marginals, the sites and their update
        computed = site_target(
            strategy,
            likelihood,
            X,
            y,
            num_data=num_data,
            num_latents=num_latents,
            weights=weights,
            index=index,
            num_quadrature=num_quadrature,
        )
        strategy.step_sites(computed.target, step)
    return computed


__all__ = [
    "PredictiveParts",
    "SiteTarget",
    "natural_gradient_step",
    "predictive_log_likelihood",
    "site_target",
    "variational_elbo",
]
