"""The "continual" kind's report: final metrics per (problem, method) over seeds, learning curves, progress.

Conventions (see also `gpvi.studies.tables`):

* A run's matrix R is read back from its rows (row i's ``x`` is R[i, :i+1]); its final values are
  those after its last stored task, and only runs with status 'done' enter the table.
* Forgetting and backward transfer are `gpvi.loops.continual_result`'s, signed so that forgetting
  > 0 is a loss and BWT > 0 a gain whatever the metric; time is the sum over tasks of the learning
  time (``fit_time``), testing excluded.
* The curves are, per task count, the mean ± sd over the runs (done or not) that reached it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gpvi.studies.plots import problem_panels, save
from gpvi.studies.store import Run, Store
from gpvi.studies.tables import fmt, groups, markdown_table, mean_std

ROWS_SQL = "SELECT run_id, idx, x, y, y_true, fit_time, acq_time, n_train FROM evaluations ORDER BY run_id, idx"

Rows = dict[int, list[dict[str, Any]]]


def run_rows(store: Store) -> Rows:
    """Evaluation rows grouped by run id, in task order (``x`` decoded: R[i, :i+1])."""
    out: Rows = defaultdict(list)
    for r in store.query(ROWS_SQL):
        row = dict(r)
        row["x"] = json.loads(row["x"])
        out[row["run_id"]].append(row)
    return out


def study_problems(store: Store) -> dict[str, Any]:
    """The problem specs by label, from the study's stored TOML ({} when it cannot be read)."""
    from gpvi.studies.spec import StudyError, parse_spec

    text = store.meta().get("spec")
    if not text:
        return {}
    try:
        return {p.label: p for p in parse_spec(text).problems}
    except (StudyError, ValueError):
        return {}


def run_matrix(rows: Sequence[dict[str, Any]]) -> torch.Tensor:
    """The `k x k` matrix R of a run's k stored tasks (NaN above the diagonal)."""
    k = len(rows)
    matrix = torch.full((k, k), float("nan"), dtype=torch.float64)
    for i, row in enumerate(rows):
        matrix[i, : len(row["x"])] = torch.tensor(row["x"], dtype=torch.float64)
    return matrix


def run_summary(rows: Sequence[dict[str, Any]], higher_is_better: bool) -> dict[str, float | None]:
    """final_average, final_all_seen, forgetting, bwt (None after one task) and time of one run's rows."""
    from gpvi.loops.continual_result import backward_transfer, forgetting

    if not rows:
        return dict.fromkeys(("final_average", "final_all_seen", "forgetting", "bwt", "time"))
    matrix = run_matrix(rows)
    many = len(rows) > 1
    return {
        "final_average": rows[-1]["y_true"],
        "final_all_seen": rows[-1]["y"],
        "forgetting": forgetting(matrix, higher_is_better) if many else None,
        "bwt": backward_transfer(matrix, higher_is_better) if many else None,
        "time": sum(r["fit_time"] or 0.0 for r in rows),
    }


def continual_summary(store: Store) -> list[dict[str, Any]]:
    """One dict per (problem, method): problem, method, metric, runs_done, runs_total and, per key of
    `run_summary`, ``{"mean", "std", "n"}`` over the done runs (sample sd, None for one value)."""
    runs, rows, problems = store.runs(), run_rows(store), study_problems(store)
    out = []
    for (problem, method), group in groups(runs).items():
        metric = getattr(problems.get(problem), "metric", "accuracy")
        done = [r for r in group if r.status == "done"]
        per_run = [run_summary(rows.get(r.run_id, []), metric == "accuracy") for r in done]
        entry: dict[str, Any] = {
            "problem": problem,
            "method": method,
            "metric": metric,
            "runs_done": len(done),
            "runs_total": len(group),
        }
        for key in ("final_average", "final_all_seen", "forgetting", "bwt", "time"):
            values = [s[key] for s in per_run if s[key] is not None]
            mean, std = mean_std(values)
            entry[key] = {"mean": mean, "std": std, "n": len(values)}
        out.append(entry)
    return out


def _cell(stat: dict[str, Any]) -> str:
    return fmt(stat["mean"]) + ("" if stat["std"] is None else f" ± {fmt(stat['std'])}")


