"""Summaries, plots and a Markdown report of a study store (`gpvi.studies.store.Store`).

Two kinds of study, read from `meta['kind']` (inferred from the data when missing):

* ``"bo"``: runs are (problem, method, seed); their `evaluations` carry per-iteration regret, best
  value and timings. See `bo_summary`, `plot_regret`, `plot_time`.
* ``"regression"``: runs are (dataset, method, split); their results are scalar `metrics`. See
  `regression_summary`, `plot_metric_bars`.

Conventions used throughout:

* Quantiles are numpy's default (``numpy.percentile``, linear interpolation between order
  statistics); the "median [q25, q75]" of a sample is ``numpy.percentile(v, [50, 25, 75])``.
* Standard deviations are sample standard deviations (``ddof=1``); ``None`` for a single value.
* The value of a BO run at iteration ``it`` is the minimum of its ``regret`` column (or ``best``
  when the problem has no known optimum) over the rows with ``iteration <= it``.
* The time of a BO iteration is ``fit_time + acq_time`` of its first row (the rows of one
  iteration, q > 1 points, share them), counted once per iteration >= 1; a missing time counts
  as 0, an iteration with both missing is left out.
* Missing numbers are ``None`` and are printed as "–". Every function works on an empty or
  partially filled store.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpvi.studies.store import Run, Store

STATUSES = ("done", "running", "pending", "failed")
REGRESSION_METRICS_FIRST = ("rmse", "nlpd", "fit_time", "predict_time", "peak_memory_mb")
_EVAL_SQL = (
    "SELECT run_id, idx, iteration, best, regret, fit_time, acq_time, n_train FROM evaluations ORDER BY run_id, idx"
)

Rows = dict[int, list[dict[str, Any]]]


# -- loading ---------------------------------------------------------------------------------------
def study_kind(store: Store) -> str:
    """The study kind: `meta['kind']`, else "regression" if only metrics are stored, else "bo"."""
    kind = store.meta().get("kind")
    if kind:
        return kind
    has_metrics = bool(store.query("SELECT 1 FROM metrics LIMIT 1"))
    has_evals = bool(store.query("SELECT 1 FROM evaluations LIMIT 1"))
    return "regression" if has_metrics and not has_evals else "bo"


def study_name(store: Store) -> str:
    """The study name: `meta['study']`, else the `study` of the first run, else "(unnamed)"."""
    name = store.meta().get("study")
    if name:
        return name
    runs = store.runs()
    return runs[0].study if runs else "(unnamed)"


def _eval_rows(store: Store) -> Rows:
    """Evaluation rows (without x) grouped by run id, in idx order."""
    out: Rows = defaultdict(list)
    for r in store.query(_EVAL_SQL):
        out[r["run_id"]].append(dict(r))
    return out


def _groups(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs grouped by (problem, method), in order of first appearance."""
    out: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        out.setdefault((r.problem, r.method), []).append(r)
    return out


def _problem_columns(runs: Sequence[Run], rows: Rows) -> dict[str, str]:
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


def _metric_label(column: str) -> str:
    return "simple regret" if column == "regret" else "best value"


# -- numbers ---------------------------------------------------------------------------------------
def _quartiles(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """(median, q25, q75) with numpy's default linear interpolation; Nones when empty."""
    if not values:
        return None, None, None
    med, q25, q75 = np.percentile(np.asarray(values, dtype=float), [50, 25, 75])
    return float(med), float(q25), float(q75)


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1; None for fewer than two values)."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else None


def _curve(rows: Sequence[dict[str, Any]], column: str) -> list[float | None]:
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


def _iteration_times(rows: Sequence[dict[str, Any]]) -> list[tuple[int | None, float]]:
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


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no error message)"


