"""Ordinary data a new user brings: unscaled targets and inputs, noise-free targets, float32, duplicates.

Each case was a silent wrong answer or a crash before: SVGP on Y * 100 + 1000 ended with a relative
RMSE of 11.9; the collapsed bound failed on noise-free data in 6 of 6 seeds; `model.to(float32)` left
the data in float64.
"""

import warnings

import pytest
import torch
from botorch.exceptions.warnings import InputDataWarning
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from gpytorch.kernels import RBFKernel, ScaleKernel
from gpytorch.likelihoods import BernoulliLikelihood, PoissonLikelihood, SoftmaxLikelihood

import gpvi
from gpvi import SVGP, DualSVGP
from gpvi.models.svgp import MIN_NOISE


def _branin_like(n, seed=0, noise=0.05):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, dtype=torch.float64, generator=g)
    f = torch.sin(6 * X[:, :1]) * torch.cos(3 * X[:, 1:])
    return X, f + noise * torch.randn(n, 1, dtype=torch.float64, generator=g), f


def _relative_rmse(model, X, f):
    mean = model.posterior(X).mean.detach()
    return ((mean - f).pow(2).mean().sqrt() / f.std()).item()


@pytest.mark.parametrize("cls", [SVGP, DualSVGP])
@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (100.0, 1000.0), (1.0, 10.0), (1e-3, 0.0), (1e4, -1e6)])
def test_targets_at_any_scale_fit_as_well_as_unit_ones(cls, scale, shift):
    X, Y, _ = _branin_like(120)
    Xt, _, ft = _branin_like(300, seed=1)
    model = cls(X, Y * scale + shift, num_inducing=24)
    assert isinstance(model.outcome_transform, Standardize)  # BoTorch's default, as SingleTaskGP
    result = gpvi.fit(model, recipe="collapsed")
    assert not result.failed
    assert _relative_rmse(model, Xt, ft * scale + shift) < 0.1
    # the posterior is in the user's units: its mean at the data is near the data
    assert model.posterior(X).mean.mean().item() == pytest.approx((Y * scale + shift).mean().item(), rel=0.05, abs=1e-2)


def test_outcome_transform_none_keeps_targets_and_warns_as_botorch():
    X, Y, _ = _branin_like(50)
    with pytest.warns(InputDataWarning, match="not standardized"):
        model = SVGP(X, Y * 10 + 3, num_inducing=8, outcome_transform=None)
    assert not hasattr(model, "outcome_transform")
    torch.testing.assert_close(model.train_targets, Y * 10 + 3)


def test_inputs_outside_the_unit_cube_warn_unless_a_kernel_or_transform_is_given():
    X, Y, _ = _branin_like(40)
    with pytest.warns(InputDataWarning, match="unit cube"):
        SVGP(X * 50, Y, num_inducing=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputDataWarning)
        SVGP(X, Y, num_inducing=8)  # in the unit cube
        SVGP(X * 50, Y, num_inducing=8, input_transform=Normalize(2))
        SVGP(X * 50, Y, num_inducing=8, kernel=ScaleKernel(RBFKernel()))  # SingleTaskGP checks only NaNs then


def test_non_gaussian_likelihoods_take_their_targets_as_given():
    X, _, f = _branin_like(40)
    labels = (f > 0).double()
    model = SVGP(X, labels, likelihood=BernoulliLikelihood(), num_inducing=8)
    assert not hasattr(model, "outcome_transform")
    with pytest.raises(ValueError, match="`outcome_transform`.*Gaussian"):
        SVGP(X, labels, likelihood=BernoulliLikelihood(), outcome_transform=Standardize(1))


@pytest.mark.parametrize(
    ("labels", "likelihood", "match"),
    [
        (lambda y: 2 * y - 1, BernoulliLikelihood(), r"\{0, 1\}.*\(y \+ 1\) / 2"),
        (lambda y: 2 * y, BernoulliLikelihood(), r"\{0, 1\}"),
        (lambda y: 0.3 + 0 * y, BernoulliLikelihood(), r"\{0, 1\}"),
        (lambda y: y - 0.5, PoissonLikelihood(), "counts"),
        (lambda y: 3 * y, SoftmaxLikelihood(num_classes=2, mixing_weights=False), "class labels 0..1"),
    ],
)
def test_targets_a_likelihood_cannot_read_are_refused(labels, likelihood, match):
    X, _, f = _branin_like(30)
    with pytest.raises(ValueError, match=match):
        SVGP(X, labels((f > 0).double()), likelihood=likelihood, num_inducing=8)


@pytest.mark.parametrize(("n", "M"), [(60, 20), (200, 64), (120, 120)])
@pytest.mark.parametrize("cls", [SVGP, DualSVGP])
def test_noise_free_targets_fit_without_failure(cls, n, M):
    """Deterministic simulators (BO's main case): the bound stays PD down to the noise floor."""
    X, _, f = _branin_like(n)
    Xt, _, ft = _branin_like(300, seed=1)
    model = cls(X, f, num_inducing=M)
    with warnings.catch_warnings():
        warnings.simplefilter("error", gpvi.progress.FitFailedWarning)
        result = gpvi.fit(model, recipe="collapsed")
    assert result.stop_reason in ("converged", "max_steps")
    if M >= 64:  # with few inducing points the approximation's error is (rightly) absorbed as noise
        assert model.likelihood.noise.item() < 10 * MIN_NOISE
    assert _relative_rmse(model, Xt, ft) < (0.05 if M >= 64 else 0.2)
    variance = model.posterior(Xt).variance
    assert torch.isfinite(variance).all() and (variance > 0).all()


