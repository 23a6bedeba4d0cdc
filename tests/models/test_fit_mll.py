"""`botorch.fit.fit_gpytorch_mll` on gpvi models: the mll names the objective, BoTorch's option names map.

Known answers: the exact-mll fit equals `gpvi.fit(model, objective="collapsed")` parameter for
parameter; the PLL equals Σ_n log N(y_n; m_n, v_n + σ²) − β KL + log p(θ) from dense algebra
(Jankowiak, Pleiss & Gardner 2020); each recipe step's parts satisfy value = data − β·KL + log prior
with β the mll's beta.
"""

import math
import warnings

import pytest
import torch
from botorch.fit import fit_gpytorch_mll
from gpytorch.mlls import (
    DeepApproximateMLL,
    ExactMarginalLogLikelihood,
    GammaRobustVariationalELBO,
    LeaveOneOutPseudoLikelihood,
    PredictiveLogLikelihood,
    VariationalELBO,
)
from torch.testing import assert_close

import gpvi
from gpvi import SVGP, DualSVGP
from gpvi.fit import fit_mll
from gpvi.fit.mll import map_options, objective_recipe
from gpvi.variational.elbo import predictive_log_likelihood

DT = torch.float64


def _data(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=DT)
    Y = (torch.sin(5 * X[:, :1]) + X[:, 1:]) + 0.05 * torch.randn(n, 1, generator=g, dtype=DT)
    return X, Y


def _svgp(**kw):
    X, Y = _data()
    return SVGP(X, Y, num_inducing=8, **kw)


def test_exact_mll_fits_the_collapsed_bound_with_botorch_maxiter():
    X, Y = _data()
    a = SVGP(X, Y, num_inducing=X.shape[0], learn_inducing=False)
    b = SVGP(X, Y, num_inducing=X.shape[0], learn_inducing=False)
    out = fit_gpytorch_mll(
        ExactMarginalLogLikelihood(a.likelihood, a.model), optimizer_kwargs={"options": {"maxiter": 30}}
    )
    assert not out.training
    gpvi.fit(b, objective="collapsed", max_steps=30)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        # hyperparameters agree bitwise; q, written by one solve at the end, to round-off (threaded BLAS)
        assert_close(pa, pb, rtol=1e-10, atol=1e-12, equal_nan=True, msg=name)


def test_predictive_log_likelihood_equals_the_dense_formula():
    model = _svgp()
    gpvi.fit(model, max_steps=5, lr=0.1)  # a q away from its initial value
    model.train()
    X, y = model.training_data()
    beta = 0.1
    parts = predictive_log_likelihood(
        model.strategy, model.likelihood, X, y, num_data=X.shape[0], kl_weight=beta, log_prior=model.log_prior()
    )
    # dense: whitened q(v) = N(m, S), a_n = L⁻¹ k(Z, x_n); f_n ~ N(μ₀ + a_nᵀm, k_nn − a_nᵀa_n + a_nᵀ S a_n)
    strategy, kernel = model.strategy, model.model.covar_module
    Z = strategy.features.locations
    M = Z.shape[0]
    L = torch.linalg.cholesky(kernel(Z).to_dense() + strategy.jitter_val * torch.eye(M, dtype=DT))
    A = torch.linalg.solve_triangular(L, kernel(Z, X).to_dense(), upper=False)
    m, L_S = strategy.whitened_q(L)
    S = L_S @ L_S.T
    mean = model.model.mean_module(X) + A.T @ m
    var = kernel(X, diag=True) - (A * A).sum(0) + (A * (S @ A)).sum(0)
    total = var + model.likelihood.noise
    lpd = (-0.5 * (torch.log(2 * math.pi * total) + (y - mean) ** 2 / total)).sum()
    kl = 0.5 * (torch.trace(S) + m @ m - M - torch.logdet(S))
    want = lpd - beta * kl + model.log_prior()
    assert_close(parts.pll, want, rtol=1e-10, atol=1e-10)
    assert_close(parts.kl, kl, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("mll_cls", "key", "data_key"),
    [(PredictiveLogLikelihood, "pll", "log_predictive"), (VariationalELBO, "elbo", "expected_log_lik")],
)
def test_beta_reaches_the_kl_weight_of_the_objective(mll_cls, key, data_key):
    model = _svgp()
    seen = []

    def callback(step, parts):
        seen.append(parts)

    mll = mll_cls(model.likelihood, model.model, num_data=model.num_data, beta=0.3)
    fit_gpytorch_mll(mll, optimizer_kwargs={"step_limit": 4, "lr": 0.05, "callback": callback})
    assert len(seen) == 4 and key in seen[0]._fields
    for parts in seen:
        p = parts._asdict()
        assert_close(p[key], p[data_key] - 0.3 * p["kl"] + p["log_prior"])


def test_pll_fit_changes_the_objective_it_reports():
    model = _svgp()
    mll = PredictiveLogLikelihood(model.likelihood, model.model, num_data=model.num_data, beta=0.1)
    history = []
    fit_gpytorch_mll(
        mll, optimizer_kwargs={"options": {"maxiter": 30}, "lr": 0.05, "callback": lambda s, p: history.append(p)}
    )
    assert history[-1].pll > history[0].pll + 1.0


