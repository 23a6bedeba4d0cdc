"""The quadrature rules of `gpvi.core.quadrature` against scipy's adaptive quadrature, closed forms and identities.

Known answers: for q(f) = N(m, v), z = (f − m)/√v,

    E = ∫ g(m + √v z) φ(z) dz,   ∂E/∂m = ∫ g'(m + √v z) φ(z) dz,   ∂E/∂v = ½ ∫ g''(m + √v z) φ(z) dz  (Stein),
    log Z = log ∫ exp(a g(m + √v z)) φ(z) dz,

with g = log p(y | f) and its derivatives written out below in numpy (independent of torch and
gpytorch), each integral by `scipy.integrate.quad` with a breakpoint at the likelihood's kink or
peak. On m ∈ {−8, −2, 0, 0.5, 3, 8}, v ∈ {1e-6, 1e-2, 1, 10, 50}, the default rule meets them to
`TOL` = 1e-8 (relative, or absolute below 1): the largest error measured is 6e-10 (∂E/∂m of
Student-t, σ² = 0.01, ν = 4); the old 20-node rule is off by up to 5e-1 on the same grid.
"""

import math

import numpy as np
import pytest
import torch
from gpytorch.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    LaplaceLikelihood,
    PoissonLikelihood,
    StudentTLikelihood,
)
from scipy import integrate, special
from torch.testing import assert_close

from gpvi.core.likelihoods import (
    LogitBernoulliLikelihood,
    _integrand,
    expected_log_prob,
    expected_log_prob_and_grads,
    log_predictive_density,
)
from gpvi.core.quadrature import HERMITE_TIERS, choose_tier, hermgauss
from gpvi.core.sites import batch_sites

TOL = 1e-8

# scipy flags round-off where a derivative integrand cancels to ~0; the comparisons still hold at TOL
pytestmark = pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
MEANS = [-8.0, -2.0, 0.0, 0.5, 3.0, 8.0]
VARS = [1e-6, 1e-2, 1.0, 10.0, 50.0]
SQ2PI = math.sqrt(2 * math.pi)

# (name, likelihood kind, targets, Student-t noise σ² and degrees of freedom ν)
CASES = [
    ("probit", "probit", [0.0, 1.0], None),
    ("logit", "logit", [0.0, 1.0], None),
    ("poisson", "poisson", [0.0, 3.0], None),
    ("student-t s2=0.01 df=4", "student", [0.0], (0.01, 4.0)),
    ("student-t s2=0.01 df=100", "student", [0.0], (0.01, 100.0)),
    ("student-t s2=1 df=4", "student", [0.0], (1.0, 4.0)),
    ("student-t s2=1 df=100", "student", [0.0], (1.0, 100.0)),
]


def make_likelihood(kind, params=None):
    if kind == "probit":
        return BernoulliLikelihood()
    if kind == "logit":
        return LogitBernoulliLikelihood()
    if kind == "poisson":
        return PoissonLikelihood()
    lik = StudentTLikelihood().double()
    lik.noise, lik.deg_free = params
    return lik


def log_density(kind, y, params=None):
    """numpy g(f) = log p(y | f), g'(f), g''(f), and the f-location of its kink or peak."""
    if kind == "probit":
        s = 2 * y - 1
        ratio = lambda x: np.exp(-0.5 * x * x - special.log_ndtr(x)) / SQ2PI  # φ/Φ
        return (
            lambda f: special.log_ndtr(s * f),
            lambda f: s * ratio(s * f),
            lambda f: -ratio(s * f) * (s * f + ratio(s * f)),
            0.0,
        )
    if kind == "logit":
        s = 2 * y - 1
        return (
            lambda f: -np.logaddexp(0, -s * f),
            lambda f: s * special.expit(-s * f),
            lambda f: -special.expit(f) * special.expit(-f),
            0.0,
        )
    if kind == "poisson":  # softplus link, rate S(f) = log(1 + e^f)
        S, sig = lambda f: np.logaddexp(0, f), special.expit
        return (
            lambda f: y * np.log(S(f)) - S(f) - special.gammaln(y + 1),
            lambda f: sig(f) * (y / S(f) - 1),
            lambda f: sig(f) * sig(-f) * (y / S(f) - 1) - sig(f) ** 2 * y / S(f) ** 2,
            0.0,
        )
    s2, nu = params
    const = special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * np.log(nu * np.pi * s2)
    return (
        lambda f: const - (nu + 1) / 2 * np.log1p((y - f) ** 2 / (nu * s2)),
        lambda f: (nu + 1) * (y - f) / (nu * s2 + (y - f) ** 2),
        lambda f: -(nu + 1) * (nu * s2 - (y - f) ** 2) / (nu * s2 + (y - f) ** 2) ** 2,
        y,
    )


