"""Convergence speed on UCI regression: gpvi DualSVGP against gpytorch's SVGP (Adam; NGD + Adam).

    .venv/bin/python studies/dual/convergence.py --datasets elevators --splits 0 --m 256 --budget 240
    .venv/bin/python studies/dual/convergence.py --quick          # smoke test (seconds)

For each (dataset, split, M) every method starts from the same state (gpvi's k-means Z with seed 0,
lengthscales 0.5·√d·std, noise 0.1, float64) and trains for ``--budget`` seconds of wall time on
``--threads`` threads. The full-data ELBO per datum is measured every ``--eval-every`` seconds of
training time (the evaluations are not counted):

- ``gpytorch-adam``: gpytorch `VariationalStrategy` + `CholeskyVariationalDistribution`, Adam (lr 0.01)
  on everything, minibatch B.
- ``gpytorch-ngd``: gpytorch `NaturalVariationalDistribution` with `gpytorch.optim.NGD` (lr 0.1)
  on q plus Adam (lr 0.01) on the rest, minibatch B.
- ``dual-collapsed``: `gpvi.DualSVGP` with the closed-form Gaussian recipe
  (``gpvi.fit(model, objective="collapsed")``): the dual sites are exact for every θ, so each
  L-BFGS evaluation's value *is* the full-data ELBO at the E-step optimum; the final E-step
  (ρ = 1, the one that writes the sites) is included in the time.

Reported per method: steps taken, the best full-data ELBO per datum in the budget, the wall time
until the ELBO is within 0.1 % of the best value any method reached (">budget" if never), test
RMSE and NLPD (standardised units), and, for each peer, the speed-up of dual-collapsed: the time
the peer needs to reach its own best ELBO in the budget divided by the time dual-collapsed needs to
reach that same value (a lower bound on the speed-up to convergence when the peer is still
improving at the end of the budget).

    .venv/bin/python studies/dual/convergence.py --report studies/dual/convergence-m256.jsonl --plot out.png
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from gpytorch.mlls import VariationalELBO
from gpytorch.optim import NGD

import gpvi
from gpvi.baselines import GPyTorchSVGP, predict_gpytorch_svgp
from gpvi.data import uci
from gpvi.metrics import rmse_nlpd
from gpvi.progress import echo, track

B = 1024
TOLERANCE = 1e-3


def train_gpytorch_svgp(model, lik, X, y, budget, eval_every, natural, full_elbo, seed=0):
    """gpytorch's SVGP trained for ``budget`` s of wall time on minibatches of B: Adam (lr 0.01) on
    everything, or NGD (lr 0.1) on q + Adam on the rest (``natural``); ``full_elbo()`` is traced every
    ``eval_every`` s of training time (its own time not counted). Returns (trace, steps)."""
    N = X.shape[0]
    mll = VariationalELBO(lik, model, num_data=N)
    variational = {id(p) for p in model.variational_parameters()}
    hyper = [p for p in [*model.parameters(), *lik.parameters()] if id(p) not in variational or not natural]
    adam = torch.optim.Adam(list({id(p): p for p in hyper}.values()), lr=0.01)
    ngd = NGD(list(model.variational_parameters()), num_data=N, lr=0.1) if natural else None
    gen = torch.Generator().manual_seed(seed)
    trace, elapsed, next_eval, steps = [(0.0, full_elbo())], 0.0, eval_every, 0
    while elapsed < budget:
        start = time.perf_counter()
        model.train(), lik.train()
        idx = torch.randint(N, (B,), generator=gen)
        if ngd is not None:
            ngd.zero_grad()
        adam.zero_grad()
        (-mll(model(X[idx]), y[idx])).backward()
        if ngd is not None:
            ngd.step()
        adam.step()
        elapsed += time.perf_counter() - start
        steps += 1
        if elapsed >= next_eval or elapsed >= budget:
            trace.append((elapsed, full_elbo()))
            next_eval += eval_every
    return trace, steps


def _gpytorch_run(data, M: int, budget: float, eval_every: float, natural: bool, seed: int = 0):
    X, y = data.train_X, data.train_Y[:, 0]
    N = X.shape[0]
    model, lik = GPyTorchSVGP.from_data(X, num_inducing=M, natural=natural)
    mll = VariationalELBO(lik, model, num_data=N)

    def full_elbo() -> float:
        model.train(), lik.train()
        with torch.no_grad():
            return float(sum(mll(model(X[c]), y[c]) * c.numel() for c in torch.arange(N).split(8192)) / N)

    trace, steps = train_gpytorch_svgp(model, lik, X, y, budget, eval_every, natural, full_elbo, seed)
    mean, var = predict_gpytorch_svgp(model, lik, data.test_X)
    rmse, nlpd = rmse_nlpd(mean, var, data.test_Y[:, 0])
    return trace, steps, rmse, nlpd


def _dual_run(data, M: int, budget: float):
    X, Y = data.train_X, data.train_Y
    model = gpvi.DualSVGP(X, Y, num_inducing=M)
    N = X.shape[0]
    trace = []

    def stop(step, parts):
        trace.append((time.perf_counter() - start, float(parts["elbo"]) / N))
        return trace[-1][0] > budget

    start = time.perf_counter()
    result = gpvi.fit(model, objective="collapsed", max_steps=100_000, callback=stop, progress=False)
    trace.append((time.perf_counter() - start, trace[-1][1]))  # the final E-step's time
    with torch.no_grad():
        post = model.posterior(data.test_X, observation_noise=True)
    rmse, nlpd = rmse_nlpd(post.mean[:, 0], post.variance[:, 0], data.test_Y[:, 0])
    return trace, result.num_steps, rmse, nlpd


def time_to(trace, target: float) -> float:
    """First time at which the ELBO is within TOLERANCE (relative) of ``target``."""
    return first_time(trace, target - TOLERANCE * abs(target))


def first_time(trace, value: float) -> float:
    """First time at which the trace reaches ``value`` (inf if never)."""
    return next((t for t, v in trace if v >= value), math.inf)


def speedup_times(peer: dict, dual: dict) -> tuple[float, float]:
    """(time the peer needs to reach its own best ELBO, time dual-collapsed needs to reach that value)."""
    best = max(v for _, v in peer["trace"])
    return first_time(peer["trace"], best), first_time(dual["trace"], best)


def speedup(records: list[dict], peer: str) -> float:
    """The dual speed-up to `peer`'s best ELBO in one (data, split, M) group."""
    by_method = {r["method"]: r for r in records}
    mine, theirs = speedup_times(by_method[peer], by_method["dual-collapsed"])
    return mine / theirs


