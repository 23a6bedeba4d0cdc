"""`collapsed_elbo` (Φ = Kuf Kfu in float64, A = L⁻¹Kuf below) against the dense Titsias formula."""

import pytest
import torch
from torch.testing import assert_close

from gpvi.core import collapsed_elbo


def _problem(dtype):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(40, 2, generator=g, dtype=torch.float64)
    Z = torch.rand(7, 2, generator=g, dtype=torch.float64)
    y = torch.randn(40, generator=g, dtype=torch.float64)
    return X.to(dtype), Z.to(dtype), y.to(dtype)


def _k(A, B, ls):
    return torch.exp(-0.5 * torch.cdist(A / ls, B / ls).pow(2))


def _dense_bound(X, Z, y, ls, noise):
    Kuu = _k(Z, Z, ls) + 1e-6 * torch.eye(Z.shape[0], dtype=X.dtype)
    Kuf = _k(Z, X, ls)
    Qff = Kuf.mT @ torch.linalg.solve(Kuu, Kuf)
    cov = Qff + noise * torch.eye(X.shape[0], dtype=X.dtype)
    log_n = torch.distributions.MultivariateNormal(torch.zeros_like(y), cov).log_prob(y)
    return log_n - (X.shape[0] - Qff.diagonal().sum()) / (2 * noise)


def _ours(X, Z, y, ls, noise):
    Kuu = _k(Z, Z, ls) + 1e-6 * torch.eye(Z.shape[0], dtype=X.dtype)
    return collapsed_elbo(torch.linalg.cholesky(Kuu), _k(Z, X, ls), torch.ones_like(y), y, noise)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_collapsed_bound_matches_the_dense_formula(dtype):
    X, Z, y = _problem(dtype)
    ls = torch.tensor(0.4, dtype=dtype, requires_grad=True)
    noise = torch.tensor(0.1, dtype=dtype, requires_grad=True)
    ours = _ours(X, Z, y, ls, noise)
    ref = _dense_bound(X.double(), Z.double(), y.double(), ls.double(), noise.double())
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert_close(ours.double(), ref, rtol=tol, atol=0)
    for a, b in zip(torch.autograd.grad(ours, [ls, noise]), torch.autograd.grad(ref, [ls, noise]), strict=True):
        assert_close(a.double(), b.double(), rtol=tol * 10, atol=0)
