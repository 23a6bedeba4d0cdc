"""The shared core: likelihood expectations, Gaussian sites, objectives, kernels and dense linear algebra."""

from gpvi.core.kernels import cross_covariance
from gpvi.core.likelihoods import (
    ExpectationGrads,
    ExpPoissonLikelihood,
    LogitBernoulliLikelihood,
    expected_log_prob,
    expected_log_prob_and_grads,
    likelihood_layout,
    log_predictive_density,
)
from gpvi.core.linalg import NotPSDError, cholesky, gram, gram_and_project
from gpvi.core.objectives import ElboParts, collapsed_elbo, elbo, ep_log_marginal, kl_whitened
from gpvi.core.optim import guarded_lbfgs
from gpvi.core.sites import GaussianSites, PointSites, batch_sites, sites_from_grads

__all__ = [
    "ElboParts",
    "ExpPoissonLikelihood",
    "ExpectationGrads",
    "GaussianSites",
    "LogitBernoulliLikelihood",
    "NotPSDError",
    "PointSites",
    "batch_sites",
    "cholesky",
    "collapsed_elbo",
    "cross_covariance",
    "elbo",
    "ep_log_marginal",
    "expected_log_prob",
    "expected_log_prob_and_grads",
    "gram",
    "gram_and_project",
    "guarded_lbfgs",
    "kl_whitened",
    "likelihood_layout",
    "log_predictive_density",
    "sites_from_grads",
]
