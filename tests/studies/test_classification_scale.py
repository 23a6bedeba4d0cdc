"""Smoke test of `studies/dual/classification_scale.py --quick` (kin40k, 2000 rows, M = 16, 2 s per method)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from gpvi.data import uci
from tests.studies.scripts import run_script

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "dual" / "classification_scale.py"
METHODS = ["dual-default", "gpytorch-ngd", "gpytorch-adam"]


@pytest.mark.skipif("kin40k" not in uci.available(), reason="UCI kin40k not available")
def test_classification_scale_quick_prints_a_row_per_method(tmp_path):
    out_file = tmp_path / "traces.json"
    proc = run_script(SCRIPT, "--quick", "--out", str(out_file), one_thread=True)
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| kin40k | 0 | 2000 |")]
    assert [row[4].strip() for row in rows] == METHODS
    for row in rows:
        steps, best, nlpd, acc = int(row[5]), float(row[7]), float(row[10]), float(row[11])
        assert steps > 0 and math.isfinite(best) and -1.1 < best < 0
        assert math.isfinite(nlpd) and 0 < nlpd < 1 and 0.5 < acc <= 1
    assert rows[0][12].strip() in ("callback", "converged", "max_steps")  # the dual's stop reason
    summary = [line for line in proc.stdout.splitlines() if line.startswith("| kin40k | 0 | ")]
    assert len(summary) == 4  # three method rows and the summary row
    saved = json.loads(out_file.read_text())
    assert [r["method"] for r in saved["records"]] == METHODS
    assert all(len(r["trace"]) >= 2 for r in saved["records"])
    report = subprocess.run(
        [sys.executable, str(SCRIPT), "--report", str(out_file)], capture_output=True, text=True, timeout=60
    )
    assert report.returncode == 0 and report.stdout.count("| kin40k | 0 |") == 6  # + one peer-speed-up row each
