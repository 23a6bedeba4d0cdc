"""DualSVGP identities: exact GP, Titsias/SGPR, gpytorch's SVGP optimum, EP estimate, site round trips."""

import math

import gpytorch
import pytest
import torch
from gpytorch.likelihoods import BernoulliLikelihood, GaussianLikelihood, SoftmaxLikelihood, StudentTLikelihood
from gpytorch.mlls import VariationalELBO
from torch.testing import assert_close

import gpvi
from gpvi.baselines import GPyTorchSVGP
from gpvi.core import ExpPoissonLikelihood, GaussianSites
from tests.helpers import SVGP, DualSVGP, exact_gp, toy_data

DT = torch.float64


def _sparse_data(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=DT) * 4 - 2
    f = torch.sin(2 * X[:, 0]) + 0.5 * X[:, 1]
    return X, f, g


def _dense_titsias(model, X, y):
    """Dense SGPR (Titsias 2009): optimal q(u − μ(Z)) and the collapsed bound."""
    kern, mean = model.model.covar_module, model.model.mean_module
    Z = model.features.locations
    s2 = model.likelihood.noise.item()
    Kuu = kern(Z).to_dense() + model.strategy.jitter_val * torch.eye(Z.shape[0], dtype=DT)
    Kuf = kern(Z, X).to_dense()
    r = y - mean(X)
    Sigma = torch.linalg.inv(Kuu + Kuf @ Kuf.T / s2)
    m_u = Kuu @ Sigma @ Kuf @ r / s2
    S_u = Kuu @ Sigma @ Kuu
    Q = Kuf.T @ torch.linalg.solve(Kuu, Kuf)
    n = X.shape[0]
    bound = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=DT), Q + s2 * torch.eye(n, dtype=DT)).log_prob(
        r
    ) - (kern(X, diag=True).sum() - Q.trace()) / (2 * s2)
    return m_u, S_u, bound


# -- Gaussian: closed-form identities ------------------------------------------------------------
def test_one_full_step_at_data_is_the_exact_gp():
    X, Y = toy_data()
    model = DualSVGP(X, Y, outcome_transform=None, full_gp=True, jitter=1e-10)
    model.likelihood.noise = 0.05
    model.model.mean_module.constant.data.fill_(0.3)
    model.dual_step(step=1.0)
    Xs = torch.linspace(-4, 4, 7, dtype=DT).unsqueeze(-1)
    lml, mu, cov = exact_gp(model.model.covar_module, X, Y[:, 0], 0.05, 0.3, Xs)
    model.train()
    assert_close(model.elbo().elbo, lml, rtol=1e-7, atol=0)
    assert_close(model.ep_objective(), lml, rtol=1e-6, atol=0)
    assert_close(model.collapsed_elbo(), lml, rtol=1e-7, atol=0)
    post = model.posterior(Xs)
    assert_close(post.mean[:, 0], mu, rtol=1e-6, atol=1e-8)
    assert_close(post.mvn.covariance_matrix, cov, rtol=1e-6, atol=1e-8)


def test_one_full_step_with_fewer_inducing_points_is_titsias():
    X, f, g = _sparse_data()
    Y = (f + 0.1 * torch.randn(50, generator=g, dtype=DT)).unsqueeze(-1)
    model = DualSVGP(X, Y, outcome_transform=None, num_inducing=9)
    model.likelihood.noise = 0.04
    model.model.mean_module.constant.data.fill_(-0.2)
    model.dual_step(step=1.0)
    m_u, S_u, bound = _dense_titsias(model, X, Y[:, 0])
    with torch.no_grad():
        mean, cov = model.sites.posterior(model.strategy.chol_Kuu())
    assert_close(mean, m_u, rtol=1e-7, atol=1e-9)
    assert_close(cov, S_u, rtol=1e-7, atol=1e-9)
    model.train()
    assert_close(model.elbo().elbo, bound, rtol=1e-9, atol=0)
    assert_close(model.collapsed_elbo(), bound, rtol=1e-9, atol=0)


def test_minibatch_steps_over_an_epoch_sum_to_the_full_step():
    """With a Gaussian likelihood the N/B-scaled batch sites average to the full-data sites."""
    X, f, g = _sparse_data(60)
    Y = (f + 0.1 * torch.randn(60, generator=g, dtype=DT)).unsqueeze(-1)
    model = DualSVGP(X, Y, outcome_transform=None, num_inducing=8)
    full = model.dual_step(step=1.0)
    parts = [model.dual_step(X[i], Y[i, 0], step=0.0, num_data=60) for i in torch.randperm(60).split(15)]
    mean = parts[0].scaled(0.0)
    for p in parts:
        mean = mean + p.scaled(0.25)
    assert_close(mean.eta, full.eta)
    assert_close(mean.prec, full.prec)


