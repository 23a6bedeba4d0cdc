"""Smoke test of `studies/bo/regret_ratio.py` on a tiny hand-made store (known answers)."""

from __future__ import annotations

from pathlib import Path

from gpvi.studies.store import RunKey, Store
from tests.studies.scripts import run_script

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "bo" / "regret_ratio.py"


def _finish(store: Store, run_id: int, regret: float) -> None:
    row = {"idx": 0, "iteration": 0, "x": [0.0], "y": regret, "y_true": regret, "best": regret, "regret": regret}
    store.add_evaluations(run_id, [row])
    store.mark(run_id, "done")


def test_regret_ratio_prints_medians_and_the_paired_table(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.set_meta(study="s", kind="bo")
    keys = [RunKey(p, m, s) for p in ("a", "b") for m in ("mine", "peer") for s in range(4)]
    store.ensure_runs("s", keys, budget=0, optimal={"a": 0.0, "b": 0.0})
    ids = {(r.problem, r.method, r.seed): r.run_id for r in store.runs()}
    for s, peer in enumerate([1.0, 2.0, 4.0, 8.0]):
        _finish(store, ids["a", "peer", s], peer)
        _finish(store, ids["a", "mine", s], 2.0 * peer)  # every seed twice the peer's regret
        _finish(store, ids["b", "peer", s], peer)
        _finish(store, ids["b", "mine", s], 0.5 * peer)  # every seed half
    store.close()
    proc = run_script(
        SCRIPT,
        str(tmp_path / "s.sqlite"),
        "--method",
        "mine",
        "--baseline",
        "peer",
        "--plot",
        str(tmp_path / "ratios.png"),
    )
    lines = proc.stdout.splitlines()
    assert "| a | 4/4 | 6 | 3 | 2.00 | " in proc.stdout  # medians 6 and 3
    assert "| a | 4 | 2.00 | [2.00, 2.00] | 0/4 | 0.12 | no |" in lines
    assert "| b | 4 | 0.50 | [0.50, 0.50] | 4/4 | 0.12 | yes |" in lines
    assert "| all 2 problems | 8 | 1.00 | [1.00, 1.00] | 4/8 | 1.00 | yes |" in lines
    assert (tmp_path / "ratios.png").stat().st_size > 0
