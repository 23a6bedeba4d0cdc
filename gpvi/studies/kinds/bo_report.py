"""The "bo" kind's report: final-regret tables with paired ratios to a baseline, regret and time plots, progress.

Conventions (see also `gpvi.studies.tables`):

* The value of a BO run at iteration ``it`` is the minimum of its ``regret`` column (or ``best``
  when the problem has no known optimum) over the rows with ``iteration <= it``.
* The time of a BO iteration is ``fit_time + acq_time`` of its first row (the rows of one
  iteration, q > 1 points, share them), counted once per iteration >= 1; a missing time counts
  as 0, an iteration with both missing is left out.
* The baseline (default: the study's first method whose model is BoTorch's "singletaskgp") is
  compared with every other method on the seeds both finished (they share initial designs and
  noise): the geometric mean of the per-seed regret ratios, with a 90% bootstrap interval
  (`gpvi.studies.stats`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpvi.studies.plots import problem_panels, save
from gpvi.studies.store import Run, Store
from gpvi.studies.tables import fmt, groups, median, quartiles, ratio

EVAL_SQL = (
    "SELECT run_id, idx, iteration, best, regret, fit_time, acq_time, n_train FROM evaluations ORDER BY run_id, idx"
)

PAIRED_KEYS = ("paired_seeds", "paired_lower", "paired_ratio", "paired_ratio_lo", "paired_ratio_hi")

Rows = dict[int, list[dict[str, Any]]]


def eval_rows(store: Store) -> Rows:
    """Evaluation rows (without x) grouped by run id, in idx order."""
    out: Rows = defaultdict(list)
    for r in store.query(EVAL_SQL):
        out[r["run_id"]].append(dict(r))
    return out


def problem_columns(runs: Sequence[Run], rows: Rows) -> dict[str, str]:
    """Per problem, the column plotted and summarised: "regret" if any row has one, else "best".

    A problem without any evaluation yet uses "regret" when all its runs know the optimal value.
    """
    by_problem: dict[str, list[Run]] = {}
    for r in runs:
        by_problem.setdefault(r.problem, []).append(r)
    out = {}
    for problem, prs in by_problem.items():
        prows = [e for r in prs for e in rows.get(r.run_id, [])]
        if prows:
            has_regret = any(e["regret"] is not None for e in prows)
        else:
            has_regret = all(r.optimal_value is not None for r in prs)
        out[problem] = "regret" if has_regret else "best"
    return out


def metric_label(column: str) -> str:
    return "simple regret" if column == "regret" else "best value"


def curve(rows: Sequence[dict[str, Any]], column: str) -> list[float | None]:
    """Value per iteration 0..last: min of `column` over the rows with iteration <= it."""
    if not rows:
        return []
    by_it: dict[int, list[float]] = defaultdict(list)
    for e in rows:
        if e[column] is not None:
            by_it[e["iteration"]].append(e[column])
    out: list[float | None] = []
    cur: float | None = None
    for it in range(max(e["iteration"] for e in rows) + 1):
        for v in by_it.get(it, []):
            cur = v if cur is None else min(cur, v)
        out.append(cur)
    return out


def iteration_times(rows: Sequence[dict[str, Any]]) -> list[tuple[int | None, float]]:
    """(n_train, fit_time + acq_time) once per iteration >= 1, from the iteration's first row."""
    seen: set[int] = set()
    out = []
    for e in rows:
        it = e["iteration"]
        if it < 1 or it in seen:
            continue
        seen.add(it)
        if e["fit_time"] is None and e["acq_time"] is None:
            continue
        out.append((e["n_train"], (e["fit_time"] or 0.0) + (e["acq_time"] or 0.0)))
    return out


def default_baseline(store: Store) -> str | None:
    """The peer the other methods are compared with: the study's first method whose model is
    BoTorch's "singletaskgp" (read from the stored TOML), else None."""
    from gpvi.studies.spec import StudyError, parse_spec

    text = store.meta().get("spec")
    if not text:
        return None
    try:
        spec = parse_spec(text)
    except (StudyError, ValueError):
        return None
    return next((m.name for m in spec.methods if m.model == "singletaskgp"), None)


