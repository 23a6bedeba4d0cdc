"""Memory-based dual GP updates (Chang et al. 2023): known answers against the batch (Titsias) posterior."""

import copy
import io
import pickle

import pytest
import torch
from gpytorch.likelihoods import BernoulliLikelihood
from torch.testing import assert_close

import gpvi
from gpvi.core.linalg import NotPSDError
from gpvi.models import streaming
from gpvi.sequential.memory import bayesian_leverage, select_memory
from tests.helpers import DualSVGP

DT = torch.float64


def _stream(n=120, d=1, seed=0, sort=True):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=DT) * 6 - 3
    y = torch.sin(2 * X[:, 0]) + (0.3 * X[:, 1] if d > 1 else 0) + 0.1 * torch.randn(n, generator=g, dtype=DT)
    if sort:
        order = X[:, 0].argsort()
        X, y = X[order], y[order]
    return X, y.unsqueeze(-1)


def _dense_sgpr(model, Z, X, y, Xs):
    """Titsias/SGPR predictive mean and latent variance at Xs (dense), under the model's θ."""
    kern, s2 = model.model.covar_module, model.likelihood.noise.item()
    c = model.model.mean_module.constant.item()
    eye = torch.eye(Z.shape[0], dtype=DT)
    Kuu = kern(Z).to_dense() + model.strategy.jitter_val * eye
    Kuf, Kus = kern(Z, X).to_dense(), kern(Z, Xs).to_dense()
    Sigma = torch.linalg.inv(Kuu + Kuf @ Kuf.T / s2)
    mean = c + Kus.T @ Sigma @ Kuf @ (y - c) / s2
    var = kern(Xs, diag=True) - (Kus * torch.linalg.solve(Kuu, Kus)).sum(0) + (Kus * (Sigma @ Kus)).sum(0)
    return mean, var


def _model(X, Y, Z, memory_weight="summary", **options):
    model = DualSVGP(
        X,
        Y,
        outcome_transform=None,
        inducing=Z,
        learn_inducing=False,
        jitter=1e-8,
        memory_weight=memory_weight,
        **options,
    )
    model.likelihood.noise = 0.05
    return model


def _prediction(model, Xs):
    post = model.posterior(Xs)  # the predictive covariance carries the jitter on its diagonal
    return post.mean[:, 0].detach(), post.variance[:, 0].detach() - model.strategy.jitter_val


XS = torch.linspace(-3.5, 3.5, 41, dtype=DT).unsqueeze(-1)


@pytest.mark.parametrize("memory_size", [0, 30])
def test_gaussian_stream_with_fixed_theta_and_z_is_the_batch_sgpr(memory_size):
    X, Y = _stream()
    Z = torch.linspace(-3, 3, 12, dtype=DT).unsqueeze(-1)
    model = _model(X[:20], Y[:20], Z, memory_size=memory_size)
    for Xb, Yb in zip(X[20:].split(25), Y[20:].split(25), strict=True):
        model.update(Xb, Yb, hyperparameters=False, reselect_inducing=False)
    assert model.num_summarised > 0
    mean, var = _prediction(model, XS)
    ref_mean, ref_var = _dense_sgpr(model, Z, X, Y[:, 0], XS)
    assert_close(mean, ref_mean, rtol=0, atol=1e-8)
    assert_close(var, ref_var, rtol=0, atol=1e-8)


def test_memory_holding_everything_is_the_batch_posterior_after_many_updates():
    """No double counting: with Z re-selected at every update and a memory that holds the whole
    stream, the posterior is the batch posterior on all data at the final Z (the reference code,
    which adds refreshed memory sites on top of their frozen copies, fails this)."""
    X, Y = _stream(n=150)
    model = _model(X[:10], Y[:10], X[:6], memory_size=1000, num_inducing=15)
    for Xb, Yb in zip(X[10:].split(20), Y[10:].split(20), strict=True):
        model.update(Xb, Yb, hyperparameters=False)
    assert model.num_summarised == 0 and model.num_data == 150
    Z = model.features.locations.detach()
    mean, var = _prediction(model, XS)
    ref_mean, ref_var = _dense_sgpr(model, Z, X, Y[:, 0], XS)
    assert_close(mean, ref_mean, rtol=0, atol=1e-8)
    assert_close(var, ref_var, rtol=0, atol=1e-8)