def summary(groups: dict[tuple, list[dict]]) -> list[str]:
    """One row per (data, M): the speed-ups ÷ Adam / ÷ NGD per split, their minimum, and NLPD wins."""
    cells: dict[tuple, dict[int, tuple[float, float, bool]]] = {}
    for (name, split, M), records in groups.items():
        nlpd = {r["method"]: r["nlpd"] for r in records}
        wins = nlpd["dual-collapsed"] <= min(nlpd["gpytorch-adam"], nlpd["gpytorch-ngd"])
        cells.setdefault((name, M), {})[split] = (
            speedup(records, "gpytorch-adam"),
            speedup(records, "gpytorch-ngd"),
            wins,
        )
    splits = sorted({split for row in cells.values() for split in row})
    lines = [
        "| data | M | "
        + " | ".join(f"split {s}: ÷ Adam / ÷ NGD" for s in splits)
        + " | min ÷ Adam | min ÷ NGD | best NLPD |",
        "|---|---|" + "---|" * (len(splits) + 3),
    ]
    for (name, M), row in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        txt = [f"{row[s][0]:.1f}x / {row[s][1]:.1f}x" if s in row else "–" for s in splits]
        lines.append(
            f"| {name} | {M} | "
            + " | ".join(txt)
            + f" | {min(v[0] for v in row.values()):.1f}x | {min(v[1] for v in row.values()):.1f}x"
            + f" | {sum(v[2] for v in row.values())}/{len(row)} |"
        )
    return lines