def bo_summary(store: Store, baseline: str | None = None) -> list[dict[str, Any]]:
    """One dict per (problem, method) of a BO study.

    Keys: problem, method, metric ("simple regret" or "best value"), runs_done, runs_total,
    final_regret_median/q25/q75 (quartiles over the runs with status 'done' of the final value of
    the metric, i.e. its minimum over all the run's rows), time_per_iter_median (median over
    all iterations >= 1 of all runs, each iteration once, of fit_time + acq_time, in seconds), and
    regret_ratio / time_ratio: the method's final-regret median and time per iteration divided by
    the ``baseline`` method's on the same problem (default `default_baseline`; None without one);
    paired_seeds, paired_lower, paired_ratio, paired_ratio_lo/hi: over the seeds both finished
    (they share initial designs and noise), how many, in how many the method's final regret is
    lower, and the geometric mean of the per-seed regret ratios with its 90% bootstrap interval
    (`gpvi.studies.stats`; None for the baseline itself, without a baseline or a shared seed, and
    for "best value" metrics).
    """
    runs = store.runs()
    rows = eval_rows(store)
    columns = problem_columns(runs, rows)
    baseline = default_baseline(store) if baseline is None else baseline
    out, finals = [], {}
    for (problem, method), group in groups(runs).items():
        column = columns[problem]
        finals[problem, method] = final_values(group, rows, column)
        med, q25, q75 = quartiles(list(finals[problem, method].values()))
        times = [t for r in group for _, t in iteration_times(rows.get(r.run_id, []))]
        out.append(
            {
                "problem": problem,
                "method": method,
                "metric": metric_label(column),
                "runs_done": sum(r.status == "done" for r in group),
                "runs_total": len(group),
                "final_regret_median": med,
                "final_regret_q25": q25,
                "final_regret_q75": q75,
                "time_per_iter_median": median(times),
            }
        )
    peers = {s["problem"]: s for s in out if s["method"] == baseline}
    for s in out:
        peer = peers.get(s["problem"], {})
        s["regret_ratio"] = ratio(s["final_regret_median"], peer.get("final_regret_median"))
        s["time_ratio"] = ratio(s["time_per_iter_median"], peer.get("time_per_iter_median"))
        comparable = s["problem"] in peers and s["method"] != baseline and s["metric"] == "simple regret"
        mine, theirs = finals[s["problem"], s["method"]], finals.get((s["problem"], baseline), {})
        s.update(paired_comparison(mine, theirs) if comparable else dict.fromkeys(PAIRED_KEYS))
    return out


def final_values(group: Sequence[Run], rows: Rows, column: str) -> dict[int, float]:
    """{seed: final value of the metric} over the finished runs of one (problem, method)."""
    finals = {}
    for r in group:
        values = curve(rows.get(r.run_id, []), column) if r.status == "done" else []
        if values and values[-1] is not None:
            finals[r.seed] = values[-1]
    return finals


def paired_comparison(mine: dict[int, float], peer: dict[int, float]) -> dict[str, Any]:
    """The paired statistics of `bo_summary` (PAIRED_KEYS) from {seed: final regret} of a method and its peer."""
    from gpvi.studies.stats import geometric_mean_ratio, paired_log_ratios, sign_counts

    d = paired_log_ratios(mine, peer)
    if d.size == 0:
        return dict.fromkeys(PAIRED_KEYS)
    mean_ratio, lo, hi = geometric_mean_ratio([d])
    return dict(zip(PAIRED_KEYS, (int(d.size), sign_counts(d)[0], mean_ratio, lo, hi), strict=True))


