"""What `gpvi study status` prints: run counts, the kind's progress lines, failures."""

from __future__ import annotations

from gpvi.studies.report import kind_of, study_name
from gpvi.studies.store import Store
from gpvi.studies.tables import last_line, runs_line


def status_text(store: Store) -> str:
    """A short multi-line progress summary: run counts per status, the kind's progress lines, and
    the failed runs with the last line of their error."""
    runs = store.runs()
    name, kind = kind_of(store)
    lines = [f"Study {study_name(store)} ({name}): " + runs_line(runs)]
    lines += kind.status_lines(store, runs)
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        lines.append(f"Failures ({len(failed)}):")
        lines += [f"  {r.problem}/{r.method}/seed {r.seed}: {last_line(r.error)}" for r in failed]
    return "\n".join(lines)


__all__ = ["status_text"]