def test_the_default_noise_floor_is_botorchs():
    X, _, f = _branin_like(20)
    model = SVGP(X, f, num_inducing=8)
    assert model.likelihood.noise_covar.raw_noise_constraint.lower_bound.item() == pytest.approx(MIN_NOISE)
    assert MIN_NOISE == 1e-4


def test_duplicated_rows_give_distinct_inducing_points():
    X, Y, _ = _branin_like(30)
    X, Y = torch.cat([X, X, X]), torch.cat([Y, Y, Y])
    model = SVGP(X, Y, num_inducing=200)  # M >= n: the distinct rows, not Z = X with triplicates
    Z = model.features.Z
    assert Z.shape[0] == 30 and torch.unique(Z, dim=0).shape[0] == 30
    result = gpvi.fit(model, recipe="collapsed")
    assert not result.failed


def test_a_single_point_builds_fits_and_predicts():
    X, Y, _ = _branin_like(1)
    model = SVGP(X, Y)
    result = gpvi.fit(model, max_steps=20)
    assert not result.failed
    posterior = model.posterior(torch.rand(5, 2, dtype=torch.float64))
    assert torch.isfinite(posterior.mean).all() and (posterior.variance > 0).all()


def test_one_dimensional_targets_are_named():
    X, Y, _ = _branin_like(10)
    with pytest.raises(ValueError, match=r"`train_Y`.*train_Y.unsqueeze\(-1\)"):
        SVGP(X, Y[:, 0])


def test_an_unknown_inducing_method_is_refused_even_when_M_exceeds_n():
    X, Y, _ = _branin_like(10)
    with pytest.raises(ValueError, match="`inducing`.*'kmeanz'"):
        SVGP(X, Y, num_inducing=64, inducing="kmeanz")


# -- dtype -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SVGP, DualSVGP])
def test_converting_the_model_converts_its_data(cls):
    X, Y, _ = _branin_like(40)
    model = cls(X, Y, num_inducing=10)
    gpvi.fit(model, recipe="collapsed")
    model32 = model.to(torch.float32)
    assert model32.train_inputs[0].dtype == torch.float32
    assert model32.train_targets.dtype == torch.float32 and model32.train_X_model.dtype == torch.float32
    mean64 = model.double().posterior(X).mean  # back to float64: the same model
    model32 = model.to(torch.float32)
    assert not gpvi.fit(model32, max_steps=5, recipe="collapsed").failed  # refitting works in float32
    posterior = model32.posterior(X.float())
    assert posterior.mean.dtype == torch.float32
    torch.testing.assert_close(posterior.mean.double(), mean64.detach(), atol=0.05, rtol=0.05)
    model32.update(X[:3].float(), Y[:3].float())
    fantasy = model32.condition_on_observations(X[:2].float(), Y[:2].float())
    assert fantasy.posterior(X[:4].float()).mean.dtype == torch.float32


def test_mixed_dtypes_are_refused_by_name():
    X, Y, _ = _branin_like(20)
    model = SVGP(X, Y, num_inducing=6)
    with pytest.raises(TypeError, match="`X` is torch.float32 but the model is torch.float64"):
        model.posterior(X.float())
    with pytest.raises(TypeError, match="`X` is torch.float32"):
        model.condition_on_observations(X[:2].float(), Y[:2])
    with pytest.raises(TypeError, match="`Y` is torch.float32"):
        model.condition_on_observations(X[:2], Y[:2].float())
    with pytest.raises(TypeError, match="`Y` is torch.float32"):
        model.update(X[:2], Y[:2].float())
    with pytest.raises(TypeError, match="`observation_noise` is torch.float32"):
        model.posterior(X[:2], observation_noise=torch.full((2, 1), 0.1, dtype=torch.float32))


# -- the expectations' rule --------------------------------------------------------------------------
def test_the_quadrature_rule_reaches_models_and_fit():
    X, _, f = _branin_like(40)
    labels = (f > 0).double()
    model = SVGP(X, labels, likelihood=BernoulliLikelihood(), num_inducing=8)
    assert model.num_quadrature is None  # adaptive by default
    with torch.no_grad():
        model.model.covar_module.outputscale = 50.0  # a wide prior q(f): where 20 nodes are off by ~1e-2
    model.train()
    adaptive = model.elbo().expected_log_lik.item()
    model.num_quadrature = 20
    hermite = model.elbo().expected_log_lik.item()
    model.num_quadrature = 400
    many = model.elbo().expected_log_lik.item()
    assert abs(hermite - adaptive) > 1e-3 and many == pytest.approx(adaptive, rel=1e-6)
    model.num_quadrature = None
    seen = []
    gpvi.fit(model, max_steps=2, num_quadrature=20, callback=lambda step, parts: seen.append(model.num_quadrature))
    assert seen == [20, 20] and model.num_quadrature is None  # the model's own rule is put back
    with pytest.raises(ValueError, match="`num_quadrature`"):
        gpvi.fit(model, num_quadrature=0)
    with pytest.raises(ValueError, match="`num_quadrature`"):
        SVGP(X, labels, likelihood=BernoulliLikelihood(), num_quadrature=2.5)
