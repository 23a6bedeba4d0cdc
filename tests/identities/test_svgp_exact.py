"""SVGP identities against an exact GP in dense algebra (float64), beyond the shared contract.

The contract checks (exact GP at the data, sites, conditioning, minibatch ELBO, KL, state) run on
every strategy in `tests/variational/test_contract.py`."""

import io
import pickle

import pytest
import torch
from torch.testing import assert_close

from gpvi.core import ep_log_marginal, expected_log_prob_and_grads, sites_from_grads
from tests.helpers import SVGP, exact_gp, optimal_svgp_at_data, toy_data


def test_elbo_is_below_lml_before_the_step_and_jitter_bias_is_bounded():
    X, Y = toy_data()
    model = SVGP(X, Y, outcome_transform=None, num_inducing=X.shape[0], learn_inducing=False, jitter=1e-10)
    model.likelihood.noise = 0.05
    lml, _, _ = exact_gp(model.model.covar_module, X, Y[:, 0], 0.05, model.model.mean_module.constant.item(), X)
    model.train()
    assert model.elbo(X, Y[:, 0]).elbo < lml - 1.0


@pytest.mark.parametrize("whiten", [True, False])
def test_whitened_and_unwhitened_parameterisations_agree(whiten):
    X, Y = toy_data()
    model = SVGP(
        X, Y, outcome_transform=None, num_inducing=X.shape[0], learn_inducing=False, jitter=1e-10, whiten=whiten
    )
    model.likelihood.noise = 0.05
    model.train()
    model.natural_gradient_step(X, Y[:, 0], step=1.0)
    elbo = model.elbo(X, Y[:, 0]).elbo
    lml, _, _ = exact_gp(model.model.covar_module, X, Y[:, 0], 0.05, model.model.mean_module.constant.item(), X)
    assert_close(elbo, lml, rtol=1e-6, atol=0)


def test_ep_estimate_equals_exact_lml_for_gaussian_at_data():
    X, Y = toy_data()
    model = optimal_svgp_at_data(X, Y)
    lml, _, _ = exact_gp(model.model.covar_module, X, Y[:, 0], 0.05, 0.3, X)
    s = model.strategy
    with torch.no_grad():
        marg = s.marginals(X)
        A = torch.linalg.solve_triangular(marg.chol_Kuu, marg.Kuf, upper=False)
        mean_v, tril_v = s.whitened_q(marg.chol_Kuu)
        g = expected_log_prob_and_grads(model.likelihood, Y[:, 0], marg.prior_mean + marg.centred_mean, marg.var)
        alpha, beta = sites_from_grads(marg.centred_mean, g.d_mean, g.d_var)
        ep = ep_log_marginal(
            model.likelihood,
            Y[:, 0],
            prior_mean=marg.prior_mean,
            proj_mean=marg.centred_mean,
            proj_var=((tril_v.mT @ A) ** 2).sum(-2),
            cond_var=model.model.covar_module(X, diag=True) - (A**2).sum(-2),
            alpha=alpha,
            beta=beta,
            q_mean=mean_v,
            q_scale_tril=tril_v,
            num_data=X.shape[0],
        )
    assert_close(ep, lml, rtol=1e-6, atol=0)


def test_condition_on_observations_is_exact_conditioning_of_a_sparse_posterior():
    """With M < N the conditioned model is the SVGP process conditioned on the new data."""
    torch.manual_seed(3)
    X = torch.rand(40, 1, dtype=torch.float64) * 6 - 3
    Y = torch.sin(2 * X) + 0.1 * torch.randn(40, 1, dtype=torch.float64)
    model = SVGP(X, Y, outcome_transform=None, num_inducing=8)
    model.likelihood.noise = 0.05
    model.train()
    model.natural_gradient_step(X, Y[:, 0], step=1.0)
    model.eval()
    Xn, Yn = torch.tensor([[0.1], [2.0]], dtype=torch.float64), torch.tensor([[0.4], [-0.2]], dtype=torch.float64)
    Xs = torch.linspace(-3, 3, 6, dtype=torch.float64).unsqueeze(-1)
    joint = model.posterior(torch.cat([Xs, Xn])).mvn  # q(f) of the SVGP process, jointly
    C, m = joint.covariance_matrix, joint.mean
    Css, Csn, Cnn = C[:6, :6], C[:6, 6:], C[6:, 6:] + 0.05 * torch.eye(2, dtype=torch.float64)
    mu = m[:6] + Csn @ torch.linalg.solve(Cnn, Yn[:, 0] - m[6:])
    cov = Css - Csn @ torch.linalg.solve(Cnn, Csn.T)
    post = model.condition_on_observations(Xn, Yn).posterior(Xs)
    assert_close(post.mean[:, 0], mu, rtol=1e-5, atol=1e-6)
    assert_close(post.mvn.covariance_matrix, cov, rtol=1e-5, atol=1e-6)


