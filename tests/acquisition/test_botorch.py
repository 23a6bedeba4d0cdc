"""The BoTorch acquisition classes: the plain functions' numbers, gradients, and optimize_acqf over a box."""

import pytest
import torch
from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
from botorch.optim import optimize_acqf
from torch.testing import assert_close

from gpvi.acquisition import (
    BALD,
    PredictiveEntropy,
    PredictiveVariance,
    bald,
    make_acquisition,
    predictive_entropy,
    predictive_variance,
)

BOUNDS = torch.tensor([[-0.5, 0.2], [0.7, 1.3]], dtype=torch.float64)


@pytest.mark.parametrize("name", ["single_task_gp", "gaussian_svgp"])
def test_predictive_variance_class_is_the_function(name, request, pool):
    model = request.getfixturevalue(name)
    assert_close(PredictiveVariance(model)(pool.unsqueeze(-2)).detach(), predictive_variance(model, pool))


@pytest.mark.parametrize("name", ["bernoulli_svgp", "softmax_dual"])
def test_entropy_and_bald_classes_are_the_functions(name, request, pool):
    model = request.getfixturevalue(name)
    with torch.no_grad():
        entropy, scores = PredictiveEntropy(model)(pool.unsqueeze(-2)), BALD(model)(pool.unsqueeze(-2))
    assert entropy.shape == scores.shape == (pool.shape[0],)
    assert_close(entropy, predictive_entropy(model, pool), rtol=0, atol=1e-12)
    assert_close(scores, bald(model, pool), rtol=0, atol=1e-12)


def _finite_difference(acqf, x, h=1e-6):
    grads = []
    for i in range(x.shape[-1]):
        step = torch.zeros_like(x)
        step[..., i] = h
        with torch.no_grad():
            grads.append((acqf(x + step) - acqf(x - step)) / (2 * h))
    return torch.stack(grads, -1)


@pytest.mark.parametrize(
    "name, cls",
    [
        ("single_task_gp", PredictiveVariance),
        ("gaussian_svgp", PredictiveVariance),
        ("bernoulli_svgp", PredictiveEntropy),
        ("bernoulli_svgp", BALD),
        ("softmax_dual", BALD),
    ],
)
def test_gradients_match_finite_differences(name, cls, request, pool):
    acqf = cls(request.getfixturevalue(name))
    x = pool[:4].unsqueeze(-2).clone().requires_grad_(True)  # 4 x 1 x 2
    (grad,) = torch.autograd.grad(acqf(x).sum(), x)
    fd = _finite_difference(acqf, x.detach())
    assert_close(grad[:, 0], fd, rtol=1e-5, atol=1e-7)
    assert grad.abs().max() > 1e-4  # a real gradient, not zeros


@pytest.mark.parametrize(
    "name, acquisition",
    [
        ("single_task_gp", "variance"),
        ("bernoulli_svgp", "entropy"),
        ("bernoulli_svgp", "bald"),
        ("softmax_dual", "bald"),
    ],
)
def test_optimize_acqf_returns_a_point_in_the_box(name, acquisition, request):
    acqf = make_acquisition(acquisition, request.getfixturevalue(name))
    x, value = optimize_acqf(
        acqf, bounds=BOUNDS, q=1, num_restarts=2, raw_samples=32, options={"maxiter": 25, "seed": 0}
    )
    assert x.shape == (1, 2)
    assert ((x >= BOUNDS[0]) & (x <= BOUNDS[1])).all()
    grid = BOUNDS[0] + (BOUNDS[1] - BOUNDS[0]) * torch.rand(64, 1, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert value >= acqf(grid).max() - 1e-6 * (1 + value.abs())  # at least as good as random points


def test_make_acquisition_maps_names_to_classes(single_task_gp, bernoulli_svgp, pool):
    assert isinstance(make_acquisition("variance", single_task_gp), PredictiveVariance)
    assert isinstance(make_acquisition("entropy", bernoulli_svgp), PredictiveEntropy)
    assert isinstance(make_acquisition("bald", bernoulli_svgp), BALD)
    nipv = make_acquisition("nipv", single_task_gp, reference=pool[:7])
    assert isinstance(nipv, qNegIntegratedPosteriorVariance)
    assert torch.equal(nipv.mc_points, pool[:7])


def test_make_acquisition_refuses_what_it_cannot_build(single_task_gp, bernoulli_svgp, pool):
    with pytest.raises(ValueError, match="'variance', 'entropy', 'bald', 'nipv'"):
        make_acquisition("ei", single_task_gp)
    with pytest.raises(ValueError, match="`reference`"):
        make_acquisition("nipv", single_task_gp)
    with pytest.raises(TypeError, match="SingleTaskGP"):
        make_acquisition("bald", single_task_gp)
    with pytest.raises(TypeError, match="Gaussian likelihood"):
        make_acquisition("nipv", bernoulli_svgp, reference=pool)
    with pytest.raises(TypeError, match="callable"):
        make_acquisition(lambda model, X: X[:, 0], single_task_gp)
