"""Studies: TOML spec -> runs -> crash-safe SQLite store -> Markdown report with plots.

    gpvi study run studies/bo/synthetic.toml --workers 4
    gpvi study report studies/bo/synthetic.sqlite --out studies/bo

- `spec` (+ `spec_parsing`): the study file; `kinds`: what each kind of study stores, runs and reports;
- `runner`: runs on local processes or Dask, resumable; `store`: the SQLite store;
- `report` (report.md) and `status`, with `tables`, `plots` and `stats` shared by the kinds.
"""

from gpvi.studies.report import markdown_report
from gpvi.studies.runner import StudyOutcome, default_db, run_study
from gpvi.studies.spec import StudySpec, load_spec, parse_spec
from gpvi.studies.spec_parsing import StudyError
from gpvi.studies.status import status_text
from gpvi.studies.store import Store

__all__ = [
    "Store",
    "StudyError",
    "StudyOutcome",
    "StudySpec",
    "default_db",
    "load_spec",
    "markdown_report",
    "parse_spec",
    "run_study",
    "status_text",
]
