"""Smoke test of `studies/defaults/default_fit.py --quick`: every case prints a row, the defaults converge."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.studies.scripts import run_script

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "defaults" / "default_fit.py"


def test_default_fit_study_quick_prints_a_row_per_case_and_method():
    from gpvi.data import uci

    if "elevators" not in uci.available():
        pytest.skip("UCI data not found")
    proc = run_script(SCRIPT, "--quick", timeout=300)
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    rows = rows[1:]  # the header
    assert len(rows) == 3 + 4 + 2, proc.stdout
    defaults = [row for row in rows if row[2].strip() == "default"]
    assert len(defaults) == 4 and all(row[4].strip() == "converged" for row in defaults), proc.stdout
