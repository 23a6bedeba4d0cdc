"""`cross_covariance` and `gram` against gpytorch's kernels and autograd's own products."""

import pytest
import torch
from gpytorch.kernels import MaternKernel, PeriodicKernel, RBFKernel, ScaleKernel
from torch.testing import assert_close

from gpvi.core.kernels import _StationaryProfile, cross_covariance
from gpvi.core.linalg import gram


def _kernel(kind: str, scaled: bool, batch: tuple = (), D: int = 3):
    batch = torch.Size(batch)
    base = (
        RBFKernel(ard_num_dims=D, batch_shape=batch)
        if kind == "rbf"
        else MaternKernel(nu=float(kind), ard_num_dims=D, batch_shape=batch)
    )
    kernel = ScaleKernel(base, batch_shape=batch) if scaled else base
    kernel = kernel.double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        base.lengthscale = 0.4 + torch.rand(base.lengthscale.shape, generator=g, dtype=torch.float64)
        if scaled:
            kernel.outputscale = 0.5 + torch.rand(kernel.outputscale.shape, generator=g, dtype=torch.float64)
    return kernel


def _value_and_grads(fn, kernel, X1, X2):
    X1 = X1.clone().requires_grad_(True)
    X2 = X2.clone().requires_grad_(True)
    value = fn(kernel, X1, X2)
    weights = torch.linspace(-1, 1, value.numel(), dtype=value.dtype).reshape(value.shape)
    params = [X1, X2, *kernel.parameters()]
    grads = torch.autograd.grad((value * weights).sum(), params)
    return value.detach(), grads


def _gpytorch(kernel, X1, X2):
    return kernel(X1, X2).to_dense()


@pytest.mark.parametrize("kind", ["rbf", "1.5", "2.5"])
@pytest.mark.parametrize("scaled", [False, True])
def test_cross_covariance_matches_gpytorch_values_and_gradients(kind, scaled):
    g = torch.Generator().manual_seed(1)
    X1 = torch.rand(7, 3, generator=g, dtype=torch.float64)
    X2 = torch.cat([torch.rand(11, 3, generator=g, dtype=torch.float64), X1[:2]])  # two coincident pairs
    kernel = _kernel(kind, scaled)
    ours, our_grads = _value_and_grads(cross_covariance, kernel, X1, X2)
    ref, ref_grads = _value_and_grads(_gpytorch, kernel, X1, X2)
    assert_close(ours, ref, rtol=1e-12, atol=1e-13)
    for a, b in zip(our_grads, ref_grads, strict=True):
        assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["rbf", "2.5"])
def test_cross_covariance_batches_and_broadcasts(kind):
    g = torch.Generator().manual_seed(2)
    kernel = _kernel(kind, True, batch=torch.Size([2]))
    Z = torch.rand(2, 5, 3, generator=g, dtype=torch.float64)
    X = torch.rand(4, 1, 6, 3, generator=g, dtype=torch.float64)  # (q-batch, 1, N, D) against (2, M, D)
    assert_close(cross_covariance(kernel, Z, X), kernel(Z, X).to_dense(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["1.5", "2.5"])
def test_matern_gradient_at_coincident_points_is_the_continuous_limit(kind):
    """At r = 0 the profile's derivative in r² is finite: −3/2 (ν = 3/2) and −5/6 (ν = 5/2)."""
    kernel = _kernel(kind, False, D=1)
    x = torch.zeros(1, 1, dtype=torch.float64)
    sq = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(_StationaryProfile.apply(sq, float(kind)).sum(), [sq])
    assert_close(slope, torch.full_like(slope, -1.5 if kind == "1.5" else -5.0 / 6.0))
    assert_close(cross_covariance(kernel, x, x), torch.ones(1, 1, dtype=torch.float64))


def test_cross_covariance_passes_gradcheck():
    kernel = _kernel("2.5", True)
    g = torch.Generator().manual_seed(3)
    X1 = torch.rand(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    X2 = torch.rand(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: cross_covariance(kernel, a, b), (X1, X2))


def test_other_kernels_fall_back_to_gpytorch():
    g = torch.Generator().manual_seed(4)
    X1, X2 = torch.rand(3, 2, generator=g, dtype=torch.float64), torch.rand(4, 2, generator=g, dtype=torch.float64)
    for kernel in (
        PeriodicKernel().double(),
        MaternKernel(nu=0.5).double(),
        ScaleKernel(RBFKernel(active_dims=[0])).double(),
    ):
        assert_close(cross_covariance(kernel, X1, X2), kernel(X1, X2).to_dense())


def test_gram_matches_autograd_of_the_plain_product():
    g = torch.Generator().manual_seed(5)
    A = torch.randn(2, 4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    (ours,) = torch.autograd.grad((gram(A) * W).sum(), [A])
    (ref,) = torch.autograd.grad(((A @ A.mT) * W).sum(), [A])
    assert_close(gram(A), A @ A.mT)
    assert_close(ours, ref)
    assert torch.autograd.gradcheck(gram, (A[0].detach().clone().requires_grad_(True),))
