"""Studies: TOML spec -> runs -> crash-safe SQLite store -> markdown report with plots.

gpvi study run studies/bo/synthetic.toml --workers 4
gpvi study report studies/bo/synthetic.sqlite --out studies/bo
"""

from gpvi.studies.runner import StudyOutcome, default_db, run_study
from gpvi.studies.spec import StudyError, StudySpec, load_spec, parse_spec
from gpvi.studies.store import Store

__all__ = ["Store", "StudyError", "StudyOutcome", "StudySpec", "default_db", "load_spec", "parse_spec", "run_study"]
