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


# -- per-datum site store ---------------------------------------------------------------------------
def _points(n=12, seed=3):
    from gpvi.core import PointSites

    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=torch.float64)
    alpha = torch.randn(n, generator=g, dtype=torch.float64)
    beta = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    return PointSites(X, alpha, beta)


def _rbf(A, B):
    return torch.exp(-0.5 * torch.cdist(A, B).pow(2) / 0.3**2)


def test_point_sites_project_exactly_onto_any_inducing_set():
    """η = Σ α_n K⁻¹k_n, H = Σ β_n K⁻¹k_n k_nᵀK⁻¹ for any Z, where the summed sites' Nyström map is not exact."""
    sites = _points()
    Z = torch.rand(5, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    K = _rbf(Z, Z) + 1e-8 * torch.eye(5, dtype=torch.float64)
    W = torch.linalg.solve(K, _rbf(Z, sites.inputs))
    got = sites.project(_rbf(Z, sites.inputs), torch.linalg.cholesky(K))
    assert_close(got.eta, W @ sites.alpha, rtol=1e-9, atol=1e-10)
    assert_close(got.prec, W @ torch.diag(sites.beta) @ W.T, rtol=1e-9, atol=1e-10)
    # moving the summed sites to Z' by the Nyström map is not the exact projection onto Z'
    Z2 = Z + 0.05
    K2 = _rbf(Z2, Z2) + 1e-8 * torch.eye(5, dtype=torch.float64)
    exact = sites.project(_rbf(Z2, sites.inputs), torch.linalg.cholesky(K2))
    nystrom = got.project(torch.linalg.solve(K2, _rbf(Z2, Z)))
    assert not torch.allclose(nystrom.prec, exact.prec, rtol=1e-3)


def test_point_sites_add_remove_select_and_weights():
    sites = _points(10)
    head, tail = sites.select(torch.arange(4)), sites.remove(torch.arange(4))
    both = head.add(tail)
    assert both.num_points == 10
    assert_close(both.inputs, sites.inputs)
    assert_close(both.alpha, sites.alpha)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 5]] = True
    assert_close(sites.select(mask).alpha, sites.alpha[[1, 5]])
    assert sites.remove(mask).num_points == 8
    W = torch.randn(3, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    from gpvi.core import PointSites

    half = PointSites(sites.inputs, sites.alpha, sites.beta, torch.full((10,), 0.5, dtype=torch.float64))
    assert_close(half.summed(W).eta, 0.5 * sites.summed(W).eta)  # weights temper every site
    assert_close(half.summed(W).prec, 0.5 * sites.summed(W).prec)
    mixed = half.add(head)  # a weighted and an unweighted store: the unweighted sites weigh 1
    assert_close(
        mixed.weights, torch.cat([torch.full((10,), 0.5, dtype=torch.float64), torch.ones(4, dtype=torch.float64)])
    )
    with pytest.raises(ValueError, match="alpha"):
        PointSites(sites.inputs, sites.alpha[:3], sites.beta[:3])


def test_batch_sites_are_the_exact_gaussian_sites_and_differentiable():
    from types import SimpleNamespace

    from gpytorch.likelihoods import GaussianLikelihood

    from gpvi.core import batch_sites

    likelihood = GaussianLikelihood().double()
    likelihood.noise = 0.2
    y = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    mean = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64, requires_grad=True)
    marg = SimpleNamespace(
        prior_mean=torch.full((3,), 0.3, dtype=torch.float64),
        centred_mean=mean - 0.3,
        var=torch.full((3,), 0.4, dtype=torch.float64),
    )
    alpha, beta = batch_sites(likelihood, y, marg)
    assert_close(alpha, (y - 0.3) / 0.2)  # α = (y − μ₀)/σ², β = 1/σ² whatever q is
    assert_close(beta, torch.full((3,), 1 / 0.2, dtype=torch.float64))
    alpha_d, _ = batch_sites(likelihood, y, marg, differentiable=True)
    assert alpha_d.requires_grad
    assert_close(alpha_d.detach(), alpha)


def test_log_normalizer_is_the_gaussian_evidence():
    """log ∫ N(u; 0, K) exp(ηᵀu − ½uᵀHu) du against the dense closed form."""
    M = 4
    K = _spd(M, 2)
    sites = GaussianSites(torch.randn(M, generator=torch.Generator().manual_seed(3), dtype=torch.float64), _spd(M, 4))
    A = torch.linalg.inv(K) + sites.prec
    dense = 0.5 * sites.eta @ torch.linalg.solve(A, sites.eta) - 0.5 * torch.logdet(K @ A)
    assert_close(sites.log_normalizer(torch.linalg.cholesky(K)), dense, rtol=1e-10, atol=1e-10)