def test_sites_in_u_space_are_exact_under_outputscale_changes():
    """Form (U) frozen: after an outputscale change the ELBO still equals the collapsed bound (note §1.6)."""
    X, f, g = _sparse_data()
    Y = (f + 0.1 * torch.randn(50, generator=g, dtype=DT)).unsqueeze(-1)
    dual = DualSVGP(X, Y, outcome_transform=None, num_inducing=9)
    plain = SVGP(X, Y, outcome_transform=None, num_inducing=9)
    plain.load_state_dict(
        {k: v for k, v in dual.state_dict().items() if "variational_strategy._variational" not in k}, strict=False
    )
    dual.dual_step(step=1.0)
    plain.train()
    plain.natural_gradient_step(X, Y[:, 0], step=1.0)  # the same optimal q, held as (m, S)
    with torch.no_grad():
        dual.model.covar_module.outputscale = dual.model.covar_module.outputscale * 3.0
        plain.model.covar_module.outputscale = plain.model.covar_module.outputscale * 3.0
    dual.train()
    assert_close(dual.elbo().elbo, dual.collapsed_elbo(), rtol=1e-9, atol=0)
    assert plain.elbo().elbo < dual.elbo().elbo - 1.0  # whitened (m, S) frozen is looser


def test_collapsed_recipe_maximises_the_bound_and_writes_exact_sites():
    X, f, g = _sparse_data(80)
    Y = (f + 0.1 * torch.randn(80, generator=g, dtype=DT)).unsqueeze(-1)
    model = DualSVGP(X, Y, outcome_transform=None, num_inducing=10)
    result = gpvi.fit(model, max_steps=200)  # default recipe: "cvi" with the collapsed objective
    assert result.final_elbo > result.history[0]["elbo"] + 10
    model.train()
    assert_close(model.elbo().elbo, model.collapsed_elbo(), rtol=1e-6, atol=0)
    grads = torch.autograd.grad(model.collapsed_elbo(), [model.model.covar_module.raw_outputscale])
    assert grads[0].abs().item() < 1e-2  # a stationary point of the bound


# -- non-conjugate: the CVI fixed point is the SVGP optimum --------------------------------------
def _gpytorch_twin(model, likelihood):
    """gpytorch's own SVGP with the same Z, kernel, mean and q(u) as ``model`` (whitened Cholesky q)."""
    Z = model.features.locations.detach()
    twin = GPyTorchSVGP(Z, kernel=_copy(model.model.covar_module), mean_module=_copy(model.model.mean_module))
    L = model.strategy.chol_Kuu().detach()
    mean_v, tril_v = model.strategy.whitened_q(L)
    q = twin.variational_strategy._variational_distribution
    with torch.no_grad():
        q.variational_mean.copy_(mean_v)
        q.chol_variational_covar.copy_(tril_v)
    twin.variational_strategy.variational_params_initialized.fill_(1)
    return twin


class ExactProbit(BernoulliLikelihood):
    """gpytorch's Bernoulli with log Φ by `torch.special.log_ndtr`.

    gpytorch's `log_normal_cdf` is off by up to 5e-5 in value and 1e-4 in slope near z = −2.5, which
    moves the optimum of its ELBO by that much; gpvi integrates `log_ndtr` (exact to float64).
    """

    def expected_log_prob(self, observations, function_dist, *args, **kwargs):
        signs = observations.mul(2).sub(1)
        return self.quadrature(lambda f: torch.special.log_ndtr(f.mul(signs)), function_dist)


def _copy(module):
    import copy

    return copy.deepcopy(module)