def regret_band(curves: Sequence[list[float | None]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per iteration, quartiles over the runs that reached it (and have a value there)."""
    its, med, lo, hi = [], [], [], []
    for it in range(max((len(c) for c in curves), default=0)):
        vs = [c[it] for c in curves if it < len(c) and c[it] is not None]
        if vs:
            m, q25, q75 = quartiles(vs)
            its.append(it)
            med.append(m)
            lo.append(q25)
            hi.append(q75)
    return its, med, lo, hi


def plot_regret(store: Store, path: str | Path) -> Path:
    """Plot, one panel per problem, the median and 25–75% band over seeds of each method's value per
    iteration (simple regret, or best value without a known optimum; log y when all positive).

    Saves a PNG at `path` and returns it.
    """
    runs = store.runs()
    rows = eval_rows(store)
    columns = problem_columns(runs, rows)

    def draw(ax: Any, problem: str, group: list[Run], color: str) -> list[float]:
        its, med, lo, hi = regret_band([curve(rows.get(r.run_id, []), columns[problem]) for r in group])
        if not its:
            return []
        ax.plot(its, med, color=color, label=group[0].method)
        ax.fill_between(its, lo, hi, color=color, alpha=0.2, linewidth=0)
        return med + lo + hi

    fig = problem_panels(
        runs,
        list(columns),
        draw,
        empty="no evaluations yet",
        xlabel="iteration",
        ylabel=lambda problem: metric_label(columns[problem]),
        integer_x=True,
    )
    return save(fig, path)


def plot_time(store: Store, path: str | Path) -> Path:
    """Plot, one panel per problem, the median over seeds of the time per iteration (fit + acq, s)
    against the number of training points, per method (log y when all positive).

    Saves a PNG at `path` and returns it.
    """
    runs = store.runs()
    rows = eval_rows(store)

    def draw(ax: Any, problem: str, group: list[Run], color: str) -> list[float]:
        by_n: dict[int, list[float]] = defaultdict(list)
        for r in group:
            for n, t in iteration_times(rows.get(r.run_id, [])):
                if n is not None:
                    by_n[n].append(t)
        if not by_n:
            return []
        ns = sorted(by_n)
        med = [float(np.median(by_n[n])) for n in ns]
        ax.plot(ns, med, marker=".", color=color, label=group[0].method)
        return med

    fig = problem_panels(
        runs,
        list(dict.fromkeys(r.problem for r in runs)),
        draw,
        empty="no timed iterations yet",
        xlabel="training points",
        ylabel=lambda problem: "fit + acq time per iteration (s)",
    )
    return save(fig, path)


def bo_table(summary: Sequence[dict[str, Any]], baseline: str | None = None) -> list[str]:
    """Markdown rows of `bo_summary`: final regret and time per iteration, and the ratios to ``baseline``."""
    ratios = baseline is not None and any(s["method"] == baseline for s in summary)
    header = "| problem | method | runs | final regret median [q25, q75] | time/iter s |"
    lines = [header, "|---|---|---|---|---|"]
    if ratios:
        header += f" regret ÷ {baseline} | paired ÷ {baseline} [90%] | lower in | time ÷ {baseline} |"
        lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        cell = fmt(s["final_regret_median"])
        if s["final_regret_median"] is not None:
            cell += f" [{fmt(s['final_regret_q25'])}, {fmt(s['final_regret_q75'])}]"
            if s["metric"] != "simple regret":
                cell += f" ({s['metric']})"
        line = (
            f"| {s['problem']} | {s['method']} | {s['runs_done']}/{s['runs_total']} | {cell} "
            f"| {fmt(s['time_per_iter_median'])} |"
        )
        if ratios:
            line += f" {fmt(s['regret_ratio'])} | {paired_cell(s)} | {lower_cell(s)} | {fmt(s['time_ratio'])} |"
        lines.append(line)
    return lines


def paired_cell(s: dict[str, Any]) -> str:
    if s["paired_ratio"] is None:
        return "–"
    return f"{fmt(s['paired_ratio'])} [{fmt(s['paired_ratio_lo'])}, {fmt(s['paired_ratio_hi'])}]"


def lower_cell(s: dict[str, Any]) -> str:
    return "–" if s["paired_seeds"] is None else f"{s['paired_lower']}/{s['paired_seeds']}"


def batch_sizes(runs: Sequence[Run], rows: Rows) -> dict[str, int]:
    """Per method, the most rows stored for one iteration >= 1 of any of its runs (q; 1 if none yet)."""
    out: dict[str, int] = {}
    for r in runs:
        per_it: dict[int, int] = defaultdict(int)
        for e in rows.get(r.run_id, []):
            if e["iteration"] >= 1:
                per_it[e["iteration"]] += 1
        out[r.method] = max(out.get(r.method, 1), *per_it.values(), 1)
    return out


def expected_rows(run: Run, rows: Sequence[dict[str, Any]], q: int) -> int | None:
    """Initial points (the rows at iteration 0) + budget * q; None while either count is unknown."""
    n_init = sum(e["iteration"] == 0 for e in rows)
    return None if run.budget is None or n_init == 0 else n_init + run.budget * q


def progress(stored: int, expected: Sequence[int | None]) -> str:
    if expected and all(e is not None for e in expected):
        total = sum(expected)  # type: ignore[arg-type]
        return f"{stored} / {total} evaluations" + (f" ({100 * stored / total:.0f}%)" if total else "")
    return f"{stored} evaluations stored"


def status_lines(store: Store, runs: list[Run]) -> list[str]:
    """Evaluations stored / expected, and one progress line per method.

    A run expects its initial points (its rows at iteration 0) + budget * q, with q the method's
    points per iteration seen so far (1 before any); the expected total is shown only once every run
    has its initial design, else just the stored count.
    """
    by_method: dict[str, list[Run]] = {}
    for r in runs:
        by_method.setdefault(r.method, []).append(r)
    rows = eval_rows(store)
    qs = batch_sizes(runs, rows)
    expected = {r.run_id: expected_rows(r, rows.get(r.run_id, []), qs[r.method]) for r in runs}
    stored = sum(len(rows.get(r.run_id, [])) for r in runs)
    lines = ["Evaluations: " + progress(stored, list(expected.values()))]
    for method, group in by_method.items():
        m_stored = sum(len(rows.get(r.run_id, [])) for r in group)
        m_expected = [expected[r.run_id] for r in group]
        lines.append(
            f"  {method}: {sum(r.status == 'done' for r in group)}/{len(group)} runs done, "
            + progress(m_stored, m_expected)
        )
    return lines


__all__ = [
    "EVAL_SQL",
    "PAIRED_KEYS",
    "bo_summary",
    "bo_table",
    "curve",
    "default_baseline",
    "eval_rows",
    "final_values",
    "iteration_times",
    "plot_regret",
    "plot_time",
    "problem_columns",
    "regret_band",
    "status_lines",
]