def test_memory_holding_everything_with_fixed_z_reproduces_the_batch_fit():
    X, Y = _stream(n=90)
    Z = torch.linspace(-3, 3, 10, dtype=DT).unsqueeze(-1)
    model = _model(X[:30], Y[:30], Z, memory_size=1000, memory_weight="rescaled")
    for Xb, Yb in zip(X[30:].split(30), Y[30:].split(30), strict=True):
        model.update(Xb, Yb, reselect_inducing=False, max_iter=200)
    batch = _model(X, Y, Z)
    gpvi.fit(batch)
    assert_close(model.likelihood.noise, batch.likelihood.noise, rtol=2e-3, atol=0)
    mean, var = _prediction(model, XS)
    ref_mean, ref_var = _prediction(batch, XS)
    assert_close(mean, ref_mean, rtol=0, atol=2e-4)
    assert_close(var, ref_var, rtol=0, atol=2e-4)


def test_projection_is_exact_for_inducing_inputs_that_survive():
    X, Y = _stream()
    Z = torch.linspace(-3, 3, 12, dtype=DT).unsqueeze(-1)
    model = _model(X[:60], Y[:60], Z)
    model.update(X[60:90], Y[60:90], hyperparameters=False, reselect_inducing=False)
    assert model.strategy.frozen is not None
    before = _prediction(model, XS)
    kernel, jitter = model.model.covar_module, model.strategy.jitter_val
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    Z_new = torch.cat([Z[perm], torch.tensor([[0.05], [1.55]], dtype=DT)])  # survivors and two new inputs
    P = streaming.nystrom_map(kernel, Z_new, Z, jitter)
    assert_close(P[:12], torch.eye(12, dtype=DT)[perm], rtol=0, atol=1e-12)
    frozen = {k: v.clone() for k, v in model.strategy.dual_sites.frozen_state().items()}
    data_sites = model.sites.project(P)
    streaming.install_inducing(model, Z_new, frozen, P)
    model.set_sites(data_sites)
    after = _prediction(model, XS)
    assert_close(after[0], before[0], rtol=0, atol=1e-9)
    assert_close(after[1], before[1], rtol=0, atol=1e-9)


def test_bayesian_leverage_is_the_ridge_leverage_for_gaussian_data_at_z_equal_x():
    X, Y = _stream(n=25)
    model = _model(X, Y, X)
    model.update(X[:1] + 0.01, Y[:1], hyperparameters=False, reselect_inducing=False)  # starts the stream
    model = _model(X, Y, X)
    state = streaming.start_stream(model, streaming.UpdateSettings(1.0, 1, False, False, 1))
    assert state.in_memory.sum() == 0
    scores = streaming.leverage_scores(model, X, model.point_sites.beta)
    K = model.model.covar_module(X).to_dense() + model.strategy.jitter_val * torch.eye(25, dtype=DT)
    ridge = torch.diagonal(K @ torch.linalg.inv(K + 0.05 * torch.eye(25, dtype=DT)))
    assert_close(scores, ridge, rtol=1e-6, atol=1e-9)


def test_select_memory_rules():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7])
    keys = torch.tensor([0.4, 0.3, 0.2, 0.1])
    assert select_memory(scores, keys, 2, "leverage").tolist() == [False, True, False, True]
    assert select_memory(scores, keys, 2, "random").tolist() == [False, False, True, True]
    assert select_memory(scores, keys, 9, "random").all() and not select_memory(scores, keys, 0, "leverage").any()
    with pytest.raises(ValueError, match="memory_selection"):
        select_memory(scores, keys, 2, "topk")
    assert_close(bayesian_leverage(torch.ones(2, 3), torch.full((2, 3), 0.5)), torch.ones(3))


def test_memory_and_cost_stay_bounded():
    X, Y = _stream(n=400, sort=False)
    model = DualSVGP(X[:40], Y[:40], num_inducing=15, memory_size=25)
    gpvi.fit(model)
    for Xb, Yb in zip(X[40:].split(40), Y[40:].split(40), strict=True):
        model.update(Xb, Yb)
        assert model.num_data <= 25 + 40 and model.features.num_inducing <= 15
        assert model.memory[0].shape[0] == 25
    assert model.num_summarised + model.num_data == 400
    assert model.stream_state.num_seen == 400
    rmse = (model.posterior(XS).mean[:, 0] - torch.sin(2 * XS[:, 0])).pow(2).mean().sqrt()
    assert rmse < 0.15