def test_recipe_choice_follows_the_mll_and_the_model():
    svgp = _svgp()
    X, Y = _data()
    dual = DualSVGP(X, Y, num_inducing=8)  # Gaussian: default "collapsed"
    elbo = lambda m, beta=1.0: VariationalELBO(m.likelihood, m.model, num_data=m.num_data, beta=beta)
    pll = PredictiveLogLikelihood(svgp.likelihood, svgp.model, num_data=svgp.num_data, beta=0.5)
    assert objective_recipe(svgp, elbo(svgp, 0.5)) == ("adam", {"objective": "elbo", "kl_weight": 0.5})
    assert objective_recipe(dual, elbo(dual)) == ("collapsed", {})
    assert objective_recipe(dual, elbo(dual, 0.5)) == ("cvi", {"objective": "elbo", "kl_weight": 0.5})
    assert objective_recipe(svgp, pll) == ("adam", {"objective": "pll", "kl_weight": 0.5})
    assert objective_recipe(svgp, pll, "ngd") == ("ngd", {"objective": "pll", "kl_weight": 0.5})
    assert objective_recipe(svgp, ExactMarginalLogLikelihood(svgp.likelihood, svgp.model)) == ("collapsed", {})


def test_option_mapping():
    assert map_options({"options": {"maxiter": 7}, "lr": 0.05}) == {"max_steps": 7, "lr": 0.05}
    assert map_options({"step_limit": 9, "batch_size": 4, "optimizer": "ngd"}) == {
        "max_steps": 9,
        "batch_size": 4,
        "optimizer": "ngd",
    }
    with pytest.raises(TypeError, match="accepted: .*'lr'.*'max_steps'.*'options'.*'step_limit'"):
        map_options({"maxiter": 5})
    with pytest.raises(TypeError, match="only 'maxiter'"):
        map_options({"options": {"maxiter": 5, "ftol": 1e-9}})
    with pytest.raises(TypeError, match="twice"):
        map_options({"options": {"maxiter": 5}, "max_steps": 6})
    with pytest.raises(TypeError, match="names a gpvi recipe"):
        map_options({"optimizer": torch.optim.Adam})


def test_gpvi_option_names_and_botorch_maxiter_set_the_step_count():
    model = _svgp()
    result = fit_mll(
        model,
        VariationalELBO(model.likelihood, model.model, num_data=model.num_data),
        optimizer_kwargs={"options": {"maxiter": 6}, "early_stopping": False, "optimizer": "ngd"},
    )
    assert len(result.history) == 6 and "elbo" in result.history[0]


@pytest.mark.parametrize(
    "make",
    [
        lambda m: GammaRobustVariationalELBO(m.likelihood, m.model, num_data=m.num_data),
        lambda m: DeepApproximateMLL(VariationalELBO(m.likelihood, m.model, num_data=m.num_data)),
        lambda m: LeaveOneOutPseudoLikelihood(m.likelihood, m.model),
    ],
    ids=["gamma-robust", "deep", "leave-one-out"],
)
def test_other_mlls_are_refused_with_what_to_pass(make):
    model = _svgp()
    with pytest.raises(TypeError, match="VariationalELBO.*PredictiveLogLikelihood"):
        fit_mll(model, make(model))


def test_refusals_name_the_problem():
    model, other = _svgp(), _svgp()
    elbo = VariationalELBO(model.likelihood, model.model, num_data=model.num_data)
    with pytest.raises(TypeError, match="another model"):
        model.custom_fit(VariationalELBO(other.likelihood, other.model, num_data=other.num_data))
    with pytest.raises(ValueError, match="num_data=5"):
        fit_gpytorch_mll(VariationalELBO(model.likelihood, model.model, num_data=5))
    with pytest.raises(TypeError, match="set `beta` on the mll"):
        fit_gpytorch_mll(elbo, optimizer_kwargs={"kl_weight": 0.5})
    with pytest.raises(TypeError, match="the mll defines the objective"):
        fit_gpytorch_mll(elbo, optimizer_kwargs={"objective": "pll"})
    with pytest.raises(TypeError, match=r"\['adam', 'ngd'\], not 'collapsed'"):
        fit_gpytorch_mll(
            PredictiveLogLikelihood(model.likelihood, model.model, num_data=model.num_data),
            optimizer_kwargs={"recipe": "collapsed"},
        )
    with pytest.raises(TypeError, match="not a closure"):
        fit_gpytorch_mll(elbo, closure=lambda: None)


def test_botorch_fallback_keywords_warn():
    model = _svgp()
    mll = VariationalELBO(model.likelihood, model.model, num_data=model.num_data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_gpytorch_mll(mll, optimizer_kwargs={"step_limit": 2}, max_attempts=3)
    assert any("['max_attempts'] are not used" in str(w.message) for w in caught)