def continual_table(summary: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines: one table per problem, method × final average, all seen, forgetting, BWT, time."""
    lines: list[str] = []
    for problem in dict.fromkeys(s["problem"] for s in summary):
        rows = [s for s in summary if s["problem"] == problem]
        metric = rows[0]["metric"]
        header = ["method", "runs", f"final average {metric}", f"{metric} on all seen", "forgetting", "BWT", "time s"]
        body = [
            [
                s["method"],
                f"{s['runs_done']}/{s['runs_total']}",
                *(_cell(s[k]) for k in ("final_average", "final_all_seen", "forgetting", "bwt", "time")),
            ]
            for s in rows
        ]
        lines += [f"### {problem}", "", *markdown_table(header, body), ""]
    return lines


def plot_curves(store: Store, path: str | Path, column: str = "y_true") -> Path:
    """One panel per problem: each method's metric after each task (``column``: "y_true", the average over
    the tasks seen, or "y", the metric on all seen test sets), mean ± sd over runs; saves a PNG at ``path``."""
    runs, rows, problems = store.runs(), run_rows(store), study_problems(store)
    name = "average" if column == "y_true" else "on all seen"

    def draw(ax: Any, problem: str, group: list[Run], color: str) -> list[float]:
        curves = [[r[column] for r in rows.get(run.run_id, [])] for run in group]
        tasks, means, lo, hi = [], [], [], []
        for i in range(max((len(c) for c in curves), default=0)):
            mean, std = mean_std([c[i] for c in curves if i < len(c) and c[i] is not None])
            if mean is not None:
                tasks.append(i + 1)
                means.append(mean)
                lo.append(mean - (std or 0.0))
                hi.append(mean + (std or 0.0))
        if not tasks:
            return []
        ax.plot(tasks, means, marker=".", color=color, label=group[0].method)
        ax.fill_between(tasks, lo, hi, color=color, alpha=0.2, linewidth=0)
        return means

    fig = problem_panels(
        runs,
        list(dict.fromkeys(r.problem for r in runs)),
        draw,
        empty="no tasks learned yet",
        xlabel="tasks seen",
        ylabel=lambda problem: f"{getattr(problems.get(problem), 'metric', 'accuracy')} ({name})",
        integer_x=True,
    )
    for ax in fig.axes:
        ax.set_yscale("linear")  # accuracies: a linear axis (problem_panels picks log for positive values)
    return save(fig, path)


def continual_report(store: Store, out_dir: Path) -> list[str]:
    """The kind's report section: the tables and two plots (written into ``out_dir``)."""
    lines = continual_table(continual_summary(store))
    plot_curves(store, out_dir / "average.png", "y_true")
    plot_curves(store, out_dir / "all_seen.png", "y")
    return [
        *lines,
        "Mean ± sd over seeds; forgetting > 0 is a loss and BWT > 0 a gain; time: learning, summed over tasks.",
        "",
        "![average over the tasks seen](average.png)",
        "",
        "![on the union of the seen tasks' test sets](all_seen.png)",
    ]


def status_lines(store: Store, runs: list[Run]) -> list[str]:
    """Tasks learned / expected (the problems' ``num_tasks`` from the stored spec), and a line per method."""
    rows, problems = run_rows(store), study_problems(store)

    def expected(group: Sequence[Run]) -> int | None:
        counts = [getattr(problems.get(r.problem), "num_tasks", None) for r in group]
        return None if None in counts else sum(counts)  # type: ignore[arg-type]

    def progress(group: Sequence[Run]) -> str:
        stored, total = sum(len(rows.get(r.run_id, [])) for r in group), expected(group)
        if total:
            return f"{stored} / {total} tasks learned ({100 * stored / total:.0f}%)"
        return f"{stored} tasks learned"

    lines = ["Tasks: " + progress(runs)]
    by_method: dict[str, list[Run]] = {}
    for r in runs:
        by_method.setdefault(r.method, []).append(r)
    for method, group in by_method.items():
        lines.append(f"  {method}: {sum(r.status == 'done' for r in group)}/{len(group)} runs done, {progress(group)}")
    return lines


__all__ = [
    "continual_report",
    "continual_summary",
    "continual_table",
    "plot_curves",
    "run_matrix",
    "run_rows",
    "run_summary",
    "status_lines",
]
