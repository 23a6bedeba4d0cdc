"""How sure is a "median final regret within 1.2x of SingleTaskGP's" verdict? Bootstrap it.

    .venv/bin/python studies/bo/regret_ratio.py studies/bo/synthetic.sqlite [--method svgp-qlogei]
    .venv/bin/python studies/bo/regret_ratio.py studies/bo/synthetic.sqlite studies/bo/noisy_more_seeds.sqlite
    .venv/bin/python studies/bo/regret_ratio.py ... --problems Branin-noisy Levy-8-noisy --plot ratios.png

Several stores pool their seeds per (problem, method) (a seed run in two stores counts once: the last).

Per problem: the method's and the baseline's median final regret over their finished seeds, the
ratio of the medians, a 90% bootstrap interval of that ratio (seeds resampled with replacement,
independently per method, 2000 draws), and in how many seeds run by both the method's final
regret is lower (seeds share the initial design and the noise stream, so this is a paired count).

Then the paired view, over the seeds run by both: the geometric mean of the per-seed ratios,
exp(mean_s log(r_method,s / r_baseline,s)), with a 90% bootstrap interval (seeds resampled in
pairs), the two-sided sign-test p-value (ties excluded), and the verdict of a one-sided 5% test
of "the method is at most 1.2x worse" (upper end of the interval below 1.2). A last row pools the
problems (each problem weighs the same; seeds resampled within each problem).
"""

from __future__ import annotations

import argparse

import numpy as np

from gpvi.studies.kinds.bo_report import default_baseline, eval_rows, final_values, problem_columns
from gpvi.studies.stats import geometric_mean_ratio, paired_log_ratios, sign_counts, sign_test_p
from gpvi.studies.store import Store
from gpvi.studies.tables import groups


def final_regrets(store: Store) -> dict[tuple[str, str], dict[int, float]]:
    """(problem, method) -> {seed: final simple regret} over the finished runs."""
    runs = store.runs()
    rows = eval_rows(store)
    columns = problem_columns(runs, rows)
    return {key: final_values(group, rows, columns[key[0]]) for key, group in groups(runs).items()}


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """5% and 95% quantiles of median(a*) / median(b*) over bootstrap resamples."""
    rng = np.random.default_rng(seed)
    ra = np.median(rng.choice(a, size=(draws, a.size)), axis=1)
    rb = np.median(rng.choice(b, size=(draws, b.size)), axis=1)
    ratios = ra / np.maximum(rb, 1e-300)
    return float(np.quantile(ratios, 0.05)), float(np.quantile(ratios, 0.95))


def paired_table(
    finals: dict[tuple[str, str], dict[int, float]], method: str, baseline: str, margin: float = 1.2
) -> str:
    """The paired Markdown table (see the module's docstring), one row per problem and a pooled row."""
    lines = [
        f"| problem | paired seeds | geometric mean {method} ÷ {baseline} | 90% bootstrap | lower in | "
        f"sign-test p | at most {margin}x worse (5%) |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = paired_groups(finals, method, baseline)
    lines += [_paired_row(problem, [d], margin) for problem, d in groups.items()]
    if len(groups) > 1:
        lines.append(_paired_row(f"all {len(groups)} problems", list(groups.values()), margin))
    return "\n".join(lines)


def paired_groups(finals: dict[tuple[str, str], dict[int, float]], method: str, baseline: str) -> dict[str, np.ndarray]:
    """{problem: the paired log ratios of ``method`` to ``baseline``} over the problems with a shared seed."""
    groups = {}
    for problem in dict.fromkeys(p for p, _ in finals):
        d = paired_log_ratios(finals.get((problem, method), {}), finals.get((problem, baseline), {}))
        if d.size:
            groups[problem] = d
    return groups


def _paired_row(label: str, groups: list[np.ndarray], margin: float) -> str:
    ratio, lo, hi = geometric_mean_ratio(groups)
    d = np.concatenate(groups)
    return (
        f"| {label} | {d.size} | {ratio:.2f} | [{lo:.2f}, {hi:.2f}] | {sign_counts(d)[0]}/{d.size} | "
        f"{sign_test_p(d):.2f} | {'yes' if hi < margin else 'no'} |"
    )


def plot_paired(
    finals: dict[tuple[str, str], dict[int, float]], method: str, baseline: str, path: str, margin: float = 1.2
) -> None:
    """Per problem: every seed's regret ratio (dots), the geometric mean and its 90% interval (bar),
    on a log axis with lines at 1 and at ``margin``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_problem = paired_groups(finals, method, baseline)
    if not by_problem:
        print(f"No seed run by both {method} and {baseline}: no plot.")
        return
    problems, groups = list(by_problem), list(by_problem.values())
    fig, ax = plt.subplots(figsize=(1.3 * len(problems) + 2.0, 3.6))
    jitter = np.random.default_rng(0)
    for i, d in enumerate(groups):
        ax.scatter(i + jitter.uniform(-0.18, 0.18, d.size), np.exp(d), s=9, color="0.6", zorder=2)
        ratio, lo, hi = geometric_mean_ratio([d])
        ax.errorbar(i + 0.3, ratio, yerr=[[ratio - lo], [hi - ratio]], fmt="o", color="C0", capsize=4, zorder=3)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(margin, color="C3", lw=0.8, ls="--", label=f"{margin}x")
    ax.set_yscale("log")
    ax.set_xticks(range(len(problems)), problems, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"final regret, {method} ÷ {baseline}", fontsize=8)
    ax.set_title("per seed (grey) and geometric mean with 90% bootstrap interval (blue)", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db", nargs="+")
    parser.add_argument("--method", default="svgp-qlogei")
    parser.add_argument("--baseline", default=None, help="default: the study's SingleTaskGP method")
    parser.add_argument("--problems", nargs="+", default=None, help="only these problems (e.g. Branin-noisy)")
    parser.add_argument("--max-seed", type=int, default=None, help="only seeds up to this one (inclusive)")
    parser.add_argument("--plot", default=None, help="write the per-seed ratios and their geometric means to this PNG")
    args = parser.parse_args()
    stores = [Store(db) for db in args.db]
    baseline = args.baseline or default_baseline(stores[0])
    finals: dict[tuple[str, str], dict[int, float]] = {}
    for store in stores:
        for key, per_seed in final_regrets(store).items():
            if args.problems is None or key[0] in args.problems:
                kept = {s: r for s, r in per_seed.items() if args.max_seed is None or s <= args.max_seed}
                finals.setdefault(key, {}).update(kept)
    print(f"| problem | seeds | {args.method} median | {baseline} median | ratio | 90% bootstrap | lower in |")
    print("|---|---|---|---|---|---|---|")
    for problem in dict.fromkeys(p for p, _ in finals):
        mine, peer = finals.get((problem, args.method), {}), finals.get((problem, baseline), {})
        if not mine or not peer:
            continue
        a, b = np.array(list(mine.values())), np.array(list(peer.values()))
        lo, hi = bootstrap_ratio(a, b)
        d = paired_log_ratios(mine, peer)
        print(
            f"| {problem} | {a.size}/{b.size} | {np.median(a):.3g} | {np.median(b):.3g} | "
            f"{np.median(a) / np.median(b):.2f} | [{lo:.2f}, {hi:.2f}] | {sign_counts(d)[0]}/{d.size} |"
        )
    print()
    print(paired_table(finals, args.method, baseline))
    if args.plot:
        plot_paired(finals, args.method, baseline, args.plot)
    for store in stores:
        store.close()


if __name__ == "__main__":
    main()
