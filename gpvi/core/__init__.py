"""The shared core: likelihood expectations, Gaussian sites, objectives, kernels and dense linear algebra."""

from gpvi.core.kernels import cross_covariance
from gpvi.core.likelihoods import (
    ExpectationGrads,
    ExpPoissonLikelihood,
    LogitBernoulliLikelihood,
    expected_log_prob,
    expected_log_prob_and_grads,
)
from gpvi.core.linalg import NotPSDError, cholesky, gram, gram_and_project
from gpvi.core.objectives import ElboParts, collapsed_elbo, elbo, ep_log_marginal, kl_whitened
from gpvi.core.sites import GaussianSites, sites_from_grads

__all__ = [
    "ElboParts",
    "ExpPoissonLikelihood",
    "ExpectationGrads",
    "GaussianSites",
    "LogitBernoulliLikelihood",
    "NotPSDError",
    "cholesky",
    "collapsed_elbo",
    "cross_covariance",
    "elbo",
    "ep_log_marginal",
    "expected_log_prob",
    "expected_log_prob_and_grads",
    "gram",
    "gram_and_project",
    "kl_whitened",
    "sites_from_grads",
]