def test_random_memory_is_a_uniform_reservoir():
    X, Y = _stream(n=200, sort=False)
    counts = torch.zeros(200)
    for seed in range(30):
        model = _model(X[:20], Y[:20], X[:8], memory_size=20, memory_selection="random", seed=seed)
        for Xb, Yb in zip(X[20:].split(45), Y[20:].split(45), strict=True):
            model.update(Xb, Yb, hyperparameters=False, reselect_inducing=False)
        mem = model.memory[0][:, 0]
        counts += (mem.unsqueeze(-1) == X[:, 0]).any(0).float()
    early, late = counts[:100].mean(), counts[100:].mean()  # each point is kept with probability 0.1
    assert abs(early - 3.0) < 1.0 and abs(late - 3.0) < 1.0


def test_state_dict_and_pickle_continue_the_stream_identically():
    X, Y = _stream(n=160, sort=False)
    model = DualSVGP(X[:40], Y[:40], num_inducing=12, memory_size=20, memory_selection="random", seed=3)
    gpvi.fit(model)
    model.update(X[40:80], Y[40:80])
    restored = DualSVGP(X[:40], Y[:40], num_inducing=12, memory_size=20, memory_selection="random", seed=3)
    restored.load_state_dict(model.state_dict())
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    unpickled = torch.load(buffer, weights_only=False)
    for other in (restored, unpickled, pickle.loads(pickle.dumps(model))):
        assert_close(_prediction(other, XS)[0], _prediction(model, XS)[0], rtol=0, atol=1e-12)
    twin = copy.deepcopy(model)
    for m in (model, restored, unpickled, twin):
        m.update(X[80:120], Y[80:120])
        m.update(X[120:], Y[120:])
    for other in (restored, unpickled, twin):
        assert_close(_prediction(other, XS)[0], _prediction(model, XS)[0], rtol=0, atol=1e-10)
        assert torch.equal(other.memory[0], model.memory[0])


@pytest.mark.parametrize(
    "X_new, Y_new, error, match",
    [
        (torch.rand(5, 2, dtype=DT), torch.rand(5, 1, dtype=DT), ValueError, "`X` must be"),
        (torch.rand(5, 1, dtype=DT), torch.rand(4, 1, dtype=DT), ValueError, "`Y` `n x 1`"),
        (torch.full((5, 1), float("nan"), dtype=DT), torch.rand(5, 1, dtype=DT), ValueError, "`X`"),
        (torch.rand(0, 1, dtype=DT), torch.rand(0, 1, dtype=DT), ValueError, "`X`"),
        (torch.rand(5, 1), torch.rand(5, 1), TypeError, "`X` is torch.float32"),
    ],
)
def test_bad_input_is_refused_before_the_model_changes(X_new, Y_new, error, match):
    X, Y = _stream(n=60)
    model = DualSVGP(X[:30], Y[:30], num_inducing=8, memory_size=10)
    model.update(X[30:], Y[30:])
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=match):
        model.update(X_new, Y_new)
    assert _same(model.state_dict(), state)


