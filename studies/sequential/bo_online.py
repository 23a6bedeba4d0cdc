"""BO with online updates (issue 18, study 3): the memory-based dual GP against SingleTaskGP.

Joins the BO studies (`bo_online.toml`: "memory-dual", `DualSVGP.update` between full refits
every 50 iterations, 1 000 evaluations; `bo_online_fixed.toml`: the same at 200 evaluations after a
fix of the memory model's inducing-point count; `bo_online_peer.toml`: SingleTaskGP refit at every
iteration, 200 evaluations) and times SingleTaskGP's iteration where its study does not reach:
at n = 200, 400, ..., 1 000 it fits SingleTaskGP (`fit_gpytorch_mll`, BoTorch's default) on the
memory-dual run's first n points and maximises qLogEI with `BayesOpt`'s settings, ``--repeats``
times, in this process, one thread. Prints Markdown tables and writes ``time_vs_n.png``.

    .venv/bin/python studies/sequential/bo_online.py [--out studies/sequential/bo_online] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CHECKPOINTS = (200, 1000)
TIMED_N = (200, 400, 600, 800, 1000)


def load(db: Path) -> dict[tuple[str, str], list[dict]]:
    """Per (problem, method), one dict per run: seed, regret curve by evaluation count, times by n, xs, ys."""
    from gpvi.studies.store import Store

    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    with Store(db) as store:
        for run in store.runs():
            rows = store.evaluations(run.run_id)
            if not rows:
                continue
            regret = [r["regret"] for r in rows]
            best = [min(regret[: i + 1]) for i in range(len(regret))]
            times, seen = {}, set()
            for r in rows:
                if r["iteration"] >= 1 and r["iteration"] not in seen:
                    seen.add(r["iteration"])
                    times[r["n_train"]] = (r["fit_time"] or 0.0) + (r["acq_time"] or 0.0)
            out[run.problem, run.method].append(
                {
                    "seed": run.seed,
                    "status": run.status,
                    "regret": best,
                    "times": times,
                    "x": [r["x"] for r in rows],
                    "y": [r["y"] for r in rows],
                }
            )
    return out


def regret_at(runs: list[dict], n: int) -> tuple[float | None, int]:
    """Median simple regret after ``n`` evaluations over the runs that reached it, and their count."""
    values = [r["regret"][n - 1] for r in runs if len(r["regret"]) >= n]
    return (statistics.median(values) if values else None), len(values)


def mean_time(runs: list[dict], lo: int, hi: int) -> float | None:
    values = [t for r in runs for n, t in r["times"].items() if lo <= n < hi]
    return statistics.fmean(values) if values else None


def time_singletaskgp(problem_label: str, runs: list[dict], repeats: int) -> dict[int, float]:
    """Seconds of one SingleTaskGP BO iteration (fit + qLogEI maximisation) at each n of `TIMED_N`."""
    from gpvi.loops import BayesOpt
    from gpvi.loops.factories import SingleTaskGPFactory
    from gpvi.studies.kinds.bo_problems import ProblemSpec, make_problem

    name, dim = ("Hartmann", 6) if problem_label.startswith("Hartmann") else ("Ackley", 10)
    problem = make_problem(ProblemSpec(label=problem_label, name=name, dim=dim))
    run = max(runs, key=lambda r: len(r["x"]))
    X_all = torch.tensor(run["x"], dtype=torch.float64)
    Y_all = -torch.tensor(run["y"], dtype=torch.float64).unsqueeze(-1)  # maximisation sign
    factory = SingleTaskGPFactory()
    out = {}
    for n in TIMED_N:
        if X_all.shape[0] < n:
            continue
        samples = []
        for rep in range(repeats):
            torch.manual_seed(rep)
            loop = BayesOpt(problem.bounds, factory, "qlogei", minimize=True, seed=rep)
            start = time.perf_counter()
            model = factory.fit(X_all[:n], Y_all[:n], problem.bounds)
            loop.X, loop.Y = X_all[:n], -Y_all[:n]
            loop.model = model
            loop.propose()
            samples.append(time.perf_counter() - start)
        out[n] = statistics.fmean(samples)
        print(f"  SingleTaskGP {problem_label} n = {n}: {out[n]:.2f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "bo_online")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-timing", action="store_true", help="skip timing SingleTaskGP at large n")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ours = load(HERE / "bo_online.sqlite")
    peer = load(HERE / "bo_online_peer.sqlite")
    if (HERE / "bo_online_fixed.sqlite").exists():  # the memory model after the fix of 2026-12-05, 200 evaluations
        fixed = load(HERE / "bo_online_fixed.sqlite")
        peer.update({(p, f"{m} (fixed)"): runs for (p, m), runs in fixed.items()})
    problems = sorted({p for p, _ in ours} | {p for p, _ in peer})

    print("| problem | method | seeds | regret @200 (median) | regret @1000 (median) | regret @200 ÷ STGP |")
    print("|---|---|---|---|---|---|")
    for problem in problems:
        stgp200, _ = regret_at(peer.get((problem, "singletaskgp-qlogei"), []), 200)
        for source in (peer, ours):
            for (p, method), runs in sorted(source.items()):
                if p != problem:
                    continue
                r200, k200 = regret_at(runs, 200)
                r1000, k1000 = regret_at(runs, 1000)
                ratio = r200 / stgp200 if (r200 is not None and stgp200) else None
                fmt = lambda v: "–" if v is None else f"{v:.4g}"  # noqa: E731
                print(
                    f"| {problem} | {method} | {len(runs)} | {fmt(r200)} ({k200}) | "
                    f"{fmt(r1000)} ({k1000}) | {fmt(ratio)} |"
                )

    timed = {}
    if not args.no_timing:
        for p in problems:
            if (p, "memory-dual-qlogei") in ours:
                timed[p] = time_singletaskgp(p, ours[p, "memory-dual-qlogei"], args.repeats)
    print()
    print(
        "| problem | n | memory-dual s/iter (mean over n ± 50) | SingleTaskGP s/iter (timed here) "
        "| SingleTaskGP ÷ memory-dual |"
    )
    print("|---|---|---|---|---|")
    curves = {}
    for problem in problems:
        runs = ours.get((problem, "memory-dual-qlogei"), [])
        xs, ys = [], []
        for n in TIMED_N:
            ours_t = mean_time(runs, n - 50, n + 50)
            stgp_t = timed.get(problem, {}).get(n)
            ratio = stgp_t / ours_t if (ours_t and stgp_t) else None
            print(
                f"| {problem} | {n} | {'–' if ours_t is None else f'{ours_t:.3f}'} | "
                f"{'–' if stgp_t is None else f'{stgp_t:.2f}'} | {'–' if ratio is None else f'{ratio:.1f}x'} |"
            )
        for n in range(50, 1001, 50):
            t = mean_time(runs, n - 25, n + 25)
            if t is not None:
                xs.append(n)
                ys.append(t)
        curves[problem] = (xs, ys)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 3.6), squeeze=False)
    for ax, problem in zip(axes[0], problems, strict=True):
        xs, ys = curves[problem]
        ax.plot(xs, ys, "o-", label="memory-dual (update, refit every 50)")
        peer_runs = peer.get((problem, "singletaskgp-qlogei"), [])
        pxs = [n for n in range(50, 1001, 50) if mean_time(peer_runs, n - 25, n + 25) is not None]
        ax.plot(pxs, [mean_time(peer_runs, n - 25, n + 25) for n in pxs], "s-", label="SingleTaskGP (its BO study)")
        if timed.get(problem):
            ax.plot(list(timed[problem]), list(timed[problem].values()), "k^--", label="SingleTaskGP (timed at n)")
        ax.set_yscale("log")
        ax.set_xlabel("n (evaluations)")
        ax.set_ylabel("s per iteration")
        ax.set_title(problem)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "time_vs_n.png", dpi=110)
    print(f"\nwrote {args.out / 'time_vs_n.png'}")


if __name__ == "__main__":
    main()