def table(records: list[dict], budget: float) -> list[str]:
    """Markdown rows for one (data, split, M) group of records (one per method)."""
    target = max(max(v for _, v in r["trace"]) for r in records)
    dual = next(r for r in records if r["method"] == "dual-collapsed")
    lines = []
    for r in records:
        best = max(v for _, v in r["trace"])
        t = time_to(r["trace"], target)
        t_txt = f"{t:.1f}" if math.isfinite(t) else f">{budget:.0f}"
        speed = ""
        if r is not dual:
            mine, theirs = speedup_times(r, dual)
            speed = f"{mine / theirs:.1f}x ({theirs:.1f} s vs {mine:.0f} s)"
        lines.append(
            f"| {r['data']} | {r['split']} | {r['M']} | {r['method']} | {r['steps']} | {best:.4f} | {t_txt} | "
            f"{r['rmse']:.4f} | {r['nlpd']:.4f} | {speed} |"
        )
    return lines


HEADER = [
    "| data | split | M | method | steps | best ELBO/N | time to 0.1% of best (s) | RMSE | NLPD "
    "| dual speed-up to the peer's best |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def report(path: Path, plot: Path | None, budget: float) -> None:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["data"], r["split"], r["M"]), []).append(r)
    print("\n".join(HEADER))
    for group in groups.values():
        print("\n".join(table(group, budget)))
    print()
    print("\n".join(summary(groups)))
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = sorted({(name, M) for name, _, M in groups})  # one row per (data, M), one column per split
        cols = sorted({split for _, split, _ in groups})
        fig, axes = plt.subplots(len(rows), len(cols), figsize=(4.2 * len(cols), 3.3 * len(rows)), squeeze=False)
        for ax in axes.flat:
            ax.set_visible(False)
        for (name, split, M), group in groups.items():
            ax = axes[rows.index((name, M))][cols.index(split)]
            ax.set_visible(True)
            bests = [max(v for _, v in r["trace"]) for r in group]
            spread = max(bests) - min(bests) + 1e-3  # show every method's best, with room below it
            for r in group:
                t, v = zip(*r["trace"], strict=True)
                ax.plot(t, v, label=r["method"])
            ax.set_ylim(min(bests) - 0.75 * spread, max(bests) + 0.1 * spread)
            ax.set_title(f"{name} split {split}, M = {M}")
            ax.set_xlabel("wall time (s)")
            ax.set_ylabel("full-data ELBO / N")
        next(ax for ax in axes.flat if ax.get_visible()).legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"wrote {plot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["elevators", "kin40k", "protein"])
    parser.add_argument("--splits", nargs="+", type=int, default=[0])
    parser.add_argument("--m", nargs="+", type=int, default=[256])
    parser.add_argument("--budget", type=float, default=240.0)
    parser.add_argument("--eval-every", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="append JSON lines with the traces here")
    parser.add_argument("--quick", action="store_true", help="yacht, M=16, 3 s per method")
    parser.add_argument("--report", type=Path, default=None, help="only tabulate (and plot) this JSON-lines file")
    parser.add_argument("--plot", type=Path, default=None, help="with --report: write ELBO-vs-time curves here")
    args = parser.parse_args()
    if args.report is not None:
        report(args.report, args.plot, args.budget)
        return
    if args.quick:
        args.datasets, args.splits, args.m, args.budget, args.eval_every = ["yacht"], [0], [16], 3.0, 0.5
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)

    print("\n".join(HEADER))
    cells = [(name, split, M) for name in args.datasets for split in args.splits for M in args.m]
    loaded = None
    for name, split, M in track(cells, "(data, split, M)"):  # a bar on stderr (`gpvi.progress`'s rule)
        if loaded is None or loaded[0] != (name, split):
            loaded = ((name, split), uci.load(name, split=split))
        data = loaded[1]
        runs = {
            "gpytorch-adam": _gpytorch_run(data, M, args.budget, args.eval_every, natural=False),
            "gpytorch-ngd": _gpytorch_run(data, M, args.budget, args.eval_every, natural=True),
            "dual-collapsed": _dual_run(data, M, args.budget),
        }
        records = [
            dict(data=name, split=split, M=M, method=method, trace=trace, steps=steps, rmse=rmse, nlpd=nlpd)
            for method, (trace, steps, rmse, nlpd) in runs.items()
        ]
        echo("\n".join(table(records, args.budget)))
        if args.out is not None:
            with args.out.open("a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in records)


if __name__ == "__main__":
    main()