def quad_z(h, breakpoints, lo=-14.0, hi=14.0):
    """∫_{lo}^{hi} h(z) dz by scipy's adaptive QAGS, split at the breakpoints inside (lo, hi)."""
    points = sorted({min(max(b, lo + 1e-9), hi - 1e-9) for b in breakpoints})
    return integrate.quad(h, lo, hi, points=points, limit=2000, epsabs=1e-15, epsrel=1e-13)[0]


def reference(kind, y, m, v, params=None):
    """(E, ∂E/∂m, ∂E/∂v) by adaptive quadrature."""
    g, g1, g2, centre = log_density(kind, y, params)
    sd = math.sqrt(v)
    pts = [(centre - m) / sd, 0.0]
    phi = lambda z: np.exp(-0.5 * z * z) / SQ2PI
    return (
        quad_z(lambda z: g(m + sd * z) * phi(z), pts),
        quad_z(lambda z: g1(m + sd * z) * phi(z), pts),
        0.5 * quad_z(lambda z: g2(m + sd * z) * phi(z), pts),
    )


def reference_log_z(kind, y, m, v, params=None, power=1.0):
    """log ∫ p(y|f)^a N(f; m, v) df by adaptive quadrature, scaled by its largest integrand value."""
    g, _, _, centre = log_density(kind, y, params)
    sd = math.sqrt(v)
    grid = np.linspace(-14, 14, 28001)
    log_h = power * g(m + sd * grid) - 0.5 * grid**2
    top = log_h.max()
    value = quad_z(
        lambda z: np.exp(power * g(m + sd * z) - 0.5 * z * z - top), [grid[log_h.argmax()], (centre - m) / sd]
    )
    return math.log(value) + top - math.log(SQ2PI)


def grid_tensors(ys):
    rows = [(y, m, v) for y in ys for m in MEANS for v in VARS]
    return [torch.tensor(col, dtype=torch.float64) for col in zip(*rows, strict=True)], rows


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).abs() / want.abs().clamp_min(1.0)).max().item()


@pytest.mark.parametrize(("name", "kind", "ys", "params"), CASES, ids=[c[0] for c in CASES])
def test_default_rule_matches_adaptive_quadrature_value_and_derivatives(name, kind, ys, params):
    (y, m, v), rows = grid_tensors(ys)
    got = expected_log_prob_and_grads(make_likelihood(kind, params), y, m, v)  # one batch: both rules mixed
    want = torch.tensor([reference(kind, *row, params) for row in rows])
    for i, what in enumerate(("value", "d/dm", "d/dv")):
        assert relative_error(got[i], want[:, i]) < TOL, what


def test_old_twenty_node_rule_is_still_selectable_and_is_what_failed():
    kind, params = "student", (0.01, 4.0)
    (y, m, v), rows = grid_tensors([0.0])
    lik = make_likelihood(kind, params)
    old = expected_log_prob_and_grads(lik, y, m, v, num_quadrature=20)
    # the 20-node rule is plain Gauss–Hermite with numpy's nodes (an independent construction)
    x, w = np.polynomial.hermite.hermgauss(20)
    f = m.unsqueeze(-1) + v.sqrt().unsqueeze(-1) * torch.from_numpy(x * math.sqrt(2))
    value = (lik.forward(f).log_prob(y.unsqueeze(-1)) * torch.from_numpy(w / math.sqrt(math.pi))).sum(-1)
    assert_close(old.value, value.detach(), rtol=1e-12, atol=1e-12)
    want = torch.tensor([reference(kind, *row, params) for row in rows])
    assert relative_error(old.d_mean, want[:, 1]) > 0.1  # the reproduced problem


def test_student_t_small_noise_derivative_has_the_right_sign():
    # σ² = 0.01, ν = 7 (gpytorch's default), q = N(0, 1), y = 0.25: 20 nodes gave ∂E/∂m = −0.221
    lik = StudentTLikelihood().double()
    lik.noise = 0.01
    y, m, v = (torch.tensor([t], dtype=torch.float64) for t in (0.25, 0.0, 1.0))
    want = reference("student", 0.25, 0.0, 1.0, (0.01, 7.0))
    got = expected_log_prob_and_grads(lik, y, m, v)
    assert want[1] > 1.4 and got.d_mean.item() > 0
    assert_close(got.d_mean, torch.tensor([want[1]], dtype=torch.float64), rtol=TOL, atol=TOL)
    assert expected_log_prob_and_grads(lik, y, m, v, num_quadrature=20).d_mean.item() < 0


