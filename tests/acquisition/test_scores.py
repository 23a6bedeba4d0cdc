"""Known answers for the plain scores: exact posteriors, closed forms, dense quadrature, Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
from botorch.models import SingleTaskGP
from gpytorch.likelihoods import BernoulliLikelihood, SoftmaxLikelihood
from scipy import integrate
from scipy.special import expit
from scipy.stats import norm
from torch.testing import assert_close

import gpvi
from gpvi.acquisition import (
    ACQUISITION_NAMES,
    acquisition_scores,
    bald,
    class_probabilities,
    integrated_variance,
    predictive_entropy,
    predictive_variance,
)
from gpvi.acquisition.marginals import bernoulli_expectations
from gpvi.core.likelihoods import LogitBernoulliLikelihood


def _marginals(model, X):
    with torch.no_grad():
        post = model.posterior(X)
    return post.mean, post.variance


# -- variance ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["single_task_gp", "gaussian_svgp"])
def test_predictive_variance_is_the_posterior_variance_in_output_units(name, request, pool):
    model = request.getfixturevalue(name)
    with torch.no_grad():
        expected = model.posterior(pool).variance[:, 0]
        latent = model.posterior(pool).distribution.covariance_matrix.diagonal()  # output units (untransformed)
    assert_close(predictive_variance(model, pool), expected, rtol=0, atol=1e-12)
    assert_close(predictive_variance(model, pool), latent, rtol=1e-10, atol=0)
    assert expected.max() > 1.0  # output units: Y's scale is 10, so not the standardised variance


def test_predictive_variance_sums_the_latents_of_a_softmax(softmax_dual, pool):
    _, var = _marginals(softmax_dual, pool)
    assert_close(predictive_variance(softmax_dual, pool), var.sum(-1), rtol=0, atol=1e-12)


# -- Bernoulli: probabilities, entropy, BALD ------------------------------------------------------------
def test_bernoulli_probabilities_are_the_probit_closed_form(bernoulli_svgp, pool):
    mean, var = _marginals(bernoulli_svgp, pool)
    p = torch.special.ndtr(mean[:, 0] / torch.sqrt(1 + var[:, 0]))
    probs = class_probabilities(bernoulli_svgp, pool)
    assert probs.shape == (pool.shape[0], 2)
    assert_close(probs, torch.stack([1 - p, p], -1), rtol=0, atol=1e-12)
    assert_close(probs[:, 1:], bernoulli_svgp.predict_proba(pool), rtol=0, atol=0)  # the same numbers


@pytest.mark.parametrize(
    "likelihood, p_of_f",
    [(BernoulliLikelihood(), norm.cdf), (LogitBernoulliLikelihood(), expit)],
    ids=["probit", "logit"],
)
def test_bernoulli_expectations_match_dense_quadrature(likelihood, p_of_f):
    """Both rules (Gauss–Hermite for σ ≤ 2, Gauss–Legendre panels beyond) against Simpson's rule on
    400 001 points over μ ± 14σ."""

    def h(f):
        p = np.clip(p_of_f(f), 1e-300, 1 - 1e-16)
        return -(p * np.log(p) + (1 - p) * np.log1p(-p))

    for std in [0.05, 0.7, 1.9, 2.1, 4.0, 12.0, 60.0]:
        for mu in [-30.0, -2.0, 0.0, 0.8, 6.0]:
            f = np.linspace(mu - 14 * std, mu + 14 * std, 400_001)
            density = norm.pdf(f, mu, std)
            p_ref = integrate.simpson(p_of_f(f) * density, x=f) + norm.sf(14) * p_of_f(f[-1])
            h_ref = integrate.simpson(h(f) * density, x=f)
            p, e = bernoulli_expectations(likelihood, torch.tensor([mu]), torch.tensor([std**2]))
            assert abs(p.item() - p_ref) < 1e-8, (std, mu)
            assert abs(e.item() - h_ref) < 1e-8, (std, mu)


def test_bernoulli_bald_equals_dense_monte_carlo(bernoulli_svgp, pool):
    """BALD by quadrature against 1e5 draws of f per point, within 3 standard errors (delta method)."""
    mean, var = (t[:8, 0] for t in _marginals(bernoulli_svgp, pool))
    scores = bald(bernoulli_svgp, pool[:8])
    f = mean + var.sqrt() * torch.randn(100_000, 8, generator=torch.Generator().manual_seed(1))
    p = torch.special.ndtr(f)
    h = -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))
    p_bar = p.mean(0)
    mc = -(torch.special.xlogy(p_bar, p_bar) + torch.special.xlogy(1 - p_bar, 1 - p_bar)) - h.mean(0)
    influence = torch.log((1 - p_bar) / p_bar) * p - h  # d(BALD_mc) per draw
    se = influence.std(0) / math.sqrt(f.shape[0])
    assert (scores - mc).abs().le(3 * se + 1e-12).all(), (scores - mc) / se
    assert (var.sqrt() > 1.0).any()  # the expectation matters: wide marginals


def test_entropy_bounds_bald_from_above_and_zero_from_below(bernoulli_svgp, pool):
    entropy, scores = predictive_entropy(bernoulli_svgp, pool), bald(bernoulli_svgp, pool)
    assert (scores >= 0).all() and (scores <= entropy).all() and (entropy <= math.log(2) + 1e-12).all()
    assert (scores < entropy - 1e-3).any()  # not the same score: the aleatoric part is subtracted


# -- softmax -----------------------------------------------------------------------------------------
def test_softmax_probabilities_match_dense_monte_carlo(softmax_dual, pool):
    mean, var = _marginals(softmax_dual, pool)
    probs = class_probabilities(softmax_dual, pool)
    assert probs.shape == (pool.shape[0], 3)
    assert_close(probs.sum(-1), torch.ones(pool.shape[0]), rtol=0, atol=1e-12)
    eps = torch.randn(100_000, 1, 3, generator=torch.Generator().manual_seed(2))
    draws = torch.softmax(mean + var.sqrt() * eps, -1)
    se = draws.std(0) / math.sqrt(512)  # the score's own Monte Carlo error dominates
    assert ((probs - draws.mean(0)).abs() <= 4 * se + 1e-6).all()


def test_softmax_entropy_and_bald_are_ordered_and_deterministic(softmax_dual, pool):
    state = torch.get_rng_state()
    entropy, scores = predictive_entropy(softmax_dual, pool), bald(softmax_dual, pool)
    assert torch.equal(torch.get_rng_state(), state)  # seeded privately: the global RNG is untouched
    assert (scores >= 0).all() and (scores <= entropy).all() and (entropy <= math.log(3) + 1e-12).all()
    assert torch.equal(bald(softmax_dual, pool), scores)
    assert torch.equal(class_probabilities(softmax_dual, pool), class_probabilities(softmax_dual, pool))


def test_softmax_bald_equals_its_monte_carlo_definition(softmax_dual, pool):
    """H[p̄] − mean_s H[softmax(f_s)] with 256 draws, against 1e5 draws (3 standard errors of the 256)."""
    mean, var = _marginals(softmax_dual, pool[:6])
    eps = torch.randn(100_000, 1, 3, generator=torch.Generator().manual_seed(3))
    probs = torch.softmax(mean + var.sqrt() * eps, -1)
    h = -torch.special.xlogy(probs, probs).sum(-1)
    p_bar = probs.mean(0)
    reference = -torch.special.xlogy(p_bar, p_bar).sum(-1) - h.mean(0)
    influence = -(probs * p_bar.log()).sum(-1)  # d H[p̄] per draw (the +1 of dH/dp̄ sums to 0)
    se = h.std(0) / math.sqrt(256) + influence.std(0) / math.sqrt(512)
    assert ((bald(softmax_dual, pool[:6]) - reference).abs() <= 3 * se).all()


# -- integrated variance ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["single_task_gp", "gaussian_svgp"])
def test_integrated_variance_equals_botorch_qnipv_fantasies(name, request, pool):
    model = request.getfixturevalue(name)
    reference = torch.rand(17, 2, generator=torch.Generator().manual_seed(4))
    expected = qNegIntegratedPosteriorVariance(model, mc_points=reference)(pool.unsqueeze(-2)).detach()
    scores = integrated_variance(model, pool, reference)
    assert_close(scores, expected, rtol=1e-8, atol=1e-10)
    assert (scores.max() - scores.min()) > 1e-2 * scores.abs().max()  # candidates differ: not a constant


def test_integrated_variance_chunks_and_sums_outputs(regression_data, pool, monkeypatch):
    X, Y = regression_data
    model = SingleTaskGP(X, torch.cat([Y, -0.1 * Y**2], -1)).eval()  # two outputs, two noise levels
    reference = torch.rand(5, 2, generator=torch.Generator().manual_seed(5))
    whole = integrated_variance(model, pool, reference)
    expected = gpvi.acquisition.make_acquisition("nipv", model, reference=reference)(pool.unsqueeze(-2)).detach()
    assert_close(whole, expected, rtol=1e-8, atol=1e-10)
    monkeypatch.setattr("gpvi.acquisition.scores.NIPV_MAX_ENTRIES", 22**2)  # chunks of 16 candidates
    assert_close(integrated_variance(model, pool, reference), whole, rtol=1e-12, atol=0)


# -- dispatch, dtype and errors -----------------------------------------------------------------------
def test_acquisition_scores_dispatches_by_name_and_callable(bernoulli_svgp, single_task_gp, pool):
    reference = pool[:5]
    assert_close(acquisition_scores("variance", single_task_gp, pool), predictive_variance(single_task_gp, pool))
    assert_close(acquisition_scores("entropy", bernoulli_svgp, pool), predictive_entropy(bernoulli_svgp, pool))
    assert_close(acquisition_scores("bald", bernoulli_svgp, pool), bald(bernoulli_svgp, pool))
    assert_close(
        acquisition_scores("nipv", single_task_gp, pool, reference=reference),
        integrated_variance(single_task_gp, pool, reference),
    )
    own = lambda model, X: -X[:, 0]
    assert_close(acquisition_scores(own, single_task_gp, pool), -pool[:, 0])
    with pytest.raises(ValueError, match=r"\(25,\)"):
        acquisition_scores(lambda model, X: X, single_task_gp, pool)


@pytest.mark.filterwarnings("ignore:The model inputs are of type torch.float32")
def test_scores_follow_the_dtype_of_x(regression_data, pool):
    X, Y = regression_data
    model = SingleTaskGP(X.float(), Y.float()).eval()
    assert predictive_variance(model, pool.float()).dtype == torch.float32
    assert integrated_variance(model, pool.float(), pool[:4].float()).dtype == torch.float32


def test_a_gaussian_model_has_no_entropy(single_task_gp, gaussian_svgp, pool):
    with pytest.raises(TypeError, match="SingleTaskGP"):
        predictive_entropy(single_task_gp, pool)
    with pytest.raises(TypeError, match="SVGP"):
        bald(gaussian_svgp, pool)
    with pytest.raises(TypeError, match="SVGP"):
        class_probabilities(gaussian_svgp, pool)


def test_a_classifier_has_no_integrated_variance(bernoulli_svgp, pool):
    with pytest.raises(TypeError, match="Gaussian likelihood"):
        integrated_variance(bernoulli_svgp, pool, pool)


def test_bad_names_and_inputs_are_refused(single_task_gp, pool):
    with pytest.raises(ValueError, match="'variance', 'entropy', 'bald', 'nipv'"):
        acquisition_scores("ucb", single_task_gp, pool)
    assert ACQUISITION_NAMES == ("variance", "entropy", "bald", "nipv")
    with pytest.raises(ValueError, match="`reference`"):
        acquisition_scores("nipv", single_task_gp, pool)
    with pytest.raises(ValueError, match="`X`"):
        predictive_variance(single_task_gp, pool[:, :1])
    with pytest.raises(ValueError, match="`X`"):
        predictive_variance(single_task_gp, pool[0])
    with pytest.raises(ValueError, match="`reference`"):
        integrated_variance(single_task_gp, pool, pool[:, :1])
    with pytest.raises(ValueError, match="`num_samples`"):
        bald(single_task_gp, pool, num_samples=0)


class _Wrapped(torch.nn.Module):
    """Any model: ``posterior`` and ``likelihood`` only (not a gpvi model, so no ``predict_proba``)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.likelihood = inner, inner.likelihood

    def posterior(self, X):
        return self.inner.posterior(X)


def test_any_model_with_a_classification_likelihood_is_scored(bernoulli_svgp, softmax_dual, pool):
    wrapped = _Wrapped(bernoulli_svgp)
    assert_close(class_probabilities(wrapped, pool), class_probabilities(bernoulli_svgp, pool), rtol=0, atol=1e-12)
    assert_close(bald(wrapped, pool), bald(bernoulli_svgp, pool), rtol=0, atol=1e-12)
    assert isinstance(softmax_dual.likelihood, SoftmaxLikelihood)
    assert_close(class_probabilities(_Wrapped(softmax_dual), pool), class_probabilities(softmax_dual, pool))