@pytest.mark.parametrize("likelihood_name", ["bernoulli", "poisson"])
def test_cvi_fixed_point_is_the_optimum_of_gpytorchs_svgp_elbo(likelihood_name):
    X, f, g = _sparse_data(60, seed=1)
    if likelihood_name == "bernoulli":
        likelihood = ExactProbit()
        Y = torch.bernoulli(torch.special.ndtr(2 * f), generator=g).unsqueeze(-1)
    else:
        likelihood = ExpPoissonLikelihood()
        Y = torch.poisson(torch.exp(f), generator=g).unsqueeze(-1)
    model = DualSVGP(X, Y, likelihood=likelihood, num_inducing=10, learn_inducing=False)
    model.model.mean_module.constant.data.fill_(0.3)  # sites are centred on a non-zero prior mean
    for _ in range(150):
        model.dual_step(step=0.7)
    twin = _gpytorch_twin(model, likelihood)
    twin.train()
    mll = VariationalELBO(likelihood, twin, num_data=60)
    loss = -mll(twin(X), Y[:, 0]) * 60  # gpytorch's 20-node Gauss–Hermite, as gpvi's
    q = twin.variational_strategy._variational_distribution
    grads = torch.autograd.grad(loss, [q.variational_mean, q.chol_variational_covar], retain_graph=True)
    assert grads[0].abs().max() < 1e-5
    assert grads[1].tril().abs().max() < 1e-5
    # and at the optimum both parameterisations give the same hyperparameter gradient
    model.train()
    ours = torch.autograd.grad(model.elbo().elbo, [model.model.covar_module.base_kernel.raw_lengthscale])[0]
    theirs = torch.autograd.grad(-loss, [twin.covar_module.base_kernel.raw_lengthscale])[0]
    assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_cvi_matches_gpytorch_natural_gradient_steps():
    """ρ-steps of CVI equal gpytorch's NGD steps of the same size on a NaturalVariationalDistribution."""
    X, f, g = _sparse_data(40, seed=2)
    Y = torch.bernoulli(torch.special.ndtr(2 * f), generator=g).unsqueeze(-1)
    likelihood = ExactProbit()
    model = DualSVGP(X, Y, likelihood=likelihood, num_inducing=8, learn_inducing=False)
    Z = model.features.locations.detach()
    twin = GPyTorchSVGP(
        Z, kernel=_copy(model.model.covar_module), mean_module=_copy(model.model.mean_module), natural=True
    )
    mll = VariationalELBO(likelihood, twin, num_data=40)
    ngd = gpytorch.optim.NGD(list(twin.variational_parameters()), num_data=40, lr=0.5)
    twin.train()
    q = twin.variational_strategy._variational_distribution
    with torch.no_grad():  # start exactly at the prior (gpytorch's initialisation adds noise to the mean)
        q.natural_vec.zero_()
        q.natural_mat.copy_(-0.5 * torch.eye(8, dtype=DT))
    twin.variational_strategy.variational_params_initialized.fill_(1)
    for _ in range(5):
        model.dual_step(step=0.5)
        ngd.zero_grad()
        (-mll(twin(X), Y[:, 0])).backward()
        ngd.step()
    L = model.strategy.chol_Kuu().detach()
    mean_v, tril_v = model.strategy.whitened_q(L)
    theirs = twin.variational_strategy._variational_distribution()
    assert_close(mean_v, theirs.mean, rtol=1e-5, atol=1e-6)
    assert_close(tril_v @ tril_v.mT, theirs.covariance_matrix, rtol=1e-5, atol=1e-6)


def test_ep_estimate_is_above_the_elbo_at_the_fixed_point_for_probit():
    """Li et al.: at the CVI fixed point the EP-like estimate exceeds the ELBO (note, check 8)."""
    X, f, g = _sparse_data(40, seed=3)
    Y = torch.bernoulli(torch.special.ndtr(f), generator=g).unsqueeze(-1)
    model = DualSVGP(X, Y, likelihood=BernoulliLikelihood(), full_gp=True)
    for _ in range(50):
        model.dual_step(step=0.8)
    model.train()
    elbo, ep = model.elbo().elbo, model.ep_objective()
    assert ep > elbo
    assert ep - elbo < 0.1 * abs(elbo)


# -- sites ---------------------------------------------------------------------------------------
def test_sites_from_a_posterior_and_back_reproduce_it():
    X, f, g = _sparse_data()
    Y = f.unsqueeze(-1)
    model = DualSVGP(X, Y, outcome_transform=None, num_inducing=7)
    L = model.strategy.chol_Kuu().detach()
    mean = torch.randn(7, generator=g, dtype=DT)
    tril = torch.tril(torch.randn(7, 7, generator=g, dtype=DT)) * 0.3 + torch.eye(7, dtype=DT) * 0.5
    tril = tril * torch.sign(tril.diagonal()).unsqueeze(0)
    model.strategy.set_q(mean, tril, chol_Kuu=L)
    mean2, tril2 = model.strategy.whitened_q(L)
    assert_close(mean2, mean)
    assert_close(tril2 @ tril2.mT, tril @ tril.mT)
    assert torch.equal(tril2, tril2.tril())


