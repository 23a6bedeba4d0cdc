"""Magma / MagmaClust identities against dense Gaussian algebra, and behaviour checks."""

import math

import pytest
import torch
from torch.testing import assert_close

from gpvi.data import MultiTaskData, simulate_multitask
from gpvi.multitask import Magma, MagmaClust, select_num_clusters

DT = torch.float64


def _tasks(M=5, seed=0):
    """Irregular grids: task i observes 4-7 of 12 grid points."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.linspace(0, 5, 12, dtype=DT)
    tasks = []
    for i in range(M):
        n = 4 + i % 4
        idx = torch.randperm(12, generator=g)[:n].sort().values
        t = grid[idx]
        tasks.append((t.unsqueeze(-1), torch.sin(t) + 0.3 * i % 2 + 0.1 * torch.randn(n, generator=g, dtype=DT)))
    return tasks


def _dense(model):
    """Dense union-grid quantities: C_k (K, N, N), P_i (list), Ψ_i (list)."""
    grid = model.data.grid
    C = model.grid_covariance().detach().expand(model.num_clusters, grid.shape[0], grid.shape[0])
    psi_pad = model.task_covariances().detach()
    P, psi, ys = [], [], []
    for i in range(model.data.num_tasks):
        n = int(model.data.mask[i].sum())
        Pi = torch.zeros(n, grid.shape[0], dtype=DT)
        Pi[torch.arange(n), model.data.index[i, :n]] = 1.0
        P.append(Pi)
        psi.append(psi_pad[i, :n, :n])
        ys.append(model.data.y[i, :n])
    return C, P, psi, ys


def _soft_tau(M, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(M, K, generator=g, dtype=DT), -1)


def test_e_step_equals_dense_posterior_on_the_union_grid():
    model = MagmaClust(_tasks(), 2, hypothesis="Hki")
    model.responsibilities = _soft_tau(5, 2)
    post = model.e_step_mean_processes()
    C, P, psi, ys = _dense(model)
    for k in range(2):
        prec = torch.linalg.inv(C[k])
        rhs = prec @ (model.prior_means[k].detach() * torch.ones(C.shape[-1], dtype=DT))
        for i, (Pi, Si, yi) in enumerate(zip(P, psi, ys, strict=True)):
            prec = prec + model.responsibilities[i, k] * Pi.T @ torch.linalg.solve(Si, Pi)
            rhs = rhs + model.responsibilities[i, k] * Pi.T @ torch.linalg.solve(Si, yi)
        cov = torch.linalg.inv(prec)
        assert_close(post.cov[k], cov, rtol=1e-6, atol=1e-8)
        assert_close(post.mean[k], cov @ rhs, rtol=1e-6, atol=1e-7)


def test_magma_elbo_is_the_exact_log_marginal_likelihood():
    model = Magma(_tasks())
    C, P, psi, ys = _dense(model)
    Pall = torch.cat(P)
    cov = Pall @ C[0] @ Pall.T + torch.block_diag(*psi)
    y = torch.cat(ys)
    exact = torch.distributions.MultivariateNormal(model.prior_means[0].detach() * torch.ones_like(y), cov).log_prob(y)
    model.e_step_mean_processes()
    with torch.no_grad():
        assert_close(model.elbo(), exact, rtol=1e-8, atol=0)
        assert_close(model.collapsed_elbo(), exact, rtol=1e-8, atol=0)


def test_one_task_with_a_fixed_mean_is_a_single_exact_gp():
    X, y = _tasks(1)[0]
    model = Magma([(X, y)], prior_mean=0.0)
    C, _, psi, _ = _dense(model)
    post = model.e_step_mean_processes()
    # μ0 | y for y = μ0 + f + ε: the GP posterior of μ0 with "noise" Ψ = Σ + σ²I
    gain = C[0] @ torch.linalg.inv(C[0] + psi[0])
    assert_close(post.mean[0], gain @ y, rtol=1e-7, atol=1e-9)
    assert_close(post.cov[0], C[0] - gain @ C[0], rtol=1e-6, atol=1e-9)
    with torch.no_grad():
        exact = torch.distributions.MultivariateNormal(torch.zeros_like(y), C[0] + psi[0]).log_prob(y)
        assert_close(model.elbo(), exact, rtol=1e-9, atol=0)


@pytest.mark.parametrize("hypothesis", ["Hoo", "Hki"])
def test_collapsed_elbo_equals_the_elbo_at_the_optimal_mean_processes(hypothesis):
    model = MagmaClust(_tasks(6), 3, hypothesis=hypothesis)
    model.responsibilities = _soft_tau(6, 3, seed=1)
    model.mixture_weights = torch.tensor([0.5, 0.3, 0.2], dtype=DT)
    model.e_step_mean_processes()
    with torch.no_grad():
        assert_close(model.collapsed_elbo(), model.elbo(), rtol=1e-9, atol=0)


def test_k_equal_one_is_magma_and_the_elbo_never_decreases():
    tasks = _tasks(6)
    clust = MagmaClust(tasks, 1)
    magma = Magma(tasks)
    h1, h2 = clust.fit(max_iter=3, tol=0.0), magma.fit(max_iter=3, tol=0.0)
    assert_close(torch.tensor(h1.column("elbo")), torch.tensor(h2.column("elbo")))
    Xs = torch.linspace(0, 6, 5, dtype=DT).unsqueeze(-1)
    p1, p2 = clust.predict(tasks[0][0][:3], tasks[0][1][:3], Xs), magma.predict(tasks[0][0][:3], tasks[0][1][:3], Xs)
    assert_close(p1.mean, p2.mean)
    model = MagmaClust(simulate_multitask(24, 3, 10, common_grid=False, seed=2), 3, hypothesis="Hko")
    history = model.fit(max_iter=6, tol=0.0)
    elbo = history.column("elbo")
    steps = torch.diff(torch.tensor(elbo))
    assert (steps > -1e-6 * abs(elbo[-1])).all(), elbo


def test_extension_by_prior_conditioning_equals_the_dense_joint_posterior():
    model = MagmaClust(_tasks(), 2)
    model.responsibilities = _soft_tau(5, 2)
    post = model.e_step_mean_processes()
    new = torch.tensor([[0.77], [6.0]], dtype=DT)
    mean, cov = model.extend(new)
    grid = model.data.grid
    allpts = torch.cat([grid, new])
    with torch.no_grad():
        C = (
            model.mean_kernel(allpts).to_dense()
            + 1e-8 * torch.eye(allpts.shape[0], dtype=DT) * model.mean_kernel.outputscale
        )
    N = grid.shape[0]
    C_tt = C[:N, :N]
    # joint posterior: q(μ(t)) is N(m̂, Ĉ); μ(n) | μ(t) is the prior conditional
    A = C[N:, :N] @ torch.linalg.inv(C_tt)
    for k in range(2):
        m = model.prior_means[k].detach()
        assert_close(mean[k], m + A @ (post.mean[k] - m), rtol=1e-6, atol=1e-7)
        assert_close(cov[k], C[N:, N:] - A @ C[:N, N:] + A @ post.cov[k] @ A.T, rtol=1e-5, atol=1e-6)


def test_prediction_uses_exact_integrated_cluster_probabilities():
    model = MagmaClust(_tasks(6), 2)
    model.fit(max_iter=2)
    Xo = torch.tensor([[0.5], [1.5], [2.5]], dtype=DT)
    yo = torch.tensor([0.4, 1.1, 0.7], dtype=DT)
    Xp = torch.tensor([[3.0], [4.0]], dtype=DT)
    pred = model.predict(Xo, yo, Xp)
    mean, cov = model.extend(torch.cat([Xo, Xp]))
    with torch.no_grad():
        Kt = model.task_kernel(torch.cat([Xo, Xp])).to_dense()
    logw, means = [], []
    for k in range(2):
        G = cov[k] + Kt
        Goo = G[:3, :3] + model.noise.detach() * torch.eye(3, dtype=DT)
        logw.append(
            model.mixture_weights[k].log() + torch.distributions.MultivariateNormal(mean[k, :3], Goo).log_prob(yo)
        )
        means.append(mean[k, 3:] + G[3:, :3] @ torch.linalg.solve(Goo, yo - mean[k, :3]))
    assert_close(pred.weights, torch.softmax(torch.stack(logw), 0))
    assert_close(pred.means, torch.stack(means), rtol=1e-6, atol=1e-8)
    # the mixture summary and its quantiles
    assert_close(pred.cdf(pred.quantile(0.9)), torch.full((2,), 0.9, dtype=DT), atol=1e-6, rtol=0)
    draws = pred.sample(4000, generator=torch.Generator().manual_seed(0))
    assert_close(draws.mean(0), pred.mean, atol=0.1, rtol=0)


def test_clusters_are_recovered_on_simulated_data_and_vbic_counts_parameters():
    from sklearn.metrics import adjusted_rand_score

    data = simulate_multitask(30, 3, 15, common_grid=False, seed=3)
    best, scores, models = select_num_clusters(data, [1, 3], max_iter=5)
    assert scores[3] > scores[1] and best == 3
    assert adjusted_rand_score(data.labels.numpy(), models[3].labels.numpy()) > 0.9
    # card(HP): γ (2 per kernel copy) + θ, σ² (3 per copy) + (K − 1) + K prior means
    for hyp, expected in {
        "Hoo": 2 + 3 + 2 + 3,
        "Hko": 6 + 3 + 2 + 3,
        "Hoi": 2 + 90 + 2 + 3,
        "Hki": 6 + 90 + 2 + 3,
    }.items():
        assert MagmaClust(data, 3, hypothesis=hyp).num_hyperparameters() == expected


def test_task_specific_hyperparameters_and_a_new_task_em_run():
    data = simulate_multitask(12, 2, 10, common_grid=False, shared_task_hp=False, seed=4)
    model = MagmaClust(data, 2, hypothesis="Hoi")
    model.fit(max_iter=3)
    assert model.noise.shape == (12,)
    X, y = data.inputs[0], data.outputs[0]
    pred = model.predict(X[:6], y[:6], X[6:])
    assert torch.isfinite(pred.mean).all() and (pred.variance() > 0).all()
    assert math.isclose(float(pred.weights.sum()), 1.0, rel_tol=1e-9)


def test_bad_input_is_named():
    X = torch.linspace(0, 1, 4, dtype=DT).unsqueeze(-1)
    y = torch.zeros(4, dtype=DT)
    with pytest.raises(ValueError, match="task 1 has no points"):
        MagmaClust([(X, y), (X[:0], y[:0])], 1)
    with pytest.raises(ValueError, match="duplicated"):
        MagmaClust([(X, y), (torch.cat([X[:2], X[:1]]), y[:3])], 1)
    with pytest.raises(ValueError, match="NaN"):
        MagmaClust([(X, y), (X, y.clone().fill_(float("nan")))], 1)
    with pytest.raises(ValueError, match="larger than the number of tasks"):
        MagmaClust([(X, y)], 2)
    with pytest.raises(ValueError, match="hypothesis"):
        MagmaClust([(X, y)], 1, hypothesis="H??")
    assert isinstance(simulate_multitask(6, 2, 5, seed=0), MultiTaskData)


def test_botorch_mixture_posterior_and_a_transfer_bo_loop():
    from botorch.acquisition import qLogExpectedImprovement
    from botorch.optim import optimize_acqf

    import gpvi
    from gpvi.loops.factories import MagmaClustFactory
    from gpvi.multitask import MagmaClustTaskModel, MixturePosterior

    data = simulate_multitask(18, 2, 12, common_grid=False, seed=5)
    prior = MagmaClust(data, 2)
    prior.fit(max_iter=3)
    X, y = data.inputs[0], data.outputs[0]
    model = MagmaClustTaskModel(prior, X[:5], y[:5].unsqueeze(-1))
    Xq = torch.linspace(0, 10, 7, dtype=DT).reshape(7, 1, 1)
    post = model.posterior(Xq)
    assert isinstance(post, MixturePosterior) and post.mean.shape == (7, 1, 1)
    reference = prior.predict(X[:5], y[:5], Xq[:, 0])
    assert_close(post.mean[:, 0, 0], reference.mean, rtol=1e-7, atol=1e-8)
    assert_close(post.variance[:, 0, 0], reference.variance(observation_noise=False), rtol=1e-6, atol=1e-8)
    # an affine posterior transform (how BoTorch minimises): offset + w f
    from botorch.acquisition.objective import ScalarizedPosteriorTransform

    flipped = model.posterior(Xq, posterior_transform=ScalarizedPosteriorTransform(torch.tensor([-2.0], dtype=DT), 1.0))
    assert isinstance(flipped, MixturePosterior)
    assert_close(flipped.mean, 1.0 - 2.0 * post.mean, rtol=1e-12, atol=1e-12)
    assert_close(flipped.variance, 4.0 * post.variance, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="one weight"):
        model.posterior(Xq, posterior_transform=ScalarizedPosteriorTransform(torch.ones(2, dtype=DT)))
    torch.manual_seed(0)
    draws = post.rsample(torch.Size([4000]))
    assert draws.shape == (4000, 7, 1, 1)
    assert_close(draws.mean(0), post.mean, atol=0.15, rtol=0)
    # MC acquisition: differentiable in X, optimisable by optimize_acqf
    bounds = torch.tensor([[0.0], [10.0]], dtype=DT)
    acqf = qLogExpectedImprovement(model, best_f=y[:5].max())
    Xg = Xq.clone().requires_grad_(True)
    acqf(Xg).sum().backward()
    assert torch.isfinite(Xg.grad).all()
    cand, _ = optimize_acqf(acqf, bounds, q=1, num_restarts=2, raw_samples=16)
    assert cand.shape == (1, 1)
    loop = gpvi.BayesOpt(bounds, MagmaClustFactory(prior), seed=0, num_initial=2)
    f = lambda x: torch.sin(x).sum(-1, keepdim=True)  # noqa: E731
    result = loop.run(f, 3)
    assert loop.X.shape[0] == 5 and result is not None


def test_long_table_input_and_plots_run():
    import matplotlib

    matplotlib.use("Agg")
    from gpvi.multitask.plots import plot_clusters, plot_prediction

    tasks = _tasks(6)
    X = torch.cat([t[0] for t in tasks])
    y = torch.cat([t[1] for t in tasks])
    ids = torch.cat([torch.full((t[1].numel(),), i) for i, t in enumerate(tasks)])
    model = MagmaClust.from_long(X, y, ids, 2)
    direct = MagmaClust(tasks, 2)
    assert_close(model.data.grid, direct.data.grid)
    model.fit(max_iter=2)
    plot_clusters(model)
    grid = torch.linspace(0, 5, 30, dtype=DT).unsqueeze(-1)
    pred = model.predict(X[:3], y[:3], grid)
    plot_prediction(pred, grid, X[:3], y[:3], num_samples=3)
    plot_prediction(pred, grid, heatmap=True)


def test_expected_statistics_m_step_is_monotone_and_slower_than_the_collapsed_one():
    data = simulate_multitask(15, 2, 10, common_grid=False, seed=6)
    fast, slow = MagmaClust(data, 2), MagmaClust(data, 2)
    h_fast = fast.fit(max_iter=3, tol=0.0)
    h_slow = slow.fit(max_iter=3, tol=0.0, m_step="expected")
    slow, fast = h_slow.column("elbo"), h_fast.column("elbo")
    assert (torch.diff(torch.tensor(slow)) > -1e-6 * abs(slow[-1])).all()
    assert fast[-1] >= slow[-1] - 1e-6 * abs(slow[-1])
