"""Smoke tests of the perf scripts: `svgp_step.py --quick` (about 10 s) and `fingerprint.py`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.studies.scripts import run_script

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "perf" / "svgp_step.py"


def test_perf_benchmark_quick_prints_the_table(tmp_path):
    out_file = tmp_path / "table.md"
    proc = run_script(SCRIPT, "--quick", "--out", str(out_file))
    out = proc.stdout
    assert "ratio gpvi/gpytorch" in out and "memory ratio" in out and "floor fraction" in out
    assert "threads 1" in out and "CPU " in out and "torch " in out
    rows = [line for line in out.splitlines() if line.startswith("| 32 |")]
    assert len(rows) == 2  # the main table and the floor-variants table
    assert rows[0].count("|") == 13 and rows[1].count("|") == 6  # M, gpvi, gpytorch, floor/W, floor/A
    assert out_file.read_text().strip() == out.strip()


def test_fingerprint_prints_every_path_and_is_reproducible():
    """`studies/perf/fingerprint.py` (about 5 s): 20 named lines, the same in two processes."""
    script = SCRIPT.parent / "fingerprint.py"
    outputs = [
        subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=True).stdout
        for _ in range(2)
    ]
    names = [line.split()[0] for line in outputs[0].splitlines()]
    assert len(names) == 20 and names[0] == "svgp-adam" and names[-1] == "magma-pred"
    assert outputs[0] == outputs[1]  # every random draw is seeded