def test_whitened_posterior_root_is_lower_triangular_and_exact():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 6, generator=g, dtype=DT)
    sites = GaussianSites(torch.randn(6, generator=g, dtype=DT), A @ A.T)
    mean, root = sites.whitened_posterior()
    cov = torch.linalg.inv(torch.eye(6, dtype=DT) + A @ A.T)
    assert torch.equal(root, root.tril())
    assert_close(root @ root.T, cov)
    assert_close(mean, cov @ sites.eta)


def test_state_dict_round_trip_keeps_the_sites():
    X, Y = toy_data()
    model = DualSVGP(X, Y, outcome_transform=None, num_inducing=6)
    model.dual_step(step=1.0)
    other = DualSVGP(X, Y, outcome_transform=None, num_inducing=6)
    other.load_state_dict(model.state_dict())
    Xs = torch.linspace(-2, 2, 5, dtype=DT).unsqueeze(-1)
    assert_close(other.posterior(Xs).mean, model.posterior(Xs).mean)


# -- likelihoods, fitting, BoTorch ---------------------------------------------------------------
@pytest.mark.parametrize("objective,full_gp", [("elbo", True), ("ep", True), ("ep", False)])
def test_classification_fit_improves_both_objectives(objective, full_gp):
    X, f, g = _sparse_data(120, seed=4)
    Y = (f + 0.3 * torch.randn(120, generator=g, dtype=DT) > 0).to(DT).unsqueeze(-1)
    model = DualSVGP(X, Y, likelihood=BernoulliLikelihood(), full_gp=full_gp, num_inducing=16)
    result = gpvi.fit(model, objective=objective, max_steps=80, lr=0.05, ngd_step=0.5)
    values = result.column("objective")
    assert max(values) > values[0] + 1  # restore-best keeps the state with the best objective
    post = model.posterior(X)
    accuracy = ((post.mean[:, 0] > 0).to(DT) == Y[:, 0]).to(DT).mean()
    assert accuracy > 0.85


def test_student_t_and_softmax_sites_stay_proper():
    X, f, g = _sparse_data(90, seed=5)
    Y = (f + 0.1 * torch.randn(90, generator=g, dtype=DT)).unsqueeze(-1)
    Y[::15] += 5.0  # outliers: Student-t is not log-concave, sites need the β clamp
    model = DualSVGP(X, Y, likelihood=StudentTLikelihood(), num_inducing=12)
    result = gpvi.fit(model, max_steps=60, ngd_step=0.3, lr=0.05)
    assert math.isfinite(result.final_objective)
    assert torch.linalg.eigvalsh(model.sites.prec).min() > -1e-8
    labels = (f > 0.5).to(DT) + (f > -0.5).to(DT)  # 3 classes
    soft = DualSVGP(
        X, labels.unsqueeze(-1), likelihood=SoftmaxLikelihood(num_classes=3, mixing_weights=False), num_inducing=12
    )
    result = gpvi.fit(soft, max_steps=40, ngd_step=0.5, lr=0.05)
    assert result.column("objective")[-1] > result.column("objective")[0]
    assert soft.sites.eta.shape == (3, 12)
    predicted = soft.posterior(X).mean.argmax(-1)
    assert (predicted == labels.long()).to(DT).mean() > 0.8


def test_pathwise_draws_match_the_posterior_moments():
    from botorch.sampling.pathwise import draw_matheron_paths

    X, f, g = _sparse_data(40, seed=6)
    model = DualSVGP(X, f.unsqueeze(-1), outcome_transform=None, num_inducing=10)
    gpvi.fit(model, max_steps=30)
    torch.manual_seed(0)
    paths = draw_matheron_paths(model, sample_shape=torch.Size([4000]))
    Xs = torch.tensor([[0.2, -0.3], [1.0, 1.0]], dtype=DT)
    with torch.no_grad():
        draws = paths(Xs)
        post = model.posterior(Xs)
    assert_close(draws.mean(0), post.mean[:, 0], atol=0.05, rtol=0)
    assert_close(draws.var(0), post.variance[:, 0], atol=0.05, rtol=0.1)


