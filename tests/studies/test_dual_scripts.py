"""Smoke tests of the DualSVGP benchmark scripts in `studies/dual` at tiny sizes (seconds)."""

from __future__ import annotations

from pathlib import Path

from tests.studies.scripts import run_script

STUDIES = Path(__file__).resolve().parents[2] / "studies" / "dual"


def _run(script: str, *args: str) -> str:
    return run_script(STUDIES / script, *args, timeout=300).stdout


def test_step_cost_agrees_with_gpytorch_sgpr_on_the_bound():
    """gpvi's fused collapsed bound, the plain-autograd formula and gpytorch's SGPR: the same number."""
    out = _run("step_cost.py", "--datasets", "yacht", "--m", "16", "--repeats", "1")
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| yacht |")]
    assert [row[3].strip() for row in rows] == ["gpvi", "plain-autograd", "gpytorch-sgpr"]
    assert float(rows[1][6]) < 1e-10  # the same formula
    assert float(rows[2][6]) < 1e-5  # gpytorch's SGPR: its own jitter on Kuu


def test_convergence_quick_prints_speedups_and_reports(tmp_path):
    out_file = tmp_path / "traces.jsonl"
    out = _run("convergence.py", "--quick", "--out", str(out_file))
    assert "dual-collapsed" in out and "gpytorch-adam" in out and "gpytorch-ngd" in out
    assert len(out_file.read_text().splitlines()) == 3
    report = _run("convergence.py", "--report", str(out_file), "--budget", "3", "--plot", str(tmp_path / "c.png"))
    assert "yacht" in report and (tmp_path / "c.png").stat().st_size > 0