def _fmt(v: float | None) -> str:
    """3 significant digits, "–" for a missing value."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def _status_counts(runs: Sequence[Run]) -> dict[str, int]:
    counts = {s: 0 for s in STATUSES}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


# -- summaries -------------------------------------------------------------------------------------
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
    rows = _eval_rows(store)
    columns = _problem_columns(runs, rows)
    baseline = default_baseline(store) if baseline is None else baseline
    out, finals = [], {}
    for (problem, method), group in _groups(runs).items():
        column = columns[problem]
        finals[problem, method] = _final_values(group, rows, column)
        med, q25, q75 = _quartiles(list(finals[problem, method].values()))
        times = [t for r in group for _, t in _iteration_times(rows.get(r.run_id, []))]
        out.append(
            {
                "problem": problem,
                "method": method,
                "metric": _metric_label(column),
                "runs_done": sum(r.status == "done" for r in group),
                "runs_total": len(group),
                "final_regret_median": med,
                "final_regret_q25": q25,
                "final_regret_q75": q75,
                "time_per_iter_median": _median(times),
            }
        )
    peers = {s["problem"]: s for s in out if s["method"] == baseline}
    for s in out:
        peer = peers.get(s["problem"], {})
        s["regret_ratio"] = _ratio(s["final_regret_median"], peer.get("final_regret_median"))
        s["time_ratio"] = _ratio(s["time_per_iter_median"], peer.get("time_per_iter_median"))
        paired = s["problem"] in peers and s["method"] != baseline and s["metric"] == "simple regret"
        mine, theirs = finals[s["problem"], s["method"]], finals.get((s["problem"], baseline), {})
        s.update(_paired(mine, theirs) if paired else dict.fromkeys(PAIRED_KEYS))
    return out


PAIRED_KEYS = ("paired_seeds", "paired_lower", "paired_ratio", "paired_ratio_lo", "paired_ratio_hi")


def _final_values(group: Sequence[Run], rows: Rows, column: str) -> dict[int, float]:
    """{seed: final value of the metric} over the finished runs of one (problem, method)."""
    finals = {}
    for r in group:
        curve = _curve(rows.get(r.run_id, []), column) if r.status == "done" else []
        if curve and curve[-1] is not None:
            finals[r.seed] = curve[-1]
    return finals


def _paired(mine: dict[int, float], peer: dict[int, float]) -> dict[str, Any]:
    from gpvi.studies.stats import geometric_mean_ratio, paired_log_ratios, sign_counts

    d = paired_log_ratios(mine, peer)
    if d.size == 0:
        return dict.fromkeys(PAIRED_KEYS)
    ratio, lo, hi = geometric_mean_ratio([d])
    return dict(zip(PAIRED_KEYS, (int(d.size), sign_counts(d)[0], ratio, lo, hi), strict=True))


def _ratio(value: float | None, peer: float | None) -> float | None:
    return None if value is None or peer is None or peer <= 0 else value / peer


def _metric_order(names: Iterable[str]) -> list[str]:
    """The usual regression metrics first (rmse, nlpd, times, memory), then the others sorted."""
    names = set(names)
    return [n for n in REGRESSION_METRICS_FIRST if n in names] + sorted(names - set(REGRESSION_METRICS_FIRST))


def regression_summary(store: Store) -> list[dict[str, Any]]:
    """One dict per (dataset, method) of a regression study.

    Keys: dataset, method, splits (runs with status 'done'), splits_total, and metrics: a dict
    ``{name: {"mean": ..., "std": ..., "n": ...}}`` over the done runs' non-missing values, with the
    sample standard deviation (ddof=1, None for one value). Metric names are ordered rmse, nlpd,
    fit_time, predict_time, peak_memory_mb, then the others alphabetically.
    """
    runs = store.runs()
    values: dict[int, dict[str, float]] = defaultdict(dict)
    for r in store.query("SELECT run_id, name, value FROM metrics"):
        if r["value"] is not None:
            values[r["run_id"]][r["name"]] = r["value"]
    out = []
    for (dataset, method), group in _groups(runs).items():
        done = [r for r in group if r.status == "done"]
        names = _metric_order(n for r in done for n in values.get(r.run_id, {}))
        metrics = {}
        for name in names:
            vs = [values[r.run_id][name] for r in done if name in values.get(r.run_id, {})]
            mean, std = _mean_std(vs)
            metrics[name] = {"mean": mean, "std": std, "n": len(vs)}
        out.append(
            {"dataset": dataset, "method": method, "splits": len(done), "splits_total": len(group), "metrics": metrics}
        )
    return out


# -- plots -----------------------------------------------------------------------------------------
def _figure(n_panels: int, ncols_max: int = 3) -> tuple[Any, list[Any]]:
    """An Agg figure with a grid of `n_panels` axes (at least one); unused cells are hidden."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(n_panels, 1)
    ncols = min(ncols_max, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.5 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def _empty_panel(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _method_colors(runs: Sequence[Run]) -> dict[str, str]:
    """One colour per method, the same in every panel."""
    methods = list(dict.fromkeys(r.method for r in runs))
    return {m: f"C{i % 10}" for i, m in enumerate(methods)}


def _regret_band(curves: Sequence[list[float | None]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per iteration, quartiles over the runs that reached it (and have a value there)."""
    its, med, lo, hi = [], [], [], []
    for it in range(max((len(c) for c in curves), default=0)):
        vs = [c[it] for c in curves if it < len(c) and c[it] is not None]
        if vs:
            m, q25, q75 = _quartiles(vs)
            its.append(it)
            med.append(m)
            lo.append(q25)
            hi.append(q75)
    return its, med, lo, hi


def _problem_panels(
    runs: Sequence[Run],
    problems: Sequence[str],
    draw: Callable[[Any, Run, list[Run], str], list[float]],
    *,
    empty: str,
    xlabel: str,
    ylabel: Callable[[str], str],
    integer_x: bool = False,
) -> Any:
    """One panel per problem, one ``draw(ax, problem, runs_of_method, color) -> plotted y values`` call per
    method; panels with nothing plotted say ``empty``, others get labels, a legend and log y when all
    plotted values are positive. Returns the figure."""
    from matplotlib.ticker import MaxNLocator

    colors = _method_colors(runs)
    groups = _groups(runs)
    fig, axes = _figure(len(problems))
    if not problems:
        _empty_panel(axes[0], "no runs yet")
    for ax, problem in zip(axes, problems, strict=False):
        plotted: list[float] = []
        for (p, method), group in groups.items():
            if p == problem:
                plotted += draw(ax, problem, group, colors[method])
        if not plotted:
            _empty_panel(ax, empty)
        else:
            if all(v > 0 for v in plotted):
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            if integer_x:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(ylabel(problem))
            ax.legend(fontsize="small")
        ax.set_title(problem)
    return fig


def plot_regret(store: Store, path: str | Path) -> Path:
    """Plot, one panel per problem, the median and 25–75% band over seeds of each method's value per
    iteration (simple regret, or best value without a known optimum; log y when all positive).

    Saves a PNG at `path` and returns it.
    """
    runs = store.runs()
    rows = _eval_rows(store)
    columns = _problem_columns(runs, rows)

    def draw(ax: Any, problem: str, group: list[Run], color: str) -> list[float]:
        its, med, lo, hi = _regret_band([_curve(rows.get(r.run_id, []), columns[problem]) for r in group])
        if not its:
            return []
        ax.plot(its, med, color=color, label=group[0].method)
        ax.fill_between(its, lo, hi, color=color, alpha=0.2, linewidth=0)
        return med + lo + hi

    fig = _problem_panels(
        runs,
        list(columns),
        draw,
        empty="no evaluations yet",
        xlabel="iteration",
        ylabel=lambda problem: _metric_label(columns[problem]),
        integer_x=True,
    )
    return _save(fig, path)


def plot_time(store: Store, path: str | Path) -> Path:
    """Plot, one panel per problem, the median over seeds of the time per iteration (fit + acq, s)
    against the number of training points, per method (log y when all positive).

    Saves a PNG at `path` and returns it.
    """
    runs = store.runs()
    rows = _eval_rows(store)

    def draw(ax: Any, problem: str, group: list[Run], color: str) -> list[float]:
        by_n: dict[int, list[float]] = defaultdict(list)
        for r in group:
            for n, t in _iteration_times(rows.get(r.run_id, [])):
                if n is not None:
                    by_n[n].append(t)
        if not by_n:
            return []
        ns = sorted(by_n)
        med = [float(np.median(by_n[n])) for n in ns]
        ax.plot(ns, med, marker=".", color=color, label=group[0].method)
        return med

    fig = _problem_panels(
        runs,
        list(dict.fromkeys(r.problem for r in runs)),
        draw,
        empty="no timed iterations yet",
        xlabel="training points",
        ylabel=lambda problem: "fit + acq time per iteration (s)",
    )
    return _save(fig, path)


def plot_metric_bars(store: Store, path: str | Path, metric: str = "rmse") -> Path:
    """Bar plot of a regression metric: mean ± std over splits per dataset (groups) and method (bars).

    Saves a PNG at `path` and returns it.
    """
    summary = regression_summary(store)
    datasets = list(dict.fromkeys(s["dataset"] for s in summary))
    methods = list(dict.fromkeys(s["method"] for s in summary))
    fig, axes = _figure(1)
    ax = axes[0]
    width = 0.8 / max(len(methods), 1)
    drawn = False
    for j, method in enumerate(methods):
        xs, means, stds = [], [], []
        for i, dataset in enumerate(datasets):
            m = next(
                (s["metrics"].get(metric) for s in summary if (s["dataset"], s["method"]) == (dataset, method)), None
            )
            if m and m["mean"] is not None:
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                means.append(m["mean"])
                stds.append(m["std"] or 0.0)
        if xs:
            ax.bar(xs, means, width, yerr=stds, capsize=3, color=f"C{j % 10}", label=method)
            drawn = True
    if drawn:
        ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right")
        ax.set_ylabel(metric)
        ax.legend(fontsize="small")
    else:
        _empty_panel(ax, f"no {metric} results yet")
    return _save(fig, path)


# -- Markdown report -------------------------------------------------------------------------------
def _runs_line(runs: Sequence[Run]) -> str:
    counts = _status_counts(runs)
    return f"Runs: {len(runs)} total — " + ", ".join(f"{n} {s}" for s, n in counts.items())


def _failures_section(runs: Sequence[Run]) -> list[str]:
    failed = [r for r in runs if r.status == "failed"]
    lines = ["## Failures", ""]
    if not failed:
        return [*lines, "None."]
    return lines + [f"- {r.problem} / {r.method} / seed {r.seed}: `{_last_line(r.error)}`" for r in failed]


def _bo_table(summary: Sequence[dict[str, Any]], baseline: str | None = None) -> list[str]:
    ratios = baseline is not None and any(s["method"] == baseline for s in summary)
    header = "| problem | method | runs | final regret median [q25, q75] | time/iter s |"
    lines = [header, "|---|---|---|---|---|"]
    if ratios:
        header += f" regret ÷ {baseline} | paired ÷ {baseline} [90%] | lower in | time ÷ {baseline} |"
        lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        cell = _fmt(s["final_regret_median"])
        if s["final_regret_median"] is not None:
            cell += f" [{_fmt(s['final_regret_q25'])}, {_fmt(s['final_regret_q75'])}]"
            if s["metric"] != "simple regret":
                cell += f" ({s['metric']})"
        line = (
            f"| {s['problem']} | {s['method']} | {s['runs_done']}/{s['runs_total']} | {cell} "
            f"| {_fmt(s['time_per_iter_median'])} |"
        )
        if ratios:
            line += f" {_fmt(s['regret_ratio'])} | {_paired_cell(s)} | {_lower_cell(s)} | {_fmt(s['time_ratio'])} |"
        lines.append(line)
    return lines


def _paired_cell(s: dict[str, Any]) -> str:
    if s["paired_ratio"] is None:
        return "–"
    return f"{_fmt(s['paired_ratio'])} [{_fmt(s['paired_ratio_lo'])}, {_fmt(s['paired_ratio_hi'])}]"


def _lower_cell(s: dict[str, Any]) -> str:
    return "–" if s["paired_seeds"] is None else f"{s['paired_lower']}/{s['paired_seeds']}"


def _regression_table(summary: Sequence[dict[str, Any]]) -> list[str]:
    names = _metric_order(n for s in summary for n in s["metrics"])
    header = ["dataset", "method", "splits"] + [f"{n} s" if n.endswith("_time") else n for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary:
        cells = [s["dataset"], s["method"], f"{s['splits']}/{s['splits_total']}"]
        for n in names:
            m = s["metrics"].get(n)
            if m is None or m["mean"] is None:
                cells.append("–")
            else:
                cells.append(_fmt(m["mean"]) + ("" if m["std"] is None else f" ± {_fmt(m['std'])}"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown_report(store: Store, out_dir: str | Path, baseline: str | None = None) -> str:
    """Write `report.md` (and its plots) into `out_dir` (created) and return the Markdown text.

    BO studies: run counts by status, a per (problem, method) table of final regret median
    [q25, q75] and median time per iteration, each also divided by the ``baseline`` method's
    (default `default_baseline`: the study's SingleTaskGP method), the paired comparison with it
    (geometric mean of the per-seed regret ratios [90% bootstrap], seeds where the method is
    lower; see `bo_summary`), `regret.png` and `time.png`, and the failures.
    Regression studies: run counts, a per (dataset, method) table of mean ± std of every metric,
    `rmse.png` when RMSE is reported, and the failures.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = store.runs()
    kind = study_kind(store)
    lines = [f"# Study {study_name(store)} ({kind})", "", _runs_line(runs), ""]
    if kind == "regression":
        summary = regression_summary(store)
        lines += _regression_table(summary)
        if any("rmse" in s["metrics"] for s in summary):
            plot_metric_bars(store, out_dir / "rmse.png", "rmse")
            lines += ["", "![RMSE](rmse.png)"]
    else:
        baseline = default_baseline(store) if baseline is None else baseline
        lines += _bo_table(bo_summary(store, baseline), baseline)
        plot_regret(store, out_dir / "regret.png")
        plot_time(store, out_dir / "time.png")
        lines += ["", "![regret](regret.png)", "", "![time per iteration](time.png)"]
    text = "\n".join([*lines, "", *_failures_section(runs)]) + "\n"
    (out_dir / "report.md").write_text(text)
    return text


# -- progress --------------------------------------------------------------------------------------
def _batch_sizes(runs: Sequence[Run], rows: Rows) -> dict[str, int]:
    """Per method, the most rows stored for one iteration >= 1 of any of its runs (q; 1 if none yet)."""
    out: dict[str, int] = {}
    for r in runs:
        per_it: dict[int, int] = defaultdict(int)
        for e in rows.get(r.run_id, []):
            if e["iteration"] >= 1:
                per_it[e["iteration"]] += 1
        out[r.method] = max(out.get(r.method, 1), *per_it.values(), 1)
    return out


def _expected(run: Run, rows: Sequence[dict[str, Any]], q: int) -> int | None:
    """Initial points (the rows at iteration 0) + budget * q; None while either count is unknown."""
    n_init = sum(e["iteration"] == 0 for e in rows)
    return None if run.budget is None or n_init == 0 else n_init + run.budget * q


def _progress(stored: int, expected: Sequence[int | None]) -> str:
    if expected and all(e is not None for e in expected):
        total = sum(expected)  # type: ignore[arg-type]
        return f"{stored} / {total} evaluations" + (f" ({100 * stored / total:.0f}%)" if total else "")
    return f"{stored} evaluations stored"


def status_text(store: Store) -> str:
    """A short multi-line progress summary: run counts per status, evaluations stored / expected,
    one progress line per method, and the failed runs with the last line of their error.

    BO only: a run expects its initial points (its rows at iteration 0) + budget * q, with q the
    method's points per iteration seen so far (1 before any); the expected total is shown only
    once every run has its initial design, else just the stored count.
    """
    runs = store.runs()
    kind = study_kind(store)
    lines = [f"Study {study_name(store)} ({kind}): " + _runs_line(runs)]
    by_method: dict[str, list[Run]] = {}
    for r in runs:
        by_method.setdefault(r.method, []).append(r)
    if kind == "regression":
        with_results = {r["run_id"] for r in store.query("SELECT DISTINCT run_id FROM metrics")}
        lines.append(f"Results: {sum(r.run_id in with_results for r in runs)} runs with metrics")
        for method, group in by_method.items():
            lines.append(f"  {method}: {sum(r.status == 'done' for r in group)}/{len(group)} runs done")
    else:
        rows = _eval_rows(store)
        qs = _batch_sizes(runs, rows)
        expected = {r.run_id: _expected(r, rows.get(r.run_id, []), qs[r.method]) for r in runs}
        stored = sum(len(rows.get(r.run_id, [])) for r in runs)
        lines.append("Evaluations: " + _progress(stored, list(expected.values())))
        for method, group in by_method.items():
            m_stored = sum(len(rows.get(r.run_id, [])) for r in group)
            m_expected = [expected[r.run_id] for r in group]
            lines.append(
                f"  {method}: {sum(r.status == 'done' for r in group)}/{len(group)} runs done, "
                + _progress(m_stored, m_expected)
            )
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        lines.append(f"Failures ({len(failed)}):")
        lines += [f"  {r.problem}/{r.method}/seed {r.seed}: {_last_line(r.error)}" for r in failed]
    return "\n".join(lines)


__all__ = [
    "bo_summary",
    "default_baseline",
    "markdown_report",
    "plot_metric_bars",
    "plot_regret",
    "plot_time",
    "regression_summary",
    "status_text",
    "study_kind",
    "study_name",
]
