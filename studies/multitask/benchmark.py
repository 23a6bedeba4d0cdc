"""MagmaClust benchmarks: simulated scenarios, fertility curves, fit-time scaling, transfer BO.

    .venv/bin/python studies/multitask/benchmark.py simulated --datasets 20      # clustering + forecasting
    .venv/bin/python studies/multitask/benchmark.py fertility                    # World Bank fertility
    .venv/bin/python studies/multitask/benchmark.py speed                        # fit time vs #tasks
    .venv/bin/python studies/multitask/benchmark.py transfer --tasks 10          # BO with a MagmaClust prior
    .venv/bin/python studies/multitask/benchmark.py all --quick                  # smoke test

simulated: for each scenario (Hoo, Hko, Hoi, Hki on a common grid; Hoo on irregular grids),
``--datasets`` data sets from `gpvi.data.simulate_multitask` (3 clusters, 50 training tasks + 10 test
tasks, 30 points each). Clustering: ARI of MagmaClust's MAP labels (K = 3, the scenario's hypothesis)
against k-means on the curves (common grid: the raw output vectors; irregular: the curves linearly
interpolated to the common grid). Forecasting: each test task observes its first 20 points and
predicts the last 10; MSE of the mean and coverage of the 95 % interval (mixture quantiles with
observation noise) for MagmaClust, Magma and a single-task GP (BoTorch SingleTaskGP on the 20 points).

fertility: countries (aggregates dropped) split 60/40 at random (seed); held-out countries observe
1960-2003 and forecast 2004-2013. MagmaClust with K chosen by VBIC over 1..5, Magma, single GP.

speed: fit time for 50, 100, 200 tasks x 30 points (irregular grids, so the union grid grows), K = 3.

transfer: a family of 1-D functions on [0, 1] in 3 groups (shifted, scaled Forrester functions);
MagmaClust (K = 3) learned from 30 past tasks observed at 15 random points each; BO (qLogEI, 2
initial points) on ``--tasks`` new tasks for 20 evaluations, against a cold-start SingleTaskGP.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from gpvi.data import MultiTaskData, fertility, simulate_multitask
from gpvi.multitask import Magma, MagmaClust, select_num_clusters
from gpvi.progress import echo, track

SCENARIOS = {
    "Hoo": dict(shared_mean_hp=True, shared_task_hp=True, common_grid=True),
    "Hko": dict(shared_mean_hp=False, shared_task_hp=True, common_grid=True),
    "Hoi": dict(shared_mean_hp=True, shared_task_hp=False, common_grid=True),
    "Hki": dict(shared_mean_hp=False, shared_task_hp=False, common_grid=True),
    "Hoo-irregular": dict(shared_mean_hp=True, shared_task_hp=True, common_grid=False),
}


def _single_gp(X: torch.Tensor, y: torch.Tensor, Xp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BoTorch SingleTaskGP on one task: predictive mean and variance (with noise)."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    model = SingleTaskGP(X, y.unsqueeze(-1), input_transform=Normalize(X.shape[-1]), outcome_transform=Standardize(1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    with torch.no_grad():
        post = model.posterior(Xp, observation_noise=True)
    return post.mean[:, 0], post.variance[:, 0]


def _forecast_metrics(models: dict, observed: MultiTaskData, held: MultiTaskData) -> dict[str, tuple[float, float]]:
    """Mean over tasks of MSE and 95 % coverage for each method (MagmaClust-like models and "GP")."""
    out = {name: ([], []) for name in [*models, "GP"]}
    for Xo, yo, Xh, yh in zip(observed.inputs, observed.outputs, held.inputs, held.outputs, strict=True):
        if Xh.shape[0] == 0:
            continue
        for name, model in models.items():
            pred = model.predict(Xo, yo, Xh)
            lo, hi = pred.quantile(0.025), pred.quantile(0.975)
            out[name][0].append(float((pred.mean - yh).pow(2).mean()))
            out[name][1].append(float(((yh >= lo) & (yh <= hi)).double().mean()))
        mean, var = _single_gp(Xo, yo, Xh)
        sd = var.sqrt()
        out["GP"][0].append(float((mean - yh).pow(2).mean()))
        out["GP"][1].append(float(((yh - mean).abs() <= 1.96 * sd).double().mean()))
    return {k: (statistics.mean(v[0]), 100 * statistics.mean(v[1])) for k, v in out.items()}


def _kmeans_ari(data: MultiTaskData, K: int, seed: int) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    grid = data.grid[:, 0].numpy()
    pairs = zip(data.inputs, data.outputs, strict=True)
    curves = np.stack([np.interp(grid, X[:, 0].numpy(), y.numpy()) for X, y in pairs])
    if all(torch.equal(X, data.inputs[0]) for X in data.inputs):
        curves = np.stack([y.numpy() for y in data.outputs])
    labels = KMeans(n_clusters=K, n_init=20, random_state=seed).fit_predict(curves)
    return adjusted_rand_score(data.labels.numpy(), labels)


def simulated(num_datasets: int, max_iter: int, scenarios: list[str]) -> None:
    from sklearn.metrics import adjusted_rand_score

    print(
        "| scenario | ARI MagmaClust | ARI k-means | MSE MagmaClust | MSE Magma | MSE GP | "
        "cover MagmaClust | cover Magma | cover GP | fit s (MagmaClust) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in track(scenarios, "scenarios"):  # bars on stderr (`gpvi.progress`'s rule; GPVI_PROGRESS=0: none)
        options = SCENARIOS[name]
        rows = []
        hyp = name.split("-")[0]
        for seed in track(range(num_datasets), f"{name}: data sets"):
            data = simulate_multitask(60, 3, 30, seed=1000 + seed, **options)
            train, test = data.subset(range(50)), data.subset(range(50, 60))
            start = time.perf_counter()
            clust = MagmaClust(train, 3, hypothesis=hyp, seed=seed)
            clust.fit(max_iter=max_iter, progress=False)
            fit_s = time.perf_counter() - start
            magma = Magma(train, hypothesis="H" + hyp[2])
            magma.fit(max_iter=max_iter, progress=False)
            ari = adjusted_rand_score(train.labels.numpy(), clust.labels.numpy())
            observed, held = test.split_points(20)
            metrics = _forecast_metrics({"MagmaClust": clust, "Magma": magma}, observed, held)
            rows.append((ari, _kmeans_ari(train, 3, seed), *(m for pair in metrics.values() for m in pair), fit_s))
        cols = list(zip(*rows, strict=True))
        fmt = [f"{statistics.mean(c):.3f} ({statistics.stdev(c) if len(c) > 1 else 0:.3f})" for c in cols]
        ari_c, ari_k, mse_c, cov_c, mse_m, cov_m, mse_g, cov_g, fit_s = fmt
        echo(f"| {name} | {ari_c} | {ari_k} | {mse_c} | {mse_m} | {mse_g} | {cov_c} | {cov_m} | {cov_g} | {fit_s} |")


def fertility_study(seed: int, max_iter: int, candidates: list[int]) -> None:
    data = fertility()
    train, test = data.split_tasks(test_fraction=0.4, seed=seed)
    start = time.perf_counter()
    best, scores, models = select_num_clusters(train, candidates, max_iter=max_iter, seed=seed)
    select_s = time.perf_counter() - start
    print(
        f"fertility: {train.num_tasks} training and {test.num_tasks} test countries; VBIC "
        + ", ".join(f"K={k}: {v:.1f}" for k, v in scores.items())
        + f" -> K = {best} ({select_s:.0f} s)"
    )
    observed = MultiTaskData(
        [X[X[:, 0] <= 2003] for X in test.inputs],
        [y[X[:, 0] <= 2003] for X, y in zip(test.inputs, test.outputs, strict=True)],
        _allow_empty=True,
    )
    held = MultiTaskData(
        [X[X[:, 0] > 2003] for X in test.inputs],
        [y[X[:, 0] > 2003] for X, y in zip(test.inputs, test.outputs, strict=True)],
        _allow_empty=True,
    )
    keep = [i for i in range(test.num_tasks) if observed.inputs[i].shape[0] >= 2 and held.inputs[i].shape[0] >= 1]
    observed, held = observed.subset(keep), held.subset(keep)
    metrics = _forecast_metrics({f"MagmaClust (K = {best})": models[best], "Magma": models[1]}, observed, held)
    print(f"| method | MSE 2004-2013 | 95 % coverage | ({len(keep)} held-out countries) |")
    print("|---|---|---|---|")
    for name, (mse, cover) in metrics.items():
        print(f"| {name} | {mse:.4f} | {cover:.1f} | |")


def speed(sizes: list[int], max_iter: int) -> None:
    print("| tasks | points | union grid N | VEM iterations | fit s | s / iteration |")
    print("|---|---|---|---|---|---|")
    for M in track(sizes, "sizes"):
        data = simulate_multitask(M, 3, 30, common_grid=False, seed=7)
        model = MagmaClust(data, 3)
        history = model.fit(max_iter=max_iter, progress=False)
        iters = history.num_steps
        echo(
            f"| {M} | {M * 30} | {model.data.grid.shape[0]} | {iters} | {history.wall_time:.1f} | "
            f"{history.wall_time / iters:.2f} |"
        )


def _forrester(x: torch.Tensor) -> torch.Tensor:
    return (6 * x - 2) ** 2 * torch.sin(12 * x - 4)


def _family(group: int, gen: torch.Generator):
    """Task of a group: a shifted and scaled (negated) Forrester function, to be maximised."""
    shift = [0.0, 0.25, -0.2][group] + 0.03 * float(torch.randn((), generator=gen))
    scale = [1.0, 0.7, 1.3][group] * (1 + 0.05 * float(torch.randn((), generator=gen)))
    offset = [0.0, 3.0, -3.0][group]
    return lambda x: -(scale * _forrester((x - shift).clamp(0, 1)) + offset)


def transfer(num_tasks: int, budget: int, max_iter: int) -> None:
    import gpvi
    from gpvi.loops.factories import MagmaClustFactory

    gen = torch.Generator().manual_seed(0)
    past = []
    for i in range(30):
        f = _family(i % 3, gen)
        X = torch.rand(15, 1, generator=gen, dtype=torch.float64)
        past.append((X, f(X)[:, 0] + 0.05 * torch.randn(15, generator=gen, dtype=torch.float64)))
    prior = MagmaClust(past, 3)
    prior.fit(max_iter=max_iter, progress=False)
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64).unsqueeze(-1)
    bounds = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    regrets = {"magmaclust": [], "singletaskgp": []}
    for t in track(range(num_tasks), "new tasks"):
        f = _family(t % 3, gen)
        best = float(f(grid).max())
        for name, factory in (("magmaclust", MagmaClustFactory(prior)), ("singletaskgp", "singletaskgp")):
            loop = gpvi.BayesOpt(bounds, factory, seed=t, num_initial=2)
            loop.run(f, budget - 2)
            trace = torch.cummax(loop.Y[:, 0], 0).values
            regrets[name].append((best - trace).numpy())
    marks = sorted({n for n in (1, 2, 3, 5, 10, 15, budget) if n <= budget})
    print(f"transfer BO on {num_tasks} new tasks; simple regret after n evaluations (median [q25, q75]):")
    print("| method | " + " | ".join(f"n = {n}" for n in marks) + " |")
    print("|---|" + "---|" * len(marks))
    for name, rows in regrets.items():
        R = np.stack(rows)
        cells = [
            f"{np.median(R[:, n - 1]):.3f} [{np.quantile(R[:, n - 1], 0.25):.3f}, {np.quantile(R[:, n - 1], 0.75):.3f}]"
            for n in marks
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["simulated", "fertility", "speed", "transfer", "all"])
    parser.add_argument("--datasets", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--max-iter", type=int, default=10, help="VEM iterations at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    if args.quick:
        args.datasets, args.tasks, args.max_iter = 1, 1, 2
    if args.which in ("simulated", "all"):
        simulated(args.datasets, args.max_iter, args.scenarios)
    if args.which in ("fertility", "all"):
        fertility_study(args.seed, args.max_iter, [1, 2, 3] if args.quick else [1, 2, 3, 4, 5])
    if args.which in ("speed", "all"):
        speed([20, 40] if args.quick else [50, 100, 200], args.max_iter)
    if args.which in ("transfer", "all"):
        transfer(args.tasks, 8 if args.quick else 20, args.max_iter)


if __name__ == "__main__":
    main()
