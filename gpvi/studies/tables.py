"""Numbers and Markdown shared by every kind's report: quantiles, formatting, run counts, failures.

Conventions used throughout the reports:

* Quantiles are numpy's default (``numpy.percentile``, linear interpolation between order
  statistics); the "median [q25, q75]" of a sample is ``numpy.percentile(v, [50, 25, 75])``.
* Standard deviations are sample standard deviations (``ddof=1``); ``None`` for a single value.
* Missing numbers are ``None`` and are printed as "–". Every function works on an empty or
  partially filled store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from gpvi.studies.store import Run

STATUSES = ("done", "running", "pending", "failed")


def quartiles(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """(median, q25, q75) with numpy's default linear interpolation; Nones when empty."""
    if not values:
        return None, None, None
    med, q25, q75 = np.percentile(np.asarray(values, dtype=float), [50, 25, 75])
    return float(med), float(q25), float(q75)


def median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1; None for fewer than two values)."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else None


def ratio(value: float | None, peer: float | None) -> float | None:
    """value / peer, None when either is missing or the peer is not positive."""
    return None if value is None or peer is None or peer <= 0 else value / peer


def fmt(v: float | None) -> str:
    """3 significant digits, "–" for a missing value."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def last_line(text: str | None) -> str:
    """The last non-empty line of an error text (the exception), or a placeholder."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no error message)"


def groups(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs grouped by (problem, method), in order of first appearance."""
    out: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        out.setdefault((r.problem, r.method), []).append(r)
    return out


def status_counts(runs: Sequence[Run]) -> dict[str, int]:
    counts = {s: 0 for s in STATUSES}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def runs_line(runs: Sequence[Run]) -> str:
    """ "Runs: N total — a done, b running, c pending, d failed"."""
    counts = status_counts(runs)
    return f"Runs: {len(runs)} total — " + ", ".join(f"{n} {s}" for s, n in counts.items())


def failures_section(runs: Sequence[Run]) -> list[str]:
    """The report's "## Failures" section: one line per failed run with the last line of its error."""
    failed = [r for r in runs if r.status == "failed"]
    lines = ["## Failures", ""]
    if not failed:
        return [*lines, "None."]
    return lines + [f"- {r.problem} / {r.method} / seed {r.seed}: `{last_line(r.error)}`" for r in failed]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


__all__ = [
    "STATUSES",
    "failures_section",
    "fmt",
    "groups",
    "last_line",
    "markdown_table",
    "mean_std",
    "median",
    "quartiles",
    "ratio",
    "runs_line",
    "status_counts",
]
