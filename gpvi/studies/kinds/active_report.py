"""The "active" kind's report: test metrics at 50 / 100 / 200 labels, time per step, learning curves.

Conventions (see also `gpvi.studies.tables`; the rows are described in `gpvi.studies.kinds.active`):

* A run's learning curve is (n_train, metric) over its rows with a metric: the model of each step and
  the model after the last labels. The metric is ``y`` (RMSE, or accuracy for a classification
  problem) or ``y_true`` (NLPD).
* The value of a run at L labels is the metric of its latest model fitted on at most L labels,
  counted only when the run got to L labels (some model was fitted on at least L).
* The milestones are 50, 100 and 200 labels, those some run of the problem reaches; when none does,
  the most labels a run of the problem reached.
* The time per step at the end is, per run, the mean of fit + acquisition time over its last
  `END_STEPS` steps; the table shows its mean ± sd over the runs.
* Means ± sample standard deviations (ddof=1) are over the runs (seeds) that have a value.
* Runs of a method on a problem outside its tasks store nothing: they are left out.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from gpvi.studies.plots import problem_panels, save
from gpvi.studies.store import Run, Store
from gpvi.studies.tables import fmt, groups, markdown_table, mean_std

#: The label counts of the table, where reached.
MILESTONES = (50, 100, 200)
#: Steps averaged for the time per step at the end of a run.
END_STEPS = 10
ROWS_SQL = "SELECT run_id, iteration, x, y, y_true, n_train, fit_time, acq_time FROM evaluations ORDER BY run_id, idx"

Rows = dict[int, list[dict[str, Any]]]


def active_rows(store: Store) -> Rows:
    """Stored rows grouped by run id, in step order (``x`` left as its JSON text)."""
    out: Rows = defaultdict(list)
    for r in store.query(ROWS_SQL):
        out[r["run_id"]].append(dict(r))
    return out


def problem_tasks(store: Store) -> dict[str, str]:
    """Per problem label, its task ("regression" or "classification") from the stored study file."""
    from gpvi.studies.spec import StudyError, parse_spec

    text = store.meta().get("spec")
    try:
        spec = parse_spec(text) if text else None
    except (StudyError, ValueError):
        spec = None
    return {} if spec is None else {p.label: p.task for p in spec.problems}


def metric_name(task: str | None, column: str) -> str:
    """The name of a row column's metric for a task: "rmse" / "accuracy" (``y``) or "nlpd" (``y_true``)."""
    if column == "y_true":
        return "nlpd"
    return "accuracy" if task == "classification" else "rmse"


def curve(rows: list[dict[str, Any]], column: str = "y") -> list[tuple[int, float]]:
    """(labels, value) of a run's models with a value of ``column``, in step order."""
    return [(r["n_train"], r[column]) for r in rows if r[column] is not None and r["n_train"] is not None]


def value_at(rows: list[dict[str, Any]], labels: int, column: str = "y") -> float | None:
    """The run's value at ``labels`` labels (see the module docstring); None when it did not get there."""
    points = curve(rows, column)
    if not points or max(n for n, _ in points) < labels:
        return None
    before = [v for n, v in points if n <= labels]
    return before[-1] if before else None


def end_time(rows: list[dict[str, Any]]) -> float | None:
    """The mean fit + acquisition time of a run's last `END_STEPS` steps (None before its first step)."""
    steps = [r for r in rows if is_step(r)]
    times = [step_time(r) for r in steps[-END_STEPS:]]
    return float(np.mean(times)) if times else None


def is_step(row: dict[str, Any]) -> bool:
    """Whether a row is a step (iteration ≥ 1 that labelled points), not the initial labels or the last model."""
    return row["iteration"] >= 1 and row["x"] not in (None, "[]")


def step_time(row: dict[str, Any]) -> float:
    """A row's fit + acquisition time (a missing one counts as 0)."""
    return (row["fit_time"] or 0.0) + (row["acq_time"] or 0.0)


def milestones(rows_of_runs: list[list[dict[str, Any]]]) -> list[int]:
    """`MILESTONES` some run reaches, else the most labels a run reached (empty without models)."""
    reached = max((n for rows in rows_of_runs for n, _ in curve(rows)), default=None)
    if reached is None:
        return []
    return [m for m in MILESTONES if m <= reached] or [reached]


def active_summary(store: Store) -> list[dict[str, Any]]:
    """One dict per (problem, method) with stored rows.

    Keys: problem, task, method, runs_done, runs_total (runs with rows), milestones (label counts),
    values: ``{(metric, labels): (mean, sd, n)}`` for the task's metric and "nlpd" at each milestone,
    and end_time: (mean, sd, n) of the time per step at the end of the runs (seconds).
    """
    runs, rows, tasks = store.runs(), active_rows(store), problem_tasks(store)
    by_problem: dict[str, list[list[dict]]] = defaultdict(list)
    for r in runs:
        if rows.get(r.run_id):
            by_problem[r.problem].append(rows[r.run_id])
    marks = {problem: milestones(rs) for problem, rs in by_problem.items()}
    out = []
    for (problem, method), group in groups(runs).items():
        with_rows = [r for r in group if rows.get(r.run_id)]
        if not with_rows:
            continue
        task = tasks.get(problem)
        values = {}
        for column in ("y", "y_true"):
            for labels in marks.get(problem, []):
                vs = [v for r in with_rows if (v := value_at(rows[r.run_id], labels, column)) is not None]
                values[metric_name(task, column), labels] = (*mean_std(vs), len(vs))
        times = [t for r in with_rows if (t := end_time(rows[r.run_id])) is not None]
        out.append(
            {
                "problem": problem,
                "task": task,
                "method": method,
                "runs_done": sum(r.status == "done" for r in with_rows),
                "runs_total": len(with_rows),
                "milestones": marks.get(problem, []),
                "values": values,
                "end_time": (*mean_std(times), len(times)),
            }
        )
    return out


