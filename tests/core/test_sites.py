"""Gaussian-site algebra: round trips, projections, damping."""

import warnings

import pytest
import torch
from torch.testing import assert_close

from gpvi.core import GaussianSites, NotPSDError, cholesky


def _spd(M, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(M, M, generator=g, dtype=torch.float64)
    return A @ A.T + M * torch.eye(M, dtype=torch.float64)


def test_whitened_posterior_round_trip():
    g = torch.Generator().manual_seed(1)
    M = 5
    mean = torch.randn(M, generator=g, dtype=torch.float64)
    cov = torch.linalg.inv(torch.eye(M, dtype=torch.float64) + _spd(M))  # a valid whitened q (S < I)
    tril = torch.linalg.cholesky(cov)
    sites = GaussianSites.from_whitened_posterior(mean, tril)
    mean2, tril2 = sites.whitened_posterior()
    assert_close(mean2, mean)
    assert_close(tril2 @ tril2.T, cov)


def test_u_space_posterior_matches_dense_formula():
    M = 4
    K = _spd(M, 2)
    g = torch.Generator().manual_seed(3)
    W = torch.randn(M, 7, generator=g, dtype=torch.float64)
    alpha, beta = torch.randn(7, generator=g, dtype=torch.float64), torch.rand(7, generator=g, dtype=torch.float64)
    sites = GaussianSites.from_data(W, alpha, beta)
    mean, cov = sites.posterior(torch.linalg.cholesky(K))
    S = torch.linalg.inv(torch.linalg.inv(K) + W @ torch.diag(beta) @ W.T)
    assert_close(cov, S)
    assert_close(mean, S @ (W @ alpha))
    # whiten / unwhiten are inverse maps
    L = torch.linalg.cholesky(K)
    back = sites.whiten(L).unwhiten(L)
    assert_close(back.eta, sites.eta)
    assert_close(back.prec, sites.prec)


def test_add_remove_damp_and_project():
    M = 3
    a = GaussianSites(torch.ones(M, dtype=torch.float64), torch.eye(M, dtype=torch.float64))
    b = GaussianSites(2 * torch.ones(M, dtype=torch.float64), 3 * torch.eye(M, dtype=torch.float64))
    assert_close(((a + b) - b).prec, a.prec)
    half = a.damped(b, 0.5)
    assert_close(half.eta, 1.5 * torch.ones(M, dtype=torch.float64))
    assert_close(a.damped(b, 1.0).prec, b.prec)
    lift = torch.cat([torch.eye(M), torch.zeros(2, M)]).double()
    big = a.project(lift)
    assert_close(big.prec[:M, :M], a.prec)
    assert big.prec[M:].abs().sum() == 0 and big.eta[M:].abs().sum() == 0


def test_cholesky_escalates_jitter_with_warning_then_explains():
    A = torch.ones(3, 3, dtype=torch.float64)  # rank one, PSD
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        L = cholesky(A, jitter=1e-8)
    assert torch.isfinite(L).all() and caught
    bad = -torch.eye(3, dtype=torch.float64)
    with pytest.raises(NotPSDError, match="Try: float64"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cholesky(bad, jitter=1e-8, max_tries=2, what="test matrix")
    with pytest.raises(NotPSDError, match="NaN"):
        cholesky(torch.full((2, 2), float("nan"), dtype=torch.float64))
