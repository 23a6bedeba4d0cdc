"""gpvi models built from data are SingleTaskGP's model unless told otherwise (issue: the first hour).

`SVGP(X, Y, inducing=X)` fitted by default (the collapsed bound is the exact marginal likelihood at
Z = X, plus SingleTaskGP's priors) must predict like a fitted `SingleTaskGP(X, Y)`: same kernel,
priors, noise floor, outcome transform, and the same MAP optimum.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from gpytorch.kernels import RBFKernel, ScaleKernel
from gpytorch.likelihoods import BernoulliLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior

import gpvi
from gpvi.models.priors import UNIT_CUBE_SPREAD

DT = torch.float64


def _problem(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=DT)
    f = torch.sin(5 * X[:, :1]) + X.sum(-1, keepdim=True) ** 2
    Y = 3.0 * f + 2.0 + 0.1 * torch.randn(n, 1, generator=g, dtype=DT)  # off unit scale: Standardize matters
    return X, Y, torch.rand(200, d, generator=g, dtype=DT)


@pytest.mark.parametrize("n,d,seed", [(20, 1, 0), (30, 2, 1), (40, 3, 2), (25, 2, 3)])
def test_svgp_at_the_data_predicts_like_a_fitted_singletaskgp(n, d, seed):
    X, Y, Xs = _problem(n, d, seed)
    exact = SingleTaskGP(X, Y)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(exact.likelihood, exact))
    model = gpvi.SVGP(X, Y, inducing=X)
    result = gpvi.fit(model)
    assert result.stop_reason == "converged", result
    with torch.no_grad():
        ours, theirs = model.posterior(Xs), exact.posterior(Xs)
        scale = Y.std()
        assert (ours.mean - theirs.mean).abs().max() < 2e-3 * scale
        assert (ours.variance.sqrt() - theirs.variance.sqrt()).abs().max() < 2e-3 * scale
        ours_y = model.posterior(Xs, observation_noise=True).variance
        theirs_y = exact.posterior(Xs, observation_noise=True).variance
        assert ((ours_y - theirs_y).abs() / theirs_y).max() < 1e-2
    torch.testing.assert_close(
        model.model.covar_module.lengthscale, exact.covar_module.lengthscale, rtol=2e-2, atol=1e-3
    )


def test_default_modules_are_singletaskgps():
    X, Y, _ = _problem(30, 3, 0)
    model, exact = gpvi.SVGP(X, Y, num_inducing=10), SingleTaskGP(X, Y)
    kernel = model.model.covar_module
    assert type(kernel) is type(exact.covar_module) is RBFKernel
    for ours, theirs in [
        (kernel.lengthscale_prior, exact.covar_module.lengthscale_prior),
        (model.likelihood.noise_covar.noise_prior, exact.likelihood.noise_covar.noise_prior),
    ]:
        assert type(ours) is type(theirs) is LogNormalPrior
        torch.testing.assert_close(ours.loc, theirs.loc.to(ours.loc))
        torch.testing.assert_close(ours.scale, theirs.scale.to(ours.scale))
    torch.testing.assert_close(kernel.lengthscale, exact.covar_module.lengthscale.to(DT))
    torch.testing.assert_close(model.likelihood.noise, exact.likelihood.noise.to(DT))
    assert float(model.likelihood.noise_covar.raw_noise_constraint.lower_bound) == pytest.approx(1e-4)
    assert float(kernel.raw_lengthscale_constraint.lower_bound) == pytest.approx(0.025)
    torch.testing.assert_close(model.outcome_transform.means, exact.outcome_transform.means)
    torch.testing.assert_close(model.outcome_transform.stdvs, exact.outcome_transform.stdvs)


def test_a_classifier_learns_its_amplitude_under_botorchs_outputscale_prior():
    X, Y, _ = _problem(40, 2, 0)
    model = gpvi.DualSVGP(X, (Y > Y.median()).to(DT), likelihood=BernoulliLikelihood(), num_inducing=10)
    kernel = model.model.covar_module
    assert type(kernel) is ScaleKernel and type(kernel.base_kernel) is RBFKernel
    assert type(kernel.outputscale_prior) is GammaPrior and type(kernel.base_kernel.lengthscale_prior) is LogNormalPrior


@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_inputs_off_the_unit_cube_get_the_prior_in_units_of_their_spread(scale):
    X, Y, _ = _problem(30, 2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BoTorch's InputDataWarning: the inputs are off the unit cube
        model = gpvi.SVGP(X * scale, Y, inducing=X * scale)
    unit = gpvi.SVGP(X, Y, inducing=X)
    factor = (X * scale).std(0) / UNIT_CUBE_SPREAD
    kernel = model.model.covar_module
    torch.testing.assert_close(kernel.raw_lengthscale_constraint.lower_bound, 0.025 * factor)
    torch.testing.assert_close(
        kernel.lengthscale_prior.loc - factor.log(), unit.model.covar_module.lengthscale_prior.loc.expand(2)
    )


def test_the_input_scale_does_not_change_the_fit():
    """1e-4-wide and 1e4-wide copies of one problem are one problem in units of their spread."""
    X, Y, Xs = _problem(30, 2, 4)
    means = []
    for scale in (1e-4, 1e4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = gpvi.SVGP(X * scale, Y, inducing=X * scale)
            gpvi.fit(model)
        with torch.no_grad():
            means.append(model.posterior(Xs * scale).mean)
    assert (means[0] - means[1]).abs().max() < 1e-3 * Y.std()


def test_a_rescaled_kernel_follows_the_model_to_another_dtype():
    """The rescaled lengthscale constraint keeps its scale in a buffer: `.to(float32)` converts it too."""
    X, Y, Xs = _problem(30, 2, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = gpvi.SVGP(100 * X, Y, num_inducing=8).to(torch.float32)
        result = gpvi.fit(model, max_steps=20)
    assert model.model.covar_module.lengthscale.dtype == torch.float32 and not result.failed
    assert model.posterior((100 * Xs).float()).mean.dtype == torch.float32