def test_state_dict_and_pickle_round_trip_give_identical_predictions():
    torch.manual_seed(2)
    X = torch.rand(30, 2, dtype=torch.float64)
    Y = torch.cos(4 * X.sum(-1, keepdim=True))
    model = SVGP(X, Y, outcome_transform=None, num_inducing=8)
    from gpvi import fit

    fit(model, max_steps=20, optimizer="ngd")
    Xs = torch.rand(5, 2, dtype=torch.float64)
    ref = model.posterior(Xs)
    clone = SVGP(X, Y, outcome_transform=None, num_inducing=8, seed=5)
    clone.load_state_dict(model.state_dict())
    assert_close(clone.posterior(Xs).mean, ref.mean, rtol=0, atol=0)
    assert_close(clone.posterior(Xs).variance, ref.variance, rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert_close(loaded.posterior(Xs).mean, ref.mean, rtol=0, atol=0)
    unpickled = pickle.loads(pickle.dumps(model))
    assert_close(unpickled.posterior(Xs).variance, ref.variance, rtol=0, atol=0)


@pytest.mark.parametrize("whiten", [True, False])
@pytest.mark.parametrize("num_outputs", [1, 2])
def test_training_algebras_agree(whiten, num_outputs):
    """The W = L⁻ᵀ(S − I)L⁻¹ path and the A = L⁻¹Kuf path give the same ELBO and gradients."""
    g = torch.Generator().manual_seed(3)
    X = torch.rand(40, 2, generator=g, dtype=torch.float64)
    Y = torch.sin(4 * X[:, :1]) + X[:, 1:] * torch.arange(1, num_outputs + 1, dtype=torch.float64)
    model = SVGP(X, Y, outcome_transform=None, num_inducing=12, whiten=whiten)
    with torch.no_grad():  # move q away from its initial value so every gradient is non-zero
        q = model.strategy._variational_distribution
        q.variational_mean.normal_(generator=g)
        q.chol_variational_covar.mul_(0.7).add_(0.05 * torch.randn(q.chol_variational_covar.shape, generator=g))
    results = []
    for threshold in (0.0, float("inf")):  # 0: always A = L⁻¹Kuf; inf: always W
        model.strategy.interp_threshold = threshold
        model.train()
        model.zero_grad()
        parts = model.elbo(X, Y.T if num_outputs > 1 else Y[:, 0])
        parts.elbo.backward()
        results.append((parts.elbo.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (e0, g0), (e1, g1) = results
    assert_close(e0, e1, rtol=1e-12, atol=1e-10)
    assert g0.keys() == g1.keys() and len(g0) >= 6
    for name in g0:
        assert_close(g0[name], g1[name], rtol=1e-8, atol=1e-10, msg=name)


def test_state_dict_round_trip_with_transforms_restandardises_targets():
    from botorch.models.transforms.input import Normalize
    from botorch.models.transforms.outcome import Standardize

    from gpvi import fit

    g = torch.Generator().manual_seed(4)
    X = 5 * torch.rand(30, 2, generator=g, dtype=torch.float64)
    Y = 10 + 3 * torch.cos(X.sum(-1, keepdim=True))
    make = lambda X, Y: SVGP(X, Y, num_inducing=8, input_transform=Normalize(2), outcome_transform=Standardize(1))
    model = make(X, Y)
    fit(model, max_steps=20, optimizer="ngd")
    clone = make(X, 2 * Y)  # other target statistics: loading must restore the trained ones
    clone.load_state_dict(model.state_dict())
    Xs = torch.rand(5, 2, generator=g, dtype=torch.float64)
    assert_close(clone.posterior(Xs).mean, model.posterior(Xs).mean, rtol=0, atol=1e-12)
    # the clone's own targets (2Y) are re-standardised with the loaded statistics
    assert_close(clone.train_targets, (2 * Y - model.outcome_transform.means) / model.outcome_transform.stdvs)
