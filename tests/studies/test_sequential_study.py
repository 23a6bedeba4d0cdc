"""Smoke test of `studies/sequential/streams.py --smoke` (streams, cost and report; about 30 s in all)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

from gpvi.data import uci
from tests.studies.scripts import run_script

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "sequential" / "streams.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return run_script(SCRIPT, *args, one_thread=True)


def test_sequential_streams_smoke_runs_streams_cost_and_report(tmp_path):
    datasets = ["banana"] + (["elevators"] if "elevators" in uci.available() else [])
    out, cost_out = tmp_path / "streams.jsonl", tmp_path / "cost.json"
    _run("--smoke", "--datasets", *datasets, "--out", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # the offline fit; per order the stream (and the two peer variants on regression)
    expected = sum(1 + 2 * (3 if name == "elevators" else 1) for name in datasets)
    assert len(records) == expected
    for r in records:
        assert "error" not in r, r
        assert math.isfinite(r["nlpd"]) and r["total_time"] > 0
        if r["method"] == "stream":
            assert r["budget"] == 50 and r["selection"] == "leverage" and len(r["times"]) == 5
            assert r["memory_held"] == 50 and r["num_summarised"] > 0
    banana = [r for r in records if r["data"] == "banana"]
    assert all(r["accuracy"] > 0.8 for r in banana)
    assert {r["method"] for r in records if r["data"] == "elevators"} <= {
        "offline",
        "stream",
        "peer",
        "peer-gpvi-kernel",
    }

    _run("--smoke", "--cost", "--cost-out", str(cost_out))
    cost = json.loads(cost_out.read_text())
    assert len(cost["update_times"]) == 5 and [k["n"] for k in cost["checkpoints"]] == [200, 400, 600]
    assert [e["n"] for e in cost["exact"]] == [200, 400] and cost["tenth_ratio"] > 0

    readme = tmp_path / "README.md"
    _run("--report", "--out", str(out), "--cost-out", str(cost_out), "--readme", str(readme), "--figdir", str(tmp_path))
    text = readme.read_text()
    assert "## Targets" in text and "## Cost" in text and "#### banana, sorted" in text
    assert (tmp_path / "stream_update_times.png").stat().st_size > 0
    assert (tmp_path / "cost_update_times.png").stat().st_size > 0
