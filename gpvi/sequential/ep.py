"""The EP-like marginal-likelihood estimate from sites, as an M-step objective for hyperparameters.

Li, John & Solin (2023), "Improving Hyperparameter Learning under Approximate Inference in Gaussian
Process Models", ICML (the hybrid: CVI E-steps, EP-like M-steps); the sparse power-EP energy of
Bui, Yan & Turner (2017). The energy itself, for whitened q(v) = N(m, S) and per-datum sites
(α_n, β_n), is `gpvi.core.objectives.ep_log_marginal`; this module feeds it from a posterior on
inducing features in two forms:

- sites held fixed (`ep_fixed_sites`): the per-datum sites of the last full-data E-step (a
  `PointSites` store) stay on f_n while θ moves, and q is rebuilt from them at θ,

      q_θ(v) ∝ N(0, I) Π_n exp(α_n a_nᵀv − ½ β_n (a_nᵀv)²),   a_n = L_θ⁻¹ k_θ(Z, x_n),

  so q and the per-datum terms describe the same site approximation at every θ (with Z = X this
  is exactly Li et al.'s full-GP M-step);
- sites at the current q (`ep_current_sites`, minibatches): (α, β) recomputed from q_θ with
  gradients through that computation (the authors' sparse code), q read from the strategy.

With a Gaussian likelihood, Z = X and exact sites both equal the exact log marginal likelihood.
One-dimensional likelihoods with a single latent only. Cost O(B M² + M³) per evaluation.
"""

from __future__ import annotations

from gpytorch.likelihoods import Likelihood
from torch import Tensor

from gpvi.core.linalg import tri_solve
from gpvi.core.objectives import ep_log_marginal
from gpvi.core.sites import PointSites, batch_sites
from gpvi.variational.base import InducingStrategy


def ep_current_sites(
    strategy: InducingStrategy,
    likelihood: Likelihood,
    X: Tensor,
    y: Tensor,
    *,
    num_data: int,
    power: float = 1.0,
    num_quadrature: int | None = None,
) -> Tensor:
    """The EP-like estimate on a batch (X (*b, B, D), y (*b, B)) with sites at the current q (differentiable).

    ``num_quadrature``: the rule of the sites' expectations and of log Ẑ_n (None: adaptive; K: Gauss–Hermite).
    """
    marg = strategy.marginals(X)
    alpha, beta = batch_sites(likelihood, y, marg, differentiable=True, num_quadrature=num_quadrature)
    q_v = strategy.whitened_q(marg.chol_Kuu)
    return _energy(
        strategy, likelihood, X, y, marg.prior_mean, marg.whitened_projection, q_v, alpha, beta, num_data, power,
        proj_mean=marg.centred_mean, num_quadrature=num_quadrature,
    )  # fmt: skip


def ep_fixed_sites(
    strategy: InducingStrategy,
    likelihood: Likelihood,
    sites: PointSites,
    y: Tensor,
    *,
    num_data: int,
    power: float = 1.0,
    num_quadrature: int | None = None,
) -> Tensor:
    """The EP-like estimate with the per-datum ``sites`` (at their inputs, targets y) fixed and q rebuilt at θ.

    ``num_quadrature``: the rule of log Ẑ_n (None: adaptive; K: Gauss–Hermite).
    """
    X = sites.inputs
    A = tri_solve(strategy.chol_Kuu(), strategy.features.Kuf(strategy.model.covar_module, X))
    q_v = sites.summed(A).whitened_posterior()
    alpha, beta = sites.weighted()
    return _energy(
        strategy, likelihood, X, y, strategy.model.mean_module(X), A, q_v, alpha, beta, num_data, power,
        num_quadrature=num_quadrature,
    )  # fmt: skip


def _energy(
    strategy: InducingStrategy,
    likelihood: Likelihood,
    X: Tensor,
    y: Tensor,
    prior_mean: Tensor,
    A: Tensor,
    q_v: tuple[Tensor, Tensor],
    alpha: Tensor,
    beta: Tensor,
    num_data: int,
    power: float,
    proj_mean: Tensor | None = None,
    num_quadrature: int | None = None,
) -> Tensor:
    """`ep_log_marginal` for whitened q(v) = (mean, lower root), A = L⁻¹Kuf (B points); ``proj_mean`` = Aᵀm if known."""
    mean_v, tril_v = q_v
    if proj_mean is None:
        proj_mean = (A.mT @ mean_v.unsqueeze(-1)).squeeze(-1)
    return ep_log_marginal(
        likelihood,
        y,
        prior_mean=prior_mean,
        proj_mean=proj_mean,
        proj_var=(tril_v.mT @ A).pow(2).sum(-2),
        cond_var=strategy.model.covar_module(X, diag=True) - A.pow(2).sum(-2),
        alpha=alpha,
        beta=beta,
        q_mean=mean_v,
        q_scale_tril=tril_v,
        num_data=num_data,
        power=power,
        num_quadrature=num_quadrature,
    )


__all__ = ["ep_current_sites", "ep_fixed_sites"]
