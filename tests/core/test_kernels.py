"""`cross_covariance` and `gram` against gpytorch's kernels and autograd's own products."""

import pytest
import torch
from gpytorch.kernels import MaternKernel, PeriodicKernel, RBFKernel, ScaleKernel
from torch.testing import assert_close

from gpvi.core.kernels import cross_covariance
from gpvi.core.linalg import gram, gram_and_project


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


@pytest.mark.parametrize("kind", ["rbf", "1.5", "2.5"])
def test_cross_covariance_batches_and_broadcasts_values_and_gradients(kind):
    """Batched hyperparameters against (q-batch, 1, N, D) inputs: the backward sums over broadcast dims."""
    g = torch.Generator().manual_seed(2)
    kernel = _kernel(kind, True, batch=torch.Size([2]))
    Z = torch.rand(2, 5, 3, generator=g, dtype=torch.float64)
    X = torch.cat([torch.rand(4, 1, 6, 3, generator=g, dtype=torch.float64), Z[:1, :1].expand(4, 1, 1, 3)], -2)
    ours, our_grads = _value_and_grads(cross_covariance, kernel, Z, X)
    ref, ref_grads = _value_and_grads(_gpytorch, kernel, Z, X)
    assert_close(ours, ref, rtol=1e-12, atol=1e-13)
    for a, b in zip(our_grads, ref_grads, strict=True):
        assert a.shape == b.shape
        assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["rbf", "2.5"])
def test_a_batched_outputscale_around_an_unbatched_base_kernel(kind):
    base = RBFKernel(ard_num_dims=3) if kind == "rbf" else MaternKernel(nu=2.5, ard_num_dims=3)
    kernel = ScaleKernel(base, batch_shape=torch.Size([2])).double()
    with torch.no_grad():
        kernel.outputscale = torch.tensor([0.7, 1.9], dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    X1, X2 = torch.rand(4, 3, generator=g, dtype=torch.float64), torch.rand(5, 3, generator=g, dtype=torch.float64)
    ours, our_grads = _value_and_grads(cross_covariance, kernel, X1, X2)
    ref, ref_grads = _value_and_grads(_gpytorch, kernel, X1, X2)
    assert ours.shape == (2, 4, 5)
    assert_close(ours, ref, rtol=1e-12, atol=1e-13)
    for a, b in zip(our_grads, ref_grads, strict=True):
        assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["1.5", "2.5"])
def test_matern_gradient_at_coincident_points_is_the_continuous_limit(kind):
    """At r = 0 the kernel is smooth: finite gradients, zero in the inputs, the limit of nearby points."""
    kernel = _kernel(kind, True, D=2)
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    at_zero, grads = _value_and_grads(cross_covariance, kernel, x, x)
    near, near_grads = _value_and_grads(cross_covariance, kernel, x, x + 1e-7)
    assert_close(at_zero, kernel.outputscale.detach().reshape(1, 1))
    for a, b in zip(grads, near_grads, strict=True):
        assert torch.isfinite(a).all()
        assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert_close(grads[0], torch.zeros_like(grads[0]))


@pytest.mark.parametrize("kind", ["rbf", "1.5", "2.5"])
def test_cross_covariance_passes_gradcheck_in_inputs_and_hyperparameters(kind):
    kernel = _kernel(kind, True)
    g = torch.Generator().manual_seed(3)
    X1 = torch.rand(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    X2 = torch.rand(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    raw_ls = kernel.base_kernel.raw_lengthscale.detach().clone().requires_grad_(True)
    raw_scale = kernel.raw_outputscale.detach().clone().requires_grad_(True)
    wrapper = _CrossCovariance(kernel)

    def value(a, b, ls, scale):
        params = {"kernel.base_kernel.raw_lengthscale": ls, "kernel.raw_outputscale": scale}
        return torch.func.functional_call(wrapper, params, (a, b))

    assert torch.autograd.gradcheck(value, (X1, X2, raw_ls, raw_scale))


class _CrossCovariance(torch.nn.Module):
    def __init__(self, kernel):
        super().__init__()
        self.kernel = kernel

    def forward(self, X1, X2):
        return cross_covariance(self.kernel, X1, X2)


def test_other_kernels_fall_back_to_gpytorch():
    g = torch.Generator().manual_seed(4)
    X1, X2 = torch.rand(3, 2, generator=g, dtype=torch.float64), torch.rand(4, 2, generator=g, dtype=torch.float64)
    for kernel in (
        PeriodicKernel().double(),
        MaternKernel(nu=0.5).double(),
        ScaleKernel(RBFKernel(active_dims=[0])).double(),
    ):
        assert_close(cross_covariance(kernel, X1, X2), kernel(X1, X2).to_dense())


def test_gram_and_project_match_autograd_of_the_plain_products():
    g = torch.Generator().manual_seed(6)
    A = torch.randn(4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(9, 1, generator=g, dtype=torch.float64, requires_grad=True)
    W, w = torch.randn(4, 4, generator=g, dtype=torch.float64), torch.randn(4, 1, generator=g, dtype=torch.float64)
    phi, proj = gram_and_project(A, y)
    ours = torch.autograd.grad((phi * W).sum() + (proj * w).sum(), [A, y])
    ref = torch.autograd.grad(((A @ A.mT) * W).sum() + ((A @ y) * w).sum(), [A, y])
    assert_close(phi, A @ A.mT)
    assert_close(proj, A @ y)
    for a, b in zip(ours, ref, strict=True):
        assert_close(a, b)
    (only_gram,) = torch.autograd.grad((gram_and_project(A, y)[0] * W).sum(), [A])  # the projection unused
    assert_close(only_gram, torch.autograd.grad(((A @ A.mT) * W).sum(), [A])[0])
    assert torch.autograd.gradcheck(lambda a, b: gram_and_project(a, b), (A, y))
    batched = torch.randn(3, 4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: gram_and_project(a, b), (batched, y))


def test_gram_matches_autograd_of_the_plain_product():
    g = torch.Generator().manual_seed(5)
    A = torch.randn(2, 4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    (ours,) = torch.autograd.grad((gram(A) * W).sum(), [A])
    (ref,) = torch.autograd.grad(((A @ A.mT) * W).sum(), [A])
    assert_close(gram(A), A @ A.mT)
    assert_close(ours, ref)
    assert torch.autograd.gradcheck(gram, (A[0].detach().clone().requires_grad_(True),))
