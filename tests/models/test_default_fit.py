"""The default `gpvi.fit` is right and fast: the recipe each model picks, its convergence, and
`predict_proba`. Timings are benchmarks (`studies/`), not tests; here: what the fits reach."""

from __future__ import annotations

import pytest
import torch
from gpytorch.likelihoods import BernoulliLikelihood, SoftmaxLikelihood
from torch.testing import assert_close

import gpvi
import gpvi.models.base as base
from tests.helpers import DualSVGP as PlainDualSVGP

DT = torch.float64


def _classification(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=DT)
    f = torch.sin(6 * X[:, 0]) + torch.cos(5 * X[:, 1])
    Y = (torch.rand(n, generator=g, dtype=DT) < torch.sigmoid(3 * f)).to(DT).unsqueeze(-1)
    return X, Y


def _regression(n: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=DT)
    return X, torch.sin(6 * X[:, :1]) + 0.1 * torch.randn(n, 1, generator=g, dtype=DT)


@pytest.mark.parametrize("cls", [gpvi.SVGP, gpvi.DualSVGP])
def test_each_model_picks_the_recipe_for_its_likelihood_and_size(cls, monkeypatch):
    X, Y = _regression()
    assert cls(X, Y, num_inducing=10).default_recipe == "collapsed"
    labels = (Y > 0).to(DT)
    assert cls(X, labels, likelihood=BernoulliLikelihood(), num_inducing=10).default_recipe == "cvi-em"
    monkeypatch.setattr(base, "FULL_BATCH_MAX_SIZE", 100 * 10 - 1)  # N·M beyond one pass: minibatches
    minibatch = "cvi" if cls is gpvi.DualSVGP else "ngd"
    assert cls(X, Y, num_inducing=10).default_recipe == minibatch
    assert cls(X, labels, likelihood=BernoulliLikelihood(), num_inducing=10).default_recipe == minibatch


@pytest.mark.parametrize("cls", [gpvi.SVGP, gpvi.DualSVGP])
def test_the_default_fit_of_a_classifier_converges_past_a_long_natural_gradient_run(cls):
    X, Y = _classification()
    default = cls(X, Y, likelihood=BernoulliLikelihood(), num_inducing=32)
    result = gpvi.fit(default)
    assert result.stop_reason == "converged" and result.num_steps < 60, result
    long = cls(X, Y, likelihood=BernoulliLikelihood(), num_inducing=32)
    gpvi.fit(long, "ngd", max_steps=1000, early_stopping=False, learn_inducing=False)
    with torch.no_grad():
        ours, theirs = float(default.elbo().elbo), float(long.elbo().elbo)
    assert ours > theirs - 1e-3 * abs(theirs), (ours, theirs)


def test_the_held_site_m_step_is_the_collapsed_bound_for_a_gaussian_likelihood():
    """cvi-em's M-step objective (q rebuilt at θ from per-datum sites) is exact for Gaussian data."""
    X, Y = _regression(60)
    model = PlainDualSVGP(X, Y, outcome_transform=None, num_inducing=12, learn_inducing=False)
    model.train()
    model.full_data_step(1.0)  # exact per-datum sites α = y/σ², β = 1/σ² (Gaussian)
    with torch.no_grad():
        model.model.covar_module.base_kernel.lengthscale = model.model.covar_module.base_kernel.lengthscale * 1.7
        model.model.covar_module.outputscale = 2.5
    with model.strategy.holding(model.point_sites, write=False):
        held = model.elbo().elbo
    assert_close(held, model.collapsed_elbo() + model.log_prior(), rtol=1e-9, atol=0)
    with model.strategy.holding(model.point_sites):  # leaving writes the u-space sites at this θ
        pass
    assert_close(model.elbo().elbo, held, rtol=1e-9, atol=0)


def test_an_ep_like_m_step_by_lbfgs_is_refused_for_a_sparse_model():
    X, Y = _classification(60)
    model = gpvi.DualSVGP(X, Y, likelihood=BernoulliLikelihood(), num_inducing=10)
    with pytest.raises(ValueError, match="full_gp=True"):
        gpvi.fit(model, "cvi-em", objective="ep")
    full = gpvi.DualSVGP(X, Y, likelihood=BernoulliLikelihood(), full_gp=True)
    result = gpvi.fit(full, "cvi-em", objective="ep", max_steps=5)
    assert result.objective_name == "ep" and result.num_steps >= 1


def test_predict_proba_is_the_likelihood_averaged_probability_in_botorchs_layout():
    X, Y = _classification(80)
    model = gpvi.SVGP(X, Y, likelihood=BernoulliLikelihood(), num_inducing=10)
    gpvi.fit(model, max_steps=5)
    probs = model.predict_proba(X[:7])
    assert probs.shape == (7, 1)
    post = model.posterior(X[:7])
    expected = torch.distributions.Normal(0.0, 1.0).cdf(post.mean / (1 + post.variance).sqrt())  # probit
    assert_close(probs, expected)
    assert model.predict_proba(X[:7].unsqueeze(0)).shape == (1, 7, 1)
    labels = (X[:, :1] * 3).floor()
    softmax = gpvi.SVGP(X, labels, likelihood=SoftmaxLikelihood(num_classes=3, mixing_weights=False), num_inducing=8)
    p = softmax.predict_proba(X[:5])
    assert p.shape == (5, 3) and torch.allclose(p.sum(-1), torch.ones(5, dtype=DT))
    # n equal to the number of classes: each row is still its own point's (gpytorch's likelihood call
    # reads a 3 x 3 input as transposed), and the draws are fixed: the same numbers point by point
    together = softmax.predict_proba(X[:3])
    alone = torch.cat([softmax.predict_proba(X[i : i + 1]) for i in range(3)])
    assert_close(together, alone)
    assert_close(softmax.predict_proba(X[:5])[:3], together)
    with pytest.raises(TypeError, match="classifier"):
        gpvi.SVGP(*_regression(), num_inducing=5).predict_proba(X[:3])