def test_laplace_kink_against_the_folded_normal_closed_form():
    # E|y − f| = s √(2/π) exp(−d²/2s²) + d (1 − 2Φ(−d/s)),  d = y − m, s = √v;  E = −log 2b − E|y − f| / b
    lik = LaplaceLikelihood().double()
    lik.noise = 0.04
    b = 0.2
    (y, m, v), _ = grid_tensors([0.0])
    d, s = y - m, v.sqrt()
    folded = s * math.sqrt(2 / math.pi) * torch.exp(-0.5 * d**2 / v) + d * (1 - 2 * torch.special.ndtr(-d / s))
    assert relative_error(expected_log_prob(lik, y, m, v).detach(), -math.log(2 * b) - folded / b) < TOL


@pytest.mark.parametrize("num", [20, 64, 400])
def test_gauss_hermite_nodes_for_any_count(num):
    nodes, weights = hermgauss(num, torch.zeros((), dtype=torch.float64))
    assert torch.isfinite(nodes).all() and torch.isfinite(weights).all() and (weights > 0).all()
    assert_close(weights.sum(), torch.tensor(1.0, dtype=torch.float64), rtol=1e-13, atol=0)
    for k in range(1, 8):  # E[ξ^{2k}] = (2k − 1)!!, exact for 2k ≤ 2K − 1
        assert_close(
            (weights * nodes ** (2 * k)).sum(), torch.tensor(float(special.factorial2(2 * k - 1))), rtol=1e-11, atol=0
        )
    if num == 20:
        x, w = np.polynomial.hermite.hermgauss(20)
        assert_close(nodes, torch.from_numpy(x * math.sqrt(2)), rtol=0, atol=1e-13)
        assert_close(weights, torch.from_numpy(w / math.sqrt(math.pi)), rtol=1e-11, atol=0)


@pytest.mark.parametrize(("name", "kind", "ys", "params"), CASES[:4], ids=[c[0] for c in CASES[:4]])
def test_four_hundred_nodes_are_finite_and_agree_with_the_default_where_gauss_hermite_can(name, kind, ys, params):
    (y, m, v), _ = grid_tensors(ys)
    lik = make_likelihood(kind, params)
    many = expected_log_prob_and_grads(lik, y, m, v, num_quadrature=400)
    assert all(torch.isfinite(t).all() for t in many)
    if kind != "student":  # links are smooth on q's scale: 400 nodes suffice up to v = 50
        for got, want in zip(many, expected_log_prob_and_grads(lik, y, m, v), strict=True):
            assert relative_error(got, want) < 1e-7


LOG_Z_CASES = [(c[0], c[1], c[2], c[3], a) for c in CASES[:5] for a in (1.0, 0.5)]


@pytest.mark.parametrize(
    ("name", "kind", "ys", "params", "power"), LOG_Z_CASES, ids=[f"{c[0]} a={c[4]}" for c in LOG_Z_CASES]
)
def test_log_predictive_density_matches_adaptive_quadrature(name, kind, ys, params, power):
    (y, m, v), rows = grid_tensors(ys)
    got = log_predictive_density(make_likelihood(kind, params), y, m, v, power=power)
    want = torch.tensor([reference_log_z(kind, *row, params, power=power) for row in rows])
    assert relative_error(got, want) < TOL


def test_log_predictive_density_when_the_tilted_mass_lies_beyond_ten_standard_deviations():
    # ν = 100, σ² = 0.01, y − m = −3, v = 0.1: p(y|f) N(f; m, v) peaks near z = −8.6, with mass past z = −10
    kind, params = "student", (0.01, 100.0)
    got = log_predictive_density(make_likelihood(kind, params), *(torch.tensor([t]) for t in (0.0, 3.0, 0.1)))
    want = reference_log_z(kind, 0.0, 3.0, 0.1, params)
    assert abs(got.item() - want) < TOL * abs(want)


