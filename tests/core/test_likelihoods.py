"""Expected log-likelihoods: closed forms, quadrature, and derivatives against finite differences."""

import math

import pytest
import torch
from gpytorch.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    PoissonLikelihood,
    SoftmaxLikelihood,
    StudentTLikelihood,
)
from torch.testing import assert_close

from gpvi.core import ExpPoissonLikelihood, LogitBernoulliLikelihood, expected_log_prob, expected_log_prob_and_grads

N = 6


def _case(name):
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(N, generator=g, dtype=torch.float64)
    var = 0.2 + torch.rand(N, generator=g, dtype=torch.float64)
    if name == "gaussian":
        lik = GaussianLikelihood()
        lik.noise = 0.3
        y = torch.randn(N, generator=g, dtype=torch.float64)
    elif name in ("probit", "logit"):
        lik = BernoulliLikelihood() if name == "probit" else LogitBernoulliLikelihood()
        y = (torch.rand(N, generator=g) > 0.5).double()
    elif name in ("poisson_exp", "poisson_softplus"):
        lik = ExpPoissonLikelihood() if name == "poisson_exp" else PoissonLikelihood()
        y = torch.randint(0, 5, (N,), generator=g).double()
    elif name == "student_t":
        lik = StudentTLikelihood()
        y = torch.randn(N, generator=g, dtype=torch.float64)
    elif name == "softmax":
        lik = SoftmaxLikelihood(num_classes=3, mixing_weights=False)
        mean = torch.randn(N, 3, generator=g, dtype=torch.float64)
        var = 0.2 + torch.rand(N, 3, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (N,), generator=g).double()
    return lik.double(), y, mean, var


ALL = ["gaussian", "probit", "logit", "poisson_exp", "poisson_softplus", "student_t", "softmax"]


@pytest.mark.parametrize("name", ALL)
def test_gradients_match_central_finite_differences(name):
    lik, y, mean, var = _case(name)
    grads = expected_log_prob_and_grads(lik, y, mean, var)
    assert_close(grads.value, expected_log_prob(lik, y, mean, var).detach())
    h = 1e-5
    for i in range(N):
        for arg, analytic in (("mean", grads.d_mean), ("var", grads.d_var)):
            up, down = mean.clone(), mean.clone()
            vu, vd = var.clone(), var.clone()
            if arg == "mean":
                up[i] += h
                down[i] -= h
            else:
                vu[i] += h
                vd[i] -= h
            fd = (expected_log_prob(lik, y, up, vu).sum() - expected_log_prob(lik, y, down, vd).sum()) / (2 * h)
            assert_close(analytic[i].sum(), fd.detach(), rtol=1e-6, atol=1e-8)


def test_gaussian_closed_form_matches_gpytorch():
    lik, y, mean, var = _case("gaussian")
    from gpytorch.distributions import MultivariateNormal

    ref = lik.expected_log_prob(y, MultivariateNormal(mean, torch.diag(var)))
    assert_close(expected_log_prob(lik, y, mean, var), ref)


def test_exp_poisson_closed_form_matches_high_order_quadrature():
    lik, y, mean, var = _case("poisson_exp")
    from gpvi.core.quadrature import gauss_hermite_expectation

    quad = gauss_hermite_expectation(lambda yy, f: lik.forward(f).log_prob(yy), y, mean, var, 80)
    assert_close(expected_log_prob(lik, y, mean, var), quad, rtol=1e-10, atol=1e-10)


def test_probit_quadrature_matches_high_order_quadrature_and_is_finite_in_tails():
    # gpytorch's own BernoulliLikelihood.expected_log_prob differs from this reference by up to
    # 2.5e-4 here (its quadrature nodes are less accurate); gpvi's 20-node rule agrees to 1e-10.
    lik, y, mean, var = _case("probit")
    from gpvi.core.quadrature import gauss_hermite_expectation

    ref = gauss_hermite_expectation(lambda yy, f: torch.special.log_ndtr((2 * yy - 1) * f), y, mean, var, 200)
    assert_close(expected_log_prob(lik, y, mean, var), ref, rtol=1e-10, atol=1e-10)
    far = expected_log_prob(
        lik, torch.zeros(1, dtype=torch.float64), torch.tensor([40.0]).double(), torch.tensor([1e-4]).double()
    )
    assert torch.isfinite(far).all() and far.item() < -700


def test_weights_multiply_values_and_gradients():
    lik, y, mean, var = _case("logit")
    w = torch.linspace(0.5, 2.0, N, dtype=torch.float64)
    plain = expected_log_prob_and_grads(lik, y, mean, var)
    weighted = expected_log_prob_and_grads(lik, y, mean, var, weights=w)
    for a, b in zip(plain, weighted, strict=True):
        assert_close(a * w, b)


def test_expected_log_prob_of_zero_variance_is_the_log_density():
    lik, y, mean, _ = _case("student_t")
    ref = lik.forward(mean).log_prob(y)
    assert_close(expected_log_prob(lik, y, mean, torch.zeros_like(mean)), ref)


def test_softmax_mc_is_deterministic_and_close_to_log_softmax_at_small_variance():
    lik, y, mean, var = _case("softmax")
    a = expected_log_prob(lik, y, mean, var)
    assert_close(a, expected_log_prob(lik, y, mean, var))
    tiny = expected_log_prob(lik, y, mean, torch.full_like(var, 1e-12))
    ref = torch.log_softmax(mean, -1).gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
    assert_close(tiny, ref, rtol=1e-5, atol=1e-6)


def test_shape_mismatch_and_unknown_likelihood_raise():
    lik, y, mean, var = _case("gaussian")
    with pytest.raises(ValueError, match="`mean`"):
        expected_log_prob(lik, y, mean, var[:-1])
    with pytest.raises(TypeError, match="No expected log-likelihood"):
        expected_log_prob(object(), y, mean, var)
    assert math.isfinite(expected_log_prob(lik, y, mean, var).sum().item())
