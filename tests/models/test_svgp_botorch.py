"""SVGP as a BoTorch model: posteriors, shapes, transforms, acquisitions, fantasies, pathwise paths."""

import pytest
import torch
from botorch.acquisition import LogExpectedImprovement, qKnowledgeGradient, qLogExpectedImprovement
from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
from botorch.acquisition.thompson_sampling import PathwiseThompsonSampling
from botorch.fit import fit_gpytorch_mll
from botorch.models.transforms import Normalize, Standardize
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler
from botorch.sampling.pathwise import draw_matheron_paths
from gpytorch.likelihoods import BernoulliLikelihood, SoftmaxLikelihood
from gpytorch.mlls import VariationalELBO
from torch.testing import assert_close

import gpvi
from gpvi import SVGP


def _data(n=40, d=2, m=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=torch.float64)
    Y = torch.stack([torch.sin(5 * X[:, 0] + j) + X[:, 1] for j in range(m)], -1)
    return X, Y + 0.05 * torch.randn(n, m, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def fitted():
    X, Y = _data()
    model = SVGP(X, Y, num_inducing=16)
    gpvi.fit(model, max_steps=150, optimizer="ngd", lr=0.05)
    return model, X, Y


def test_posterior_shapes_and_batch_shape(fitted):
    model, X, _ = fitted
    assert model.num_outputs == 1 and model.batch_shape == torch.Size()
    post = model.posterior(torch.rand(4, 3, 2, dtype=torch.float64))
    assert post.mean.shape == (4, 3, 1) and post.variance.shape == (4, 3, 1)
    assert (post.variance > 0).all()


def test_multi_output_is_independent_outputs():
    X, Y = _data(m=2)
    model = SVGP(X, Y, num_inducing=12)
    gpvi.fit(model, max_steps=30)
    post = model.posterior(torch.rand(5, 3, 2, dtype=torch.float64))
    assert post.mean.shape == (5, 3, 2)
    single = model.posterior(X[:4], output_indices=[1])
    assert single.mean.shape == (4, 1)
    assert_close(single.mean[:, 0], model.posterior(X[:4]).mean[:, 1])


def test_transforms_are_applied_and_undone():
    X, Y = _data()
    Xs, Ys = 10 * X + 3, 100 * Y - 7
    model = SVGP(Xs, Ys, num_inducing=16, input_transform=Normalize(d=2), outcome_transform=Standardize(m=1))
    gpvi.fit(model, max_steps=200, optimizer="ngd", lr=0.05)
    pred = model.posterior(Xs).mean
    assert (pred - Ys).abs().mean() < 0.2 * Ys.std()
    assert model.train_X_model.max() <= 1 + 1e-12 and model.train_X_model.min() >= -1e-12


def test_analytic_and_mc_acquisitions_optimise(fitted):
    model, X, Y = fitted
    bounds = torch.stack([torch.zeros(2), torch.ones(2)]).double()
    for acqf in (LogExpectedImprovement(model, best_f=Y.max()), qLogExpectedImprovement(model, best_f=Y.max())):
        x, _ = optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=2, raw_samples=32)
        assert x.shape == (1, 2)


def test_fantasize_batch_shapes(fitted):
    model, _, _ = fitted
    fant = model.fantasize(torch.rand(3, 2, 2, dtype=torch.float64), SobolQMCNormalSampler(torch.Size([4])))
    assert fant.batch_shape == torch.Size([4, 3])
    assert fant.posterior(torch.rand(3, 5, 2, dtype=torch.float64)).mean.shape == (4, 3, 5, 1)