def test_log_predictive_density_derivative_matches_differences_of_the_reference():
    kind, params = "student", (0.01, 4.0)
    lik = make_likelihood(kind, params)
    cases = [(0.0, 0.5, 1.0), (0.0, -2.0, 10.0), (0.0, 3.0, 0.01)]
    h = 1e-4
    for y, m, v in cases:
        mt, vt = (torch.tensor([t], dtype=torch.float64, requires_grad=True) for t in (m, v))
        d_m, d_v = torch.autograd.grad(log_predictive_density(lik, torch.tensor([y]), mt, vt).sum(), (mt, vt))
        fd_m = (reference_log_z(kind, y, m + h, v, params) - reference_log_z(kind, y, m - h, v, params)) / (2 * h)
        fd_v = (reference_log_z(kind, y, m, v + h * v, params) - reference_log_z(kind, y, m, v - h * v, params)) / (
            2 * h * v
        )
        assert abs(d_m.item() - fd_m) < 1e-6 * max(1, abs(fd_m))
        assert abs(d_v.item() - fd_v) < 1e-6 * max(1, abs(fd_v))


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_gaussian_log_predictive_density_closed_form_for_any_power(power):
    lik = GaussianLikelihood().double()
    lik.noise = 0.3
    y, m, v = 0.4, -0.3, 2.0
    log_p = lambda f: -0.5 * np.log(2 * np.pi * 0.3) - (y - f) ** 2 / 0.6
    want = math.log(quad_z(lambda z: np.exp(power * log_p(m + math.sqrt(v) * z) - 0.5 * z * z) / SQ2PI, []))
    got = log_predictive_density(lik, *(torch.tensor([t], dtype=torch.float64) for t in (y, m, v)), power=power)
    assert abs(got.item() - want) < 1e-12


def test_derivative_in_the_likelihood_noise_matches_adaptive_quadrature():
    # ∂E/∂σ² = E[−1/(2σ²) + (ν + 1) r² / (2σ² (νσ² + r²))], r = y − f: the nodes are placed from a detached σ
    s2, nu = 0.01, 4.0
    lik = make_likelihood("student", (s2, nu))
    (y, m, v), rows = grid_tensors([0.0])
    (d_noise,) = torch.autograd.grad(expected_log_prob(lik, y, m, v).sum(), lik.raw_noise)
    d_noise = d_noise / torch.sigmoid(lik.raw_noise.detach())  # noise = softplus(raw): ∂noise/∂raw = σ(raw)
    want = 0.0
    for _, mean, var in rows:
        sd = math.sqrt(var)
        r = lambda z, mean=mean, sd=sd: -(mean + sd * z)
        integrand = lambda z, r=r: (
            (-1 / (2 * s2) + (nu + 1) * r(z) ** 2 / (2 * s2 * (nu * s2 + r(z) ** 2))) * np.exp(-0.5 * z * z) / SQ2PI
        )
        want += quad_z(integrand, [-mean / sd, 0.0])
    assert abs(d_noise.item() - want) < TOL * abs(want)


def test_second_derivative_identity_through_the_adaptive_rule():
    # ∂²E/∂m² = E[g''] = 2 ∂E/∂v: autograd twice through the detached nodes (the EP-like M-step's path)
    lik = make_likelihood("student", (0.01, 4.0))
    y = torch.zeros(3, dtype=torch.float64)
    m = torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([0.5, 10.0, 50.0], dtype=torch.float64, requires_grad=True)
    value = expected_log_prob(lik, y, m, v)
    d_m, d_v = torch.autograd.grad(value.sum(), (m, v), create_graph=True)
    (d_mm,) = torch.autograd.grad(d_m.sum(), m)
    assert_close(d_mm, 2 * d_v.detach(), rtol=1e-8, atol=1e-10)


def test_a_point_mass_next_to_a_wide_element_in_one_column_is_the_log_density():
    # P = 2 outputs: column 0 mixes v = 0 with v = 5, so both take the Legendre rule; column 1 is narrow
    lik = make_likelihood("student", (0.01, 4.0))
    y = torch.tensor([[0.3, 0.1], [0.3, 0.1]], dtype=torch.float64)
    m = torch.tensor([[0.0, 0.2], [0.0, 0.2]], dtype=torch.float64)
    v = torch.tensor([[0.0, 1e-6], [5.0, 1e-6]], dtype=torch.float64)
    at_mean = lik.forward(m[0, 0]).log_prob(y[0, 0]).detach().reshape(())
    for function in (expected_log_prob, log_predictive_density):
        out = function(lik, y, m, v).detach()
        assert torch.isfinite(out).all()
        assert_close(out[0, 0], at_mean, rtol=1e-12, atol=1e-12)
    want = reference("student", 0.3, 0.0, 5.0, (0.01, 4.0))[0]
    assert abs(expected_log_prob(lik, y, m, v)[1, 0].item() - want) < TOL * abs(want)