def _same(a, b):
    """Equal nested states (tensors compared exactly)."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_a_failed_update_leaves_the_model_as_it_was(monkeypatch):
    X, Y = _stream(n=90)
    model = DualSVGP(X[:30], Y[:30], num_inducing=8, memory_size=10)
    model.update(X[30:60], Y[30:60])
    before, data = _prediction(model, XS), model.training_data()[0].clone()

    def broken(*args, **kwargs):
        raise NotPSDError("injected")

    monkeypatch.setattr(streaming, "refit_hyperparameters", broken)
    with pytest.raises(NotPSDError, match="injected"):
        model.update(X[60:], Y[60:])
    assert torch.equal(model.training_data()[0], data)
    assert_close(_prediction(model, XS)[0], before[0], rtol=0, atol=0)
    monkeypatch.undo()
    model.update(X[60:], Y[60:])  # and it continues


def test_bernoulli_stream_stays_close_to_the_batch_fit():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(300, 1, generator=g, dtype=DT) * 6 - 3
    Y = (torch.sin(2 * X) + 0.3 * torch.randn(300, 1, generator=g, dtype=DT) > 0).to(DT)
    order = X[:, 0].argsort()
    X, Y = X[order], Y[order]
    model = DualSVGP(X[:30], Y[:30], BernoulliLikelihood(), num_inducing=15, memory_size=60)
    gpvi.fit(model)
    for Xb, Yb in zip(X[30:].split(30), Y[30:].split(30), strict=True):
        model.update(Xb, Yb)
    batch = DualSVGP(X, Y, BernoulliLikelihood(), num_inducing=15)
    gpvi.fit(batch)
    p_stream = model.predict_proba(XS)[:, 0]
    p_batch = batch.predict_proba(XS)[:, 0]
    assert (p_stream - p_batch).abs().max() < 0.15


def test_condition_on_observations_gives_a_dual_model_with_right_sites():
    """The conditioned model is q conditioned exactly on the new data (dense Gaussian conditioning of
    q's joint at [test; new] inputs), and a DualSVGP whose sites and training data include them."""
    X, Y = _stream(n=60)
    Z = torch.linspace(-3, 3, 10, dtype=DT).unsqueeze(-1)
    model = _model(X[:40], Y[:40], Z)
    model.set_optimal_q()
    new = model.condition_on_observations(X[40:], Y[40:])
    assert isinstance(new, gpvi.DualSVGP) and isinstance(new.strategy, type(model.strategy))
    assert new.num_data == 60 and new.point_sites.num_points == 60
    joint = model.posterior(torch.cat([XS, X[40:]]))
    mu, C = joint.mean[:, 0].detach(), joint.distribution.covariance_matrix.detach()
    k = XS.shape[0]
    gain = C[:k, k:] @ torch.linalg.inv(C[k:, k:] + 0.05 * torch.eye(20, dtype=DT))
    ref_mean = mu[:k] + gain @ (Y[40:, 0] - mu[k:])
    ref_var = torch.diagonal(C[:k, :k] - gain @ C[k:, :k]) - model.strategy.jitter_val
    mean, var = _prediction(new, XS)
    assert_close(mean, ref_mean, rtol=0, atol=1e-7)
    assert_close(var, ref_var, rtol=0, atol=1e-7)
    new.update(X[:5] + 0.01, Y[:5], hyperparameters=False)  # the conditioned model streams on
    assert new.num_data == 5 and new.num_summarised == 60  # memory_size=0: all but the batch summarised


def test_condition_on_observations_with_a_bernoulli_likelihood():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(40, 1, generator=g, dtype=DT) * 6 - 3
    Y = (X > 0).to(DT)
    model = DualSVGP(X, Y, BernoulliLikelihood(), num_inducing=10)
    gpvi.fit(model)
    X_new = torch.tensor([[-2.0], [-1.8]], dtype=DT)
    new = model.condition_on_observations(X_new, torch.ones(2, 1, dtype=DT))
    assert isinstance(new.strategy, type(model.strategy))
    before, after = model.predict_proba(X_new)[:, 0], new.predict_proba(X_new)[:, 0]
    assert (after > before + 0.05).all()


@pytest.mark.parametrize("case", ["two-outputs", "softmax", "float32-noise-free", "duplicates"])
def test_update_on_other_likelihoods_and_ordinary_data(case):
    from gpytorch.likelihoods import SoftmaxLikelihood

    g = torch.Generator().manual_seed(0)
    X = torch.rand(150, 2, generator=g, dtype=DT)
    likelihood, dtype = None, DT
    if case == "two-outputs":
        Y = torch.cat([torch.sin(6 * X[:, :1]), torch.cos(4 * X[:, 1:])], -1) + 0.05 * torch.randn(150, 2, generator=g)
    elif case == "softmax":
        Y, likelihood = (X[:, :1] * 3).floor().clamp(max=2), SoftmaxLikelihood(num_classes=3, mixing_weights=False)
    elif case == "float32-noise-free":
        Y, dtype = torch.sin(6 * X[:, :1]), torch.float32
    else:
        X = torch.cat([X[:75], X[:75]])
        Y = torch.sin(6 * X[:, :1])
    X, Y = X.to(dtype), Y.to(dtype)
    model = gpvi.DualSVGP(X[:30], Y[:30], likelihood, num_inducing=12, memory_size=20)
    gpvi.fit(model, progress=False)
    for Xb, Yb in zip(X[30:].split(30), Y[30:].split(30), strict=True):
        model.update(Xb, Yb)
    assert model.num_data + model.num_summarised == 150 and model.memory[0].shape[0] == 20
    mean = model.posterior(X[:10]).mean
    assert mean.dtype == dtype and torch.isfinite(mean).all()
    if case != "softmax":
        assert (mean - Y[:10]).abs().max() < 0.5


def test_the_registered_memory_dual_serves_bo_and_the_regression_study():
    from botorch.test_functions import Branin

    from gpvi.loops.streams import MemoryDualFactory, StreamedDualSVGP
    from gpvi.studies.kinds.regression import fit_method

    problem = Branin(negate=True).to(DT)
    loop = gpvi.BayesOpt(problem.bounds, "memory-dual", seed=0, num_initial=6, refit_every=3)
    assert isinstance(loop.factory, MemoryDualFactory)
    loop.run(lambda x: problem(x).unsqueeze(-1), 5)
    assert loop.model.stream_state is not None  # updated between refits
    X, Y = _stream(n=200, d=2, sort=False)
    model = fit_method("memory-dual", X, Y, {"num_batches": 8, "memory_size": 40, "num_inducing": 20}, seed=0)
    assert isinstance(model, StreamedDualSVGP) and not model.pending
    assert model.num_data + model.num_summarised == 200


def test_memory_dual_factory_refits_the_hyperparameters_every_k_points_seen():
    from gpvi.loops.streams import MemoryDualFactory

    X, Y = _stream(n=40, d=1, sort=False)
    bounds = torch.tensor([[-3.0], [3.0]], dtype=DT)
    factory = MemoryDualFactory(hyperparameters_every=3, memory_size=10, num_inducing=8, max_steps=5)
    model = factory.fit(X[:5], Y[:5], bounds)

    def theta():
        kernel = model.model.covar_module
        return torch.cat([p.detach().flatten().clone() for p in (*kernel.parameters(), *model.likelihood.parameters())])

    moved = []
    for i in range(5, 11):  # points seen 6 .. 11: θ refitted when 6 and 9 are reached
        before = theta()
        model = factory.update(model, X[i : i + 1], Y[i : i + 1])
        moved.append(not torch.equal(before, theta()))
    assert moved == [True, False, False, True, False, False]
    # built on 5 points (Z = X), the updates may re-select up to the factory's M = 8, not 5
    assert model.num_inducing_target == 8 and model.strategy.features.Z.shape[-2] > 5
    with pytest.raises(ValueError, match="hyperparameters_every"):
        MemoryDualFactory(hyperparameters_every=-1)


def test_streaming_elbo_is_the_batch_bound_less_the_summarised_points_constants():
    """With a Gaussian likelihood and fixed θ and Z, the streaming ELBO (held data + E_q[log t_F] − KL)
    differs from the batch collapsed bound only by terms constant in q: for each summarised point,
    −½ log 2πσ² − (y_n − μ₀)²/(2σ²) − (k_nn − q_nn)/(2σ²). Checks the frozen factor's expected log."""
    X, Y = _stream(n=100)
    Z = torch.linspace(-3, 3, 9, dtype=DT).unsqueeze(-1)
    model = _model(X[:40], Y[:40], Z)
    model.model.mean_module.constant.data.fill_(0.2)
    for Xb, Yb in zip(X[40:].split(30), Y[40:].split(30), strict=True):
        model.update(Xb, Yb, hyperparameters=False, reselect_inducing=False)
    assert model.num_summarised == 70
    batch = _model(X, Y, Z)
    batch.model.mean_module.constant.data.fill_(0.2)
    model.train()
    batch.train()
    streaming_elbo = model.elbo().elbo - model.log_prior()
    kern, s2 = model.model.covar_module, 0.05
    Xf, yf = X[:70], Y[:70, 0]
    Kuu = kern(Z).to_dense() + 1e-8 * torch.eye(9, dtype=DT)
    Kuf = kern(Z, Xf).to_dense()
    gap = kern(Xf, diag=True) - (Kuf * torch.linalg.solve(Kuu, Kuf)).sum(0)
    constants = (-0.5 * torch.log(torch.tensor(2 * torch.pi * s2)) - (yf - 0.2) ** 2 / (2 * s2) - gap / (2 * s2)).sum()
    assert_close(streaming_elbo + constants, batch.collapsed_elbo(), rtol=1e-9, atol=1e-7)


def test_gaussian_refit_objective_is_the_batch_bound_on_every_point_seen():
    """The refit objective of a Gaussian stream at fixed θ and Z (memory 0: 70 of 100 points summarised)
    equals the batch collapsed bound on all 100 points plus log p(θ), and moves with σ² as it does."""
    X, Y = _stream(n=100)
    Z = torch.linspace(-3, 3, 9, dtype=DT).unsqueeze(-1)
    model = _model(X[:40], Y[:40], Z)
    for Xb, Yb in zip(X[40:].split(30), Y[40:].split(30), strict=True):
        model.update(Xb, Yb, hyperparameters=False, reselect_inducing=False)
    batch = _model(X, Y, Z)
    model.train()
    objective, finish = streaming.gaussian_streaming_objective(model, model.point_sites)
    for noise in (0.05, 0.11):  # the stored sites were folded at 0.05
        model.likelihood.noise = noise
        batch.likelihood.noise = noise
        assert_close(objective(), batch.collapsed_elbo() + batch.log_prior(), rtol=1e-9, atol=1e-7)
    finish()  # the stored frozen sites now hold the data at noise 0.11; the held ones follow
    streaming.set_sites_from_points(model, streaming.gaussian_sites(model, model.point_sites.inputs))
    model.eval()
    batch.set_optimal_q()
    assert_close(_prediction(model, XS)[0], _prediction(batch, XS)[0], rtol=0, atol=1e-8)


@pytest.mark.parametrize("fold_after", [False, True])
def test_a_moving_constant_mean_does_not_shift_the_summarised_data(fold_after):
    """The frozen sites are centred at the mean of their folding; moved to another constant mean they
    are re-centred (η_F − Δ Σβw), so the streamed posterior stays the batch SGPR at the new mean,
    before and after a later fold (which re-bases the stored factor)."""
    X, Y = _stream(n=100)
    Z = torch.linspace(-3, 3, 9, dtype=DT).unsqueeze(-1)
    model = _model(X[:40], Y[:40], Z)
    model.model.mean_module.constant.data.fill_(0.2)
    model.update(X[40:70], Y[40:70], hyperparameters=False, reselect_inducing=False)
    model.model.mean_module.constant.data.fill_(-0.7)
    n_seen = 70
    if fold_after:
        model.update(X[70:], Y[70:], hyperparameters=False, reselect_inducing=False)
        n_seen = 100
    else:
        streaming.set_sites_from_points(model, streaming.gaussian_sites(model, model.point_sites.inputs))
    mean, var = _prediction(model, XS)
    ref_mean, ref_var = _dense_sgpr(model, Z, X[:n_seen], Y[:n_seen, 0], XS)
    assert_close(mean, ref_mean, rtol=0, atol=1e-8)
    assert_close(var, ref_var, rtol=0, atol=1e-8)


def test_conditioning_a_streamed_model_lifts_its_whole_summary():
    """A model with summarised data and a moved constant mean, conditioned on new points, is q conditioned
    exactly (the frozen factor lifted with its centring), and carries its frozen state on."""
    X, Y = _stream(n=90)
    Z = torch.linspace(-3, 3, 9, dtype=DT).unsqueeze(-1)
    model = _model(X[:40], Y[:40], Z)
    model.update(X[40:70], Y[40:70], hyperparameters=False, reselect_inducing=False)
    model.model.mean_module.constant.data.fill_(-0.4)
    streaming.set_sites_from_points(model, streaming.gaussian_sites(model, model.point_sites.inputs))
    seen = model.stream_state.num_seen
    new = model.condition_on_observations(X[70:], Y[70:])
    assert new.stream_state is not model.stream_state and model.stream_state.num_seen == seen
    assert new.stream_state.num_seen == seen + 20 and not new.stream_state.in_memory[-20:].any()
    joint = model.posterior(torch.cat([XS, X[70:]]))
    mu, C = joint.mean[:, 0].detach(), joint.distribution.covariance_matrix.detach()
    k = XS.shape[0]
    gain = C[:k, k:] @ torch.linalg.inv(C[k:, k:] + 0.05 * torch.eye(20, dtype=DT))
    assert_close(_prediction(new, XS)[0], mu[:k] + gain @ (Y[70:, 0] - mu[k:]), rtol=0, atol=1e-7)
    old, lifted = model.strategy.dual_sites, new.strategy.dual_sites
    assert torch.equal(lifted.frozen_sums, old.frozen_sums) and torch.equal(lifted.frozen_mean, old.frozen_mean)
    assert torch.equal(lifted.frozen_shift[:9], old.frozen_shift) and not lifted.frozen_shift[9:].any()