def _cell(mean: float | None, sd: float | None, n: int) -> str:
    if mean is None:
        return "–"
    return fmt(mean) + ("" if sd is None else f" ± {fmt(sd)}")


def active_tables(summary: list[dict[str, Any]]) -> list[str]:
    """Markdown: per problem, method × (metric and NLPD at each milestone, time per step at the end)."""
    lines: list[str] = []
    for problem in dict.fromkeys(s["problem"] for s in summary):
        group = [s for s in summary if s["problem"] == problem]
        task, marks = group[0]["task"], group[0]["milestones"]
        metric = metric_name(task, "y")
        header = ["method", "runs"] + [f"{metric} @{m}" for m in marks] + [f"nlpd @{m}" for m in marks]
        header.append(f"time/step s (last {END_STEPS})")
        body = []
        for s in group:
            cells = [s["method"], f"{s['runs_done']}/{s['runs_total']}"]
            cells += [_cell(*s["values"][metric, m]) for m in marks]
            cells += [_cell(*s["values"]["nlpd", m]) for m in marks]
            body.append([*cells, _cell(*s["end_time"])])
        lines += [f"### {problem}" + (f" ({task})" if task else ""), "", *markdown_table(header, body), ""]
    return lines


def band(curves: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float]]:
    """Per label count, the mean and sample sd (0 for one run) over the runs with a value there."""
    by_n: dict[int, list[float]] = defaultdict(list)
    for points in curves:
        for n, v in points:
            by_n[n].append(v)
    ns = sorted(by_n)
    means = [float(np.mean(by_n[n])) for n in ns]
    sds = [float(np.std(by_n[n], ddof=1)) if len(by_n[n]) > 1 else 0.0 for n in ns]
    return ns, means, sds


def plot_curves(store: Store, path: str | Path, column: str = "y") -> Path:
    """Learning curves, one panel per problem: the mean ± sd band over seeds of each method's test
    metric (``y``: RMSE or accuracy; ``y_true``: NLPD) against the labels. Saves a PNG and returns it."""
    runs, rows, tasks = store.runs(), active_rows(store), problem_tasks(store)
    problems = list(dict.fromkeys(r.problem for r in runs if rows.get(r.run_id)))

    def draw(ax: Any, problem: str, group: list[Run], color: str) -> list[float]:
        ns, means, sds = band([curve(rows[r.run_id], column) for r in group if rows.get(r.run_id)])
        if not ns:
            return []
        lo, hi = np.subtract(means, sds), np.add(means, sds)
        ax.plot(ns, means, color=color, label=group[0].method)
        ax.fill_between(ns, lo, hi, color=color, alpha=0.2, linewidth=0)
        return [*means, *lo.tolist()]

    fig = problem_panels(
        runs,
        problems,
        draw,
        empty="no models yet",
        xlabel="labels",
        ylabel=lambda problem: f"test {metric_name(tasks.get(problem), column)}",
        integer_x=True,
    )
    for ax, problem in zip(fig.axes, problems, strict=False):  # log y for RMSE only
        if column != "y" or tasks.get(problem) == "classification":
            ax.set_yscale("linear")
    return save(fig, path)


def plot_step_time(store: Store, path: str | Path) -> Path:
    """Time per step (fit + acquisition, s; mean over seeds) against the labels the step's model was
    fitted on, one panel per problem, log y. Saves a PNG and returns it."""
    runs, rows = store.runs(), active_rows(store)
    problems = list(dict.fromkeys(r.problem for r in runs if rows.get(r.run_id)))

    def draw(ax: Any, problem: str, group: list[Run], color: str) -> list[float]:
        points = [[(e["n_train"], step_time(e)) for e in rows[r.run_id] if is_step(e)] for r in group]
        ns, means, _ = band(points)
        if not ns:
            return []
        ax.plot(ns, means, color=color, label=group[0].method)
        return means

    fig = problem_panels(
        runs, problems, draw, empty="no steps yet", xlabel="labels", ylabel=lambda p: "time per step (s)"
    )
    return save(fig, path)


def active_report(store: Store, out_dir: str | Path) -> list[str]:
    """The kind's Markdown (tables per problem) and its plots, written into ``out_dir``."""
    out_dir = Path(out_dir)
    lines = active_tables(active_summary(store))
    plot_curves(store, out_dir / "learning_curves.png", "y")
    plot_curves(store, out_dir / "learning_curves_nlpd.png", "y_true")
    plot_step_time(store, out_dir / "time_per_step.png")
    return [
        *lines,
        "![learning curves](learning_curves.png)",
        "",
        "![learning curves, NLPD](learning_curves_nlpd.png)",
        "",
        "![time per step](time_per_step.png)",
    ]


def status_lines(store: Store, runs: list[Run]) -> list[str]:
    """Steps stored per method (runs outside a method's tasks, which store nothing, left out)."""
    rows = active_rows(store)
    lines = [f"Steps: {sum(len(v) for v in rows.values())} rows stored"]
    by_method: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_method[r.method].append(r)
    for method, group in by_method.items():
        stored = sum(len(rows.get(r.run_id, [])) for r in group)
        lines.append(f"  {method}: {sum(r.status == 'done' for r in group)}/{len(group)} runs done, {stored} rows")
    return lines


__all__ = [
    "END_STEPS",
    "MILESTONES",
    "active_report",
    "active_rows",
    "active_summary",
    "active_tables",
    "band",
    "curve",
    "end_time",
    "is_step",
    "milestones",
    "plot_curves",
    "plot_step_time",
    "problem_tasks",
    "status_lines",
    "step_time",
    "value_at",
]