def test_update_absorbs_points_and_bad_options_are_named():
    X, Y = toy_data(20)
    model = DualSVGP(X, Y, outcome_transform=None, num_inducing=20)
    gpvi.fit(model, max_steps=20)
    model.append(torch.tensor([[0.25]], dtype=DT), torch.tensor([[0.8]], dtype=DT))
    assert model.num_data == 21
    model.train()  # append absorbs the point exactly: q is the optimal q on all 21 points at the same θ
    assert_close(model.elbo().elbo, model.collapsed_elbo() + model.log_prior(), rtol=1e-9, atol=0)
    with pytest.raises(TypeError, match="gpvi.fit"):
        model.append(torch.tensor([[0.5]], dtype=DT), torch.tensor([[0.1]], dtype=DT), max_steps=5)
    with pytest.raises(TypeError, match="max_steps"):
        model.update(torch.tensor([[0.5]], dtype=DT), torch.tensor([[0.1]], dtype=DT), max_steps=5)
    with pytest.raises(ValueError, match="dual model"):
        gpvi.fit(SVGP(X, Y, num_inducing=5), objective="ep")
    with pytest.raises(ValueError, match="GaussianLikelihood"):
        gpvi.fit(DualSVGP(X, (Y > 0).to(DT), likelihood=BernoulliLikelihood(), num_inducing=5), objective="collapsed")
    with pytest.raises(TypeError, match="whiten"):
        DualSVGP(X, Y, whiten=False)
    with pytest.raises(ValueError, match="dual model"):
        gpvi.fit(SVGP(X, Y, num_inducing=5), optimizer="cvi")
    assert isinstance(model.likelihood, GaussianLikelihood)


def test_bayes_opt_runs_with_the_dual_factory():
    from botorch.test_functions import Branin

    problem = Branin(negate=True).to(DT)
    loop = gpvi.BayesOpt(problem.bounds, "dual-svgp", seed=0, num_initial=6)
    loop.run(lambda x: problem(x).unsqueeze(-1), 4)
    assert loop.best[1] > -5.0


@pytest.mark.parametrize("full_gp", [True, False])
def test_power_ep_energy_tends_to_the_elbo_as_the_power_vanishes(full_gp):
    """Power EP with a → 0 is variational inference: the energy at the CVI fixed point → the ELBO."""
    X, f, g = _sparse_data(60, seed=3)
    Y = torch.bernoulli(torch.special.ndtr(2 * f), generator=g).unsqueeze(-1)
    model = DualSVGP(X, Y, likelihood=BernoulliLikelihood(), num_inducing=12, full_gp=full_gp)
    for _ in range(100):
        model.dual_step(step=0.7)
    model.train()
    with torch.no_grad():
        elbo = model.elbo().elbo
        energies = [model.ep_objective(power=a) for a in (1.0, 0.1, 1e-3)]
    assert energies[0] > energies[1] > energies[2] > elbo - 1e-6
    assert_close(energies[2], elbo, rtol=1e-3, atol=0)


def test_ep_m_step_objective_is_the_exact_lml_at_any_theta_for_gaussian_data():
    """Sites held fixed and q rebuilt from them at θ: with exact Gaussian sites and Z = X the energy
    is the exact log marginal likelihood at every θ, gradient included (Li et al.'s full-GP M-step)."""
    X, Y = toy_data(20)
    model = DualSVGP(X, Y, outcome_transform=None, full_gp=True, jitter=1e-10)
    model.likelihood.noise = 0.05
    model.model.mean_module.constant.data.fill_(0.3)
    model.dual_step(step=1.0)
    with torch.no_grad():  # move θ away from where the E-step ran
        model.model.covar_module.base_kernel.lengthscale = model.model.covar_module.base_kernel.lengthscale * 1.7
        model.model.covar_module.outputscale = 2.0
    model.train()
    raw = model.model.covar_module.raw_outputscale
    ep = model.ep_objective()
    lml, _, _ = exact_gp(model.model.covar_module, X, Y[:, 0], 0.05, 0.3, X)
    assert_close(ep, lml, rtol=1e-6, atol=0)
    assert_close(torch.autograd.grad(ep, raw)[0], torch.autograd.grad(lml, raw)[0], rtol=1e-5, atol=1e-8)


def test_cvi_m_steps_keep_the_inducing_inputs_unless_asked():
    """The u-space sites are tied to Z: the ELBO/EP recipes hold Z fixed by default."""
    from gpytorch.likelihoods import BernoulliLikelihood

    gen = torch.Generator().manual_seed(3)
    X = torch.rand(60, 4, generator=gen, dtype=DT)
    Y = (X.sum(-1, keepdim=True) > 2).to(DT)
    for learn, moved in ((False, False), (True, True)):
        model = DualSVGP(X, Y, likelihood=BernoulliLikelihood(), num_inducing=10)
        Z0 = model.features.Z.detach().clone()
        gpvi.fit(model, max_steps=5, lr=0.05, learn_inducing=learn, early_stopping=False)
        assert (not torch.equal(model.features.Z, Z0)) is moved
