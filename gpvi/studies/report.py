"""A study store's Markdown report with plots, for any kind of study.

    markdown_report(store, "studies/bo")        # report.md (+ the kind's plots) in the folder

Written against the study kind (`gpvi.studies.kinds`): a header and the run counts, the kind's own
sections (tables and plots, `StudyKind.report`), then the failed runs with the last line of their
error (`gpvi.studies.status` prints progress the same way). The kind is `meta['kind']`; stores
written before kinds were recorded hold no kind, and were "bo" (evaluation rows, or empty) or
"regression" (metrics only). Every function works on an empty or partially filled store.
"""

from __future__ import annotations

from pathlib import Path

from gpvi.studies.kinds import StudyKind, get_kind
from gpvi.studies.store import Store
from gpvi.studies.tables import failures_section, runs_line


def study_kind(store: Store) -> str:
    """The study kind: `meta['kind']`, else inferred from the stored results (see the module docstring)."""
    kind = store.meta().get("kind")
    if kind:
        return kind
    has_metrics = bool(store.query("SELECT 1 FROM metrics LIMIT 1"))
    has_evals = bool(store.query("SELECT 1 FROM evaluations LIMIT 1"))
    return "bo" if has_evals or not has_metrics else "regression"


def study_name(store: Store) -> str:
    """The study name: `meta['study']`, else the `study` of the first run, else "(unnamed)"."""
    name = store.meta().get("study")
    if name:
        return name
    runs = store.runs()
    return runs[0].study if runs else "(unnamed)"


def kind_of(store: Store) -> tuple[str, StudyKind]:
    """(name, kind) of the study in ``store``."""
    name = study_kind(store)
    return name, get_kind(name)


def markdown_report(store: Store, out_dir: str | Path, baseline: str | None = None) -> str:
    """Write `report.md` (and the kind's plots) into `out_dir` (created) and return the Markdown text.

    BO studies (`gpvi.studies.kinds.bo_report`): a per (problem, method) table of final regret and
    time per iteration, each also divided by the ``baseline`` method's (default: the study's
    SingleTaskGP method) with the paired comparison, `regret.png` and `time.png`. Regression
    studies (`gpvi.studies.kinds.regression`): mean ± std of every metric and `rmse.png`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = store.runs()
    name, kind = kind_of(store)
    lines = [f"# Study {study_name(store)} ({name})", "", runs_line(runs), ""]
    lines += kind.report(store, out_dir, baseline)
    text = "\n".join([*lines, "", *failures_section(runs)]) + "\n"
    (out_dir / "report.md").write_text(text)
    return text


__all__ = ["kind_of", "markdown_report", "study_kind", "study_name"]