def test_batch_sites_passes_num_quadrature_through():
    class Marg:
        prior_mean = torch.zeros(2, dtype=torch.float64)
        centred_mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
        var = torch.tensor([30.0, 50.0], dtype=torch.float64)

    lik, y = BernoulliLikelihood(), torch.tensor([1.0, 0.0], dtype=torch.float64)
    for num in (None, 20):
        grads = expected_log_prob_and_grads(lik, y, Marg.centred_mean, Marg.var, num_quadrature=num)
        alpha, beta = batch_sites(lik, y, Marg(), num_quadrature=num)
        assert_close(beta, -2 * grads.d_var)
        assert_close(alpha, grads.d_mean + beta * Marg.centred_mean)
    assert not torch.allclose(batch_sites(lik, y, Marg())[1], batch_sites(lik, y, Marg(), num_quadrature=20)[1])


@pytest.mark.parametrize("function", [expected_log_prob, log_predictive_density])
def test_float32_inputs_give_float32_outputs(function):
    lik = make_likelihood("student", (0.01, 4.0)).float()
    y = torch.zeros(4, dtype=torch.float32)
    m = torch.tensor([-2.0, 0.0, 0.5, 3.0])
    v = torch.tensor([1e-4, 1.0, 10.0, 50.0])
    got = function(lik, y, m.float(), v.float())
    want = function(make_likelihood("student", (0.01, 4.0)), y.double(), m.double(), v.double())
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


def test_num_quadrature_must_be_none_or_a_positive_int():
    lik, y = BernoulliLikelihood(), torch.ones(1, dtype=torch.float64)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="num_quadrature"):
            expected_log_prob(lik, y, y, y, num_quadrature=bad)


TIER_CASES = [c for c in CASES if c[1] != "student" or c[3][0] == 1.0] + [CASES[3]]


@pytest.mark.parametrize(("name", "kind", "ys", "params"), TIER_CASES, ids=[c[0] for c in TIER_CASES])
def test_every_gauss_hermite_tier_is_used_and_meets_the_references(name, kind, ys, params):
    # v chosen so that ρ = ℓ/√v sits just above each τ_k (the tier's worst case) and just below the
    # last one (the composite rule), with m across [−8, 8]; all in one batch, so the tiers are mixed
    lik = make_likelihood(kind, params)
    if params is not None:  # gpytorch stores the noise through float32: the reference gets that value
        params = (lik.noise.item(), lik.deg_free.item())
    integrand = _integrand(lik, None)
    ell = {"probit": 2.8, "logit": math.pi, "poisson": math.pi}.get(kind) or math.sqrt(params[0] * params[1])
    ratios = [tau * 1.001 for tau, _ in HERMITE_TIERS] + [HERMITE_TIERS[-1][0] * 0.98]
    rows = [(y, m, (ell / r) ** 2) for y in ys for m in (-8.0, -2.0, 0.0, 1.0, 4.0) for r in ratios]
    y, m, v = (torch.tensor(col, dtype=torch.float64) for col in zip(*rows, strict=True))
    tiers = choose_tier(integrand, y, m, v)
    assert set(tiers.tolist()) == set(range(len(HERMITE_TIERS) + 1))  # every tier, and the composite rule
    got = expected_log_prob_and_grads(lik, y, m, v)
    want = torch.tensor([reference(kind, *row, params) for row in rows], dtype=torch.float64)
    for i, what in enumerate(("value", "d/dm", "d/dv")):
        assert relative_error(got[i], want[:, i]) < TOL, what
    if kind != "probit":
        got = log_predictive_density(lik, y, m, v, power=0.5)
        want = torch.tensor([reference_log_z(kind, *row, params, power=0.5) for row in rows], dtype=torch.float64)
        assert relative_error(got, want) < TOL
    # each tier is its own Gauss–Hermite rule: the same numbers as asking for K_k nodes directly
    for k, (_, nodes) in enumerate(HERMITE_TIERS):
        cols = tiers == k
        direct = expected_log_prob(lik, y[cols], m[cols], v[cols], num_quadrature=nodes)
        assert_close(expected_log_prob(lik, y, m, v)[cols], direct, rtol=1e-13, atol=1e-13)