def test_qnipv_and_qkg_run_and_differentiate(fitted):
    model, _, _ = fitted
    bounds = torch.stack([torch.zeros(2), torch.ones(2)]).double()
    nipv = qNegIntegratedPosteriorVariance(model, mc_points=torch.rand(32, 2, dtype=torch.float64))
    Xq = torch.rand(1, 2, dtype=torch.float64, requires_grad=True)
    nipv(Xq.unsqueeze(0)).sum().backward()
    assert Xq.grad is not None and Xq.grad.abs().sum() > 0
    for acqf in (nipv, qKnowledgeGradient(model, num_fantasies=4)):
        x, _ = optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=2, raw_samples=8)
        assert torch.isfinite(x).all()


def test_nipv_prefers_unexplored_regions(fitted):
    model, X, _ = fitted
    acqf = qNegIntegratedPosteriorVariance(model, mc_points=torch.rand(64, 2, dtype=torch.float64))
    near_data = acqf(X[:1].unsqueeze(0))
    far = acqf(torch.tensor([[[1.8, 1.8]]], dtype=torch.float64))
    assert near_data > far  # observing at a data point reduces less variance... inside the domain wins


def test_pathwise_paths_match_posterior_even_after_batched_posterior(fitted):
    model, _, _ = fitted
    model.posterior(torch.rand(4, 5, 1, 2, dtype=torch.float64))  # fills caches at a batch shape
    # Away from the data, where the posterior variance is not tiny next to the random-feature
    # error of the prior paths (about 1e-3 of k(x, x) with BoTorch's default 1024 features).
    Xs = 1.2 + 0.8 * torch.rand(6, 2, dtype=torch.float64)
    torch.manual_seed(1)
    paths = draw_matheron_paths(model, torch.Size([4000]))
    values = paths(Xs)
    post = model.posterior(Xs)
    se = (post.variance[:, 0] / 4000).sqrt()
    assert ((values.mean(0) - post.mean[:, 0]).abs() < 5 * se + 1e-3).all()
    ratio = values.var(0) / post.variance[:, 0]
    assert ((ratio > 0.85) & (ratio < 1.15)).all()
    bounds = torch.stack([torch.zeros(2), torch.ones(2)]).double()
    x, _ = optimize_acqf(PathwiseThompsonSampling(model), bounds=bounds, q=1, num_restarts=2, raw_samples=16)
    assert x.shape == (1, 2)


def test_fit_gpytorch_mll_dispatches_to_gpvi_fit():
    X, Y = _data()
    model = SVGP(X, Y, num_inducing=8)
    before = model.elbo().elbo.item()
    # BoTorch's convention: the MLL wraps the inner gpytorch model (`model.model`)
    mll = VariationalELBO(model.likelihood, model.model, num_data=X.shape[0])
    out = fit_gpytorch_mll(mll, optimizer_kwargs={"max_steps": 25, "optimizer": "ngd"})
    assert out is mll
    model.train()
    assert model.elbo().elbo.item() > before + 1.0


def test_bernoulli_classification_posterior():
    X, _ = _data(n=60)
    Y = (X[:, :1] + X[:, 1:] > 1).double()
    model = SVGP(X, Y, likelihood=BernoulliLikelihood(), num_inducing=10)
    result = gpvi.fit(model, max_steps=100, optimizer="ngd", lr=0.05)
    assert result.history[-1]["elbo"] > result.history[0]["elbo"]
    probs = model.posterior(X, observation_noise=True).distribution.probs
    accuracy = ((probs > 0.5).double() == Y[:, 0]).double().mean()
    assert accuracy > 0.85


def test_softmax_multiclass_fit():
    X, _ = _data(n=60)
    Y = (3 * X[:, :1]).floor().clamp(max=2)
    model = SVGP(X, Y, likelihood=SoftmaxLikelihood(num_classes=3, mixing_weights=False), num_inducing=10)
    result = gpvi.fit(model, max_steps=80, optimizer="ngd", lr=0.05)
    assert result.history[-1]["elbo"] > result.history[0]["elbo"]
    probs = model.posterior(X, observation_noise=True).distribution.probs
    assert probs.shape[-1] == 3
    assert (probs.argmax(-1).double() == Y[:, 0]).double().mean() > 0.8
