"""SingleTaskGP's priors on a gpvi SVGP, and the closed-form (collapsed) SVGP fit.

Known answers: with Z = X fixed, the collapsed bound is the exact log marginal likelihood, so the
collapsed MAP fit of an SVGP with SingleTaskGP's kernel and priors reaches SingleTaskGP's own MAP
hyperparameters and posterior (fitted by BoTorch's scipy L-BFGS-B).
"""

from __future__ import annotations

import pytest
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch.testing import assert_close

import gpvi
from gpvi import SVGP
from gpvi.loops import SVGPFactory
from gpvi.models.priors import singletaskgp_modules, transformed_constraints

DT = torch.float64


def _data(n: int = 40, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=gen, dtype=DT)
    Y = torch.sin(5 * X).sum(-1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=gen, dtype=DT)
    return X, (Y - Y.mean()) / Y.std()


def test_transformed_constraints_keep_values_and_priors_and_bound_gradient_steps():
    kernel = get_covar_module_with_dim_scaled_prior(ard_num_dims=3).to(DT)
    assert not kernel.raw_lengthscale_constraint.enforced  # BoTorch's own bound is not a transform
    before = kernel.lengthscale.detach().clone()
    safe = transformed_constraints(kernel)
    assert safe is kernel and kernel.raw_lengthscale_constraint.enforced
    assert_close(kernel.lengthscale, before, rtol=1e-9, atol=0)
    assert_close(kernel.raw_lengthscale_constraint.lower_bound, torch.tensor(0.025, dtype=DT))
    assert [name for name, *_ in kernel.named_priors()] == ["lengthscale_prior"]
    with torch.no_grad():  # a huge step on the raw parameter stays feasible
        kernel.raw_lengthscale.sub_(1e3)
    assert bool((kernel.lengthscale >= 0.025).all()) and kernel.lengthscale.dtype == DT


def test_singletaskgp_modules_match_botorchs_priors_and_initial_values():
    kernel, likelihood = singletaskgp_modules(4)
    reference = SingleTaskGP(torch.rand(5, 4, dtype=DT), torch.rand(5, 1, dtype=DT))
    assert_close(kernel.lengthscale, reference.covar_module.lengthscale.detach(), rtol=1e-9, atol=0)
    assert_close(likelihood.noise, reference.likelihood.noise.detach(), rtol=1e-9, atol=0)
    value = torch.full((1, 4), 0.7, dtype=DT)
    assert_close(kernel.lengthscale_prior.log_prob(value), reference.covar_module.lengthscale_prior.log_prob(value))
    assert kernel.lengthscale.dtype == DT and likelihood.noise.dtype == DT


def test_collapsed_svgp_fit_with_z_equal_x_reaches_singletaskgps_map_fit():
    X, Y = _data()
    exact = SingleTaskGP(X, Y, outcome_transform=None)
    mll = ExactMarginalLogLikelihood(exact.likelihood, exact)
    fit_gpytorch_mll(mll)
    kernel, likelihood = singletaskgp_modules(X.shape[-1])
    model = SVGP(
        X,
        Y,
        outcome_transform=None,
        likelihood=likelihood,
        kernel=kernel,
        num_inducing=X.shape[0],
        learn_inducing=False,
    )
    result = gpvi.fit(model, objective="collapsed", max_steps=300)
    assert result.stop_reason == "converged"
    exact.train()
    map_exact = mll(exact(X), Y[:, 0]) * X.shape[0]  # gpytorch's MLL includes the log priors
    model.train()
    map_svgp = (model.collapsed_elbo() + model.log_prior()).detach()
    assert_close(map_svgp, map_exact.detach(), rtol=0, atol=1e-2)  # both optimisers reach the same MAP value
    assert_close(model.model.covar_module.lengthscale, exact.covar_module.lengthscale, rtol=2e-3, atol=0)
    assert_close(model.likelihood.noise, exact.likelihood.noise, rtol=2e-2, atol=0)
    exact.eval()
    Xs = torch.rand(6, X.shape[-1], dtype=DT)
    assert_close(model.posterior(Xs).mean, exact.posterior(Xs).mean, rtol=0, atol=2e-3)
    assert_close(model.posterior(Xs).variance, exact.posterior(Xs).variance, rtol=0, atol=2e-3)


def test_collapsed_fit_leaves_q_optimal_and_adds_the_log_prior():
    X, Y = _data(n=50)
    kernel, likelihood = singletaskgp_modules(X.shape[-1])
    model = SVGP(X, Y, outcome_transform=None, likelihood=likelihood, kernel=kernel, num_inducing=15)
    result = gpvi.fit(model, objective="collapsed", max_steps=60)
    model.train()
    bound = model.collapsed_elbo()
    assert_close(model.elbo().elbo, bound + model.log_prior(), rtol=1e-8, atol=0)  # q is the closed-form optimum
    # the model holds the best state L-BFGS evaluated (its last trial point may be worse)
    best = max(result.column("elbo"))  # every recipe's "elbo" includes the log prior
    assert_close(torch.tensor(best, dtype=DT), (bound + model.log_prior()).detach(), rtol=1e-6, atol=0)
    assert model.log_prior() != 0
    with pytest.raises(ValueError, match="closed form"):
        gpvi.fit(model, objective="collapsed", optimizer="adam")


def test_svgp_factory_options():
    X, Y = _data(n=20, d=2)
    bounds = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=DT)
    default = SVGPFactory(max_steps=30).fit(X, Y, bounds)
    assert type(default.model.covar_module).__name__ == "RBFKernel"
    assert default.model.covar_module.raw_lengthscale_constraint.enforced
    assert SVGPFactory(warm_start=False).warm_state(default) is None
    warm = SVGPFactory().warm_state(default)  # used only once n > M (cold like SingleTaskGP before)
    ls = "model.covar_module.raw_lengthscale"
    shifted = {**warm, ls: warm[ls] + 1.0}
    one = {"max_steps": 1, "warm_steps": 1}
    lengthscale = lambda factory, state: factory.fit(X, Y, bounds, state).model.covar_module.raw_lengthscale
    assert torch.equal(lengthscale(SVGPFactory(**one), shifted), lengthscale(SVGPFactory(**one), None))
    sparse = SVGPFactory(num_inducing=8, **one)
    assert not torch.allclose(lengthscale(sparse, shifted), lengthscale(sparse, None))
    assert not default.features.Z.requires_grad  # n <= M: Z = X, the bound's maximum over Z
    assert_close(default.features.Z, default.train_X_model)
    assert SVGPFactory(num_inducing=8, max_steps=5).fit(X, Y, bounds).features.Z.requires_grad
    matern = SVGPFactory(max_steps=5, kernel="matern", fit="ngd").fit(X, Y, bounds)
    assert type(matern.model.covar_module).__name__ == "ScaleKernel"
    warm = SVGPFactory(kernel="matern", fit="ngd").warm_state(matern)
    assert warm and all(k.startswith(("model.mean_module", "model.covar_module", "likelihood")) for k in warm)
    with pytest.raises(ValueError, match="kernel"):
        SVGPFactory(kernel="rbf")
    with pytest.raises(ValueError, match="fit"):
        SVGPFactory(fit="adam")
