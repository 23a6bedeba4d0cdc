"""Small models shared by the acquisition tests (built once; every tensor float64 explicitly, since
session fixtures are made before the suite's autouse float64 default applies)."""

import warnings

import pytest
import torch
from botorch.models import SingleTaskGP
from gpytorch.likelihoods import BernoulliLikelihood, SoftmaxLikelihood

import gpvi

F64 = torch.float64


def _inputs(n, seed):
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _fit(model, steps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few steps only: MaxStepsWarning is expected
        gpvi.fit(model, max_steps=steps)
    return model.eval()


@pytest.fixture(scope="session")
def regression_data():
    X = _inputs(20, 0)
    Y = 10.0 * torch.sin(6 * X[:, :1]) + X[:, 1:] + 3.0  # scale ≠ 1: the outcome transform matters
    return X, Y


@pytest.fixture(scope="session")
def single_task_gp(regression_data):
    X, Y = regression_data
    model = SingleTaskGP(X, Y)  # Standardize(m=1) by default
    model.covar_module.lengthscale = torch.tensor([[0.3, 0.5]], dtype=F64)
    model.likelihood.noise = 0.02
    return model.eval()


@pytest.fixture(scope="session")
def gaussian_svgp(regression_data):
    X, Y = regression_data
    model = gpvi.SVGP(X, Y, num_inducing=12)  # Standardize by default, q exact for θ below
    model.likelihood.noise = 0.02
    model.set_optimal_q()
    return model.eval()


@pytest.fixture(scope="session")
def bernoulli_data():
    X = _inputs(40, 1)
    y = ((X[:, :1] - 0.5) ** 2 + (X[:, 1:] - 0.5) ** 2 < 0.1).to(F64)
    return X, y


@pytest.fixture(scope="session")
def bernoulli_svgp(bernoulli_data):
    X, y = bernoulli_data
    return _fit(gpvi.SVGP(X, y, likelihood=BernoulliLikelihood(), num_inducing=10), 3)


@pytest.fixture(scope="session")
def softmax_data():
    X = _inputs(45, 2)
    y = (3 * X[:, :1]).floor().clamp(max=2).to(F64)
    return X, y


@pytest.fixture(scope="session")
def softmax_dual(softmax_data):
    X, y = softmax_data
    likelihood = SoftmaxLikelihood(num_classes=3, mixing_weights=False)
    return _fit(gpvi.DualSVGP(X, y, likelihood=likelihood, num_inducing=10), 3)


@pytest.fixture(scope="session")
def pool():
    return _inputs(25, 3)
