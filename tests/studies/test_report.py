"""Tests for `gpvi.studies.report`, `status` and the kinds' reports: summaries, plots, Markdown and progress.

Quantiles are numpy's default (linear interpolation), as in the module.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpvi.studies.kinds.bo_report import bo_summary, default_baseline, plot_regret, plot_time, regret_band
from gpvi.studies.kinds.regression import regression_summary
from gpvi.studies.report import markdown_report
from gpvi.studies.status import status_text
from gpvi.studies.store import RunKey, Store

OPT = 0.5
ERROR = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: boom\n'


def _rows(regrets, n_init=2, q=1, times=None, optimum=OPT):
    """Evaluation rows: `n_init` initial points then `q` points per iteration; `regrets[it]` is the
    best-so-far regret after iteration `it` (0 = initial design); `times[it - 1]` = (fit, acq)."""
    rows = []
    for it, regret in enumerate(regrets):
        fit, acq = (None, None) if it == 0 else times[it - 1]
        for _ in range(n_init if it == 0 else q):
            value = None if regret is None else regret + (optimum or 0.0)
            rows.append(
                {
                    "idx": len(rows),
                    "iteration": it,
                    "x": [0.1, 0.2],
                    "y": value,
                    "y_true": value,
                    "best": value,
                    "regret": regret if optimum is not None else None,
                    "fit_time": fit,
                    "acq_time": acq,
                    "eval_time": 0.01,
                    "n_train": n_init + (it - 1) * q if it else None,
                }
            )
    return rows


def _noopt_rows(bests):
    return [
        {
            "idx": i,
            "iteration": i,
            "x": [0.0],
            "y": b,
            "y_true": b,
            "best": b,
            "regret": None,
            "fit_time": None if i == 0 else 0.2,
            "acq_time": None if i == 0 else 0.1,
            "n_train": i + 1,
        }
        for i, b in enumerate(bests)
    ]


def _ids(store):
    return {(r.problem, r.method, r.seed): r.run_id for r in store.runs()}


@pytest.fixture
def bo_store(tmp_path):
    store = Store(tmp_path / "bo.db")
    store.set_meta(study="toy-bo", kind="bo")
    keys = [RunKey("branin", "ei", s) for s in range(4)] + [RunKey("branin", "ts", s) for s in range(4)]
    store.ensure_runs("toy-bo", keys, budget=3, optimal={"branin": OPT})
    store.ensure_runs("toy-bo", [RunKey("noopt", "ei", 0)], budget=3, optimal={})
    ids = _ids(store)
    t = [(0.1, 0.1)] * 3
    for seed, final in enumerate([0.1, 0.2, 0.4, 0.8]):  # ei: all done
        store.add_evaluations(ids["branin", "ei", seed], _rows([2.0, 1.0, final + 0.1, final], times=t))
        store.mark(ids["branin", "ei", seed], "done")
    # ts seed 0: done, q = 2 points per iteration sharing the iteration's fit/acq time.
    store.add_evaluations(
        ids["branin", "ts", 0], _rows([3.0, 2.0, 1.0, 0.05], q=2, times=[(1.0, 0.5), (2.0, 1.0), (3.0, 1.0)])
    )
    store.mark(ids["branin", "ts", 0], "done")
    # ts seed 1: still running, reached iteration 1 only (acq time missing: counts as 0).
    store.add_evaluations(ids["branin", "ts", 1], _rows([4.0, 3.0], q=2, times=[(10.0, None)]))
    store.mark(ids["branin", "ts", 1], "running")
    # ts seed 2: failed after its initial design; ts seed 3: pending, nothing stored.
    store.add_evaluations(ids["branin", "ts", 2], _rows([5.0]))
    store.mark(ids["branin", "ts", 2], "failed", ERROR)
    store.add_evaluations(ids["noopt", "ei", 0], _noopt_rows([1.0, -1.0, -1.5, -1.2]))
    store.mark(ids["noopt", "ei", 0], "done")
    yield store
    store.close()


@pytest.fixture
def regression_store(tmp_path):
    store = Store(tmp_path / "reg.db")
    store.set_meta(study="toy-reg", kind="regression")
    keys = [RunKey(d, m, s) for d in ("boston", "wine") for m in ("svgp", "exact") for s in range(3)]
    store.ensure_runs("toy-reg", keys, budget=None, optimal={})
    ids = _ids(store)
    for s, rmse in enumerate([0.3, 0.4, 0.5]):
        store.add_metrics(ids["boston", "svgp", s], {"rmse": rmse, "nlpd": 1.0 + s, "fit_time": 2.0, "extra": 7.0})
        store.mark(ids["boston", "svgp", s], "done")
    store.add_metrics(ids["boston", "exact", 0], {"rmse": 0.25, "nlpd": 0.9, "fit_time": 5.0})
    store.mark(ids["boston", "exact", 0], "done")
    store.add_metrics(ids["boston", "exact", 1], {"rmse": 9.9})  # not done: ignored
    store.mark(ids["boston", "exact", 2], "failed", "RuntimeError: out of memory")
    yield store
    store.close()


def test_bo_summary_numbers(bo_store):
    summary = {(s["problem"], s["method"]): s for s in bo_summary(bo_store)}
    assert list(summary) == [("branin", "ei"), ("branin", "ts"), ("noopt", "ei")]
    ei = summary["branin", "ei"]
    assert (ei["runs_done"], ei["runs_total"], ei["metric"]) == (4, 4, "simple regret")
    # numpy linear quantiles of [0.1, 0.2, 0.4, 0.8]: median 0.3, q25 0.1 + 0.75 * 0.1, q75 0.4 + 0.25 * 0.4.
    assert ei["final_regret_median"] == pytest.approx(0.3)
    assert ei["final_regret_q25"] == pytest.approx(0.175)
    assert ei["final_regret_q75"] == pytest.approx(0.5)
    assert ei["time_per_iter_median"] == pytest.approx(0.2)
    ts = summary["branin", "ts"]
    assert (ts["runs_done"], ts["runs_total"]) == (1, 4)
    assert ts["final_regret_median"] == ts["final_regret_q25"] == ts["final_regret_q75"] == pytest.approx(0.05)
    # Iterations counted once (not once per point): [1.5, 3, 4] (seed 0) + [10] (seed 1) -> median 3.5.
    assert ts["time_per_iter_median"] == pytest.approx(3.5)
    noopt = summary["noopt", "ei"]
    assert noopt["metric"] == "best value"
    assert noopt["final_regret_median"] == pytest.approx(-1.5)
    assert noopt["time_per_iter_median"] == pytest.approx(0.3)


def test_regret_band_counts_only_runs_that_reached_the_iteration():
    its, med, lo, hi = regret_band([[4.0, 2.0, 1.0], [2.0], [], [None, 3.0]])
    assert its == [0, 1, 2]
    assert med == pytest.approx([3.0, 2.5, 1.0])
    assert lo[0] == pytest.approx(np.percentile([4.0, 2.0], 25)) and hi[2] == pytest.approx(1.0)


def test_plots_are_written(bo_store, tmp_path):
    for fn, name in ((plot_regret, "regret.png"), (plot_time, "time.png")):
        path = fn(bo_store, tmp_path / "plots" / name)
        assert path.exists() and path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_report_bo(bo_store, tmp_path):
    text = markdown_report(bo_store, tmp_path / "out")
    assert (tmp_path / "out" / "report.md").read_text() == text
    assert (tmp_path / "out" / "regret.png").stat().st_size > 0
    assert (tmp_path / "out" / "time.png").stat().st_size > 0
    assert "# Study toy-bo" in text
    assert "Runs: 9 total — 6 done, 1 running, 1 pending, 1 failed" in text
    assert "| problem | method | runs | final regret median [q25, q75] | time/iter s |" in text
    assert "| branin | ei | 4/4 | 0.3 [0.175, 0.5] | 0.2 |" in text
    assert "| branin | ts | 1/4 | 0.05 [0.05, 0.05] | 3.5 |" in text
    assert "| noopt | ei | 1/1 | -1.5 [-1.5, -1.5] (best value) | 0.3 |" in text
    assert "![regret](regret.png)" in text and "(time.png)" in text
    assert "## Failures" in text and "- branin / ts / seed 2: `ValueError: boom`" in text


def test_status_text_bo(bo_store):
    text = status_text(bo_store)
    assert "toy-bo" in text and "6 done, 1 running, 1 pending, 1 failed" in text
    assert "branin/ts/seed 2: ValueError: boom" in text
    # The pending run has no initial design yet: only stored counts (20 ei + 8 + 4 + 2 ts + 4 noopt).
    assert "Evaluations: 38 evaluations stored" in text
    assert "  ei: 5/5 runs done, 24 / 24 evaluations (100%)" in text
    assert "  ts: 1/4 runs done, 14 evaluations stored" in text


def test_status_text_expected_total(bo_store):
    ids = _ids(bo_store)
    bo_store.add_evaluations(ids["branin", "ts", 3], _rows([6.0]))
    # ts has q = 2: each run expects 2 initial + 3 * 2 points.
    assert "  ts: 1/4 runs done, 16 / 32 evaluations (50%)" in status_text(bo_store)
    assert "Evaluations: 40 / 56 evaluations (71%)" in status_text(bo_store)


def test_empty_store(tmp_path):
    store = Store(tmp_path / "empty.db")
    assert bo_summary(store) == [] and regression_summary(store) == []
    assert "0 total" in status_text(store)
    text = markdown_report(store, tmp_path / "out")
    assert "None." in text and (tmp_path / "out" / "regret.png").stat().st_size > 0
    assert plot_time(store, tmp_path / "t.png").stat().st_size > 0
    store.close()


def test_partial_store_without_results(tmp_path):
    store = Store(tmp_path / "partial.db")
    store.set_meta(study="p", kind="bo")
    store.ensure_runs("p", [RunKey("branin", "ei", 0), RunKey("hartmann", "ei", 0)], budget=5, optimal={"branin": OPT})
    store.mark(_ids(store)["branin", "ei", 0], "running")
    [s] = [s for s in bo_summary(store) if s["problem"] == "branin"]
    assert (s["runs_done"], s["runs_total"], s["final_regret_median"], s["time_per_iter_median"]) == (0, 1, None, None)
    assert bo_summary(store)[1]["metric"] == "best value"
    text = markdown_report(store, tmp_path / "out")
    assert "| branin | ei | 0/1 | – | – |" in text
    assert "0 evaluations stored" in status_text(store)
    assert (tmp_path / "out" / "time.png").stat().st_size > 0
    store.close()


def test_regression_summary_and_report(regression_store, tmp_path):
    summary = {(s["dataset"], s["method"]): s for s in regression_summary(regression_store)}
    svgp = summary["boston", "svgp"]
    assert (svgp["splits"], svgp["splits_total"]) == (3, 3)
    assert list(svgp["metrics"]) == ["rmse", "nlpd", "fit_time", "extra"]
    assert svgp["metrics"]["rmse"]["mean"] == pytest.approx(0.4)
    assert svgp["metrics"]["rmse"]["std"] == pytest.approx(np.std([0.3, 0.4, 0.5], ddof=1))
    exact = summary["boston", "exact"]
    assert exact["splits"] == 1 and exact["metrics"]["rmse"] == {"mean": 0.25, "std": None, "n": 1}
    assert summary["wine", "svgp"]["splits"] == 0 and summary["wine", "svgp"]["metrics"] == {}

    text = markdown_report(regression_store, tmp_path / "out")
    assert "# Study toy-reg" in text
    assert "| dataset | method | splits | rmse | nlpd | fit_time s | extra |" in text
    assert "| boston | svgp | 3/3 | 0.4 ± 0.1 | 2 ± 1 | 2 ± 0 | 7 ± 0 |" in text
    assert "| boston | exact | 1/3 | 0.25 | 0.9 | 5 | – |" in text
    assert "| wine | svgp | 0/3 | – | – | – | – |" in text
    assert "- boston / exact / seed 2: `RuntimeError: out of memory`" in text
    assert (tmp_path / "out" / "rmse.png").stat().st_size > 0
    assert not (tmp_path / "out" / "regret.png").exists()
    status = status_text(regression_store)
    assert "Results: 5 runs with metrics" in status and "  svgp: 3/6 runs done" in status


def test_bo_summary_divides_by_the_baseline_method(bo_store, tmp_path):
    summary = {(s["problem"], s["method"]): s for s in bo_summary(bo_store, baseline="ei")}
    ts, ei = summary["branin", "ts"], summary["branin", "ei"]
    assert ts["regret_ratio"] == pytest.approx(0.05 / 0.3) and ei["regret_ratio"] == pytest.approx(1.0)
    assert ts["time_ratio"] == pytest.approx(3.5 / 0.2)
    assert summary["noopt", "ei"]["regret_ratio"] is None  # a negative best value is not a regret to divide
    assert all(s["regret_ratio"] is None for s in bo_summary(bo_store))  # no SingleTaskGP method stored
    text = markdown_report(bo_store, tmp_path / "out", baseline="ei")
    assert "regret ÷ ei" in text and "| 0.167 |" in text


def test_bo_summary_pairs_seeds_with_the_baseline(bo_store, tmp_path):
    summary = {(s["problem"], s["method"]): s for s in bo_summary(bo_store, baseline="ei")}
    ts, ei = summary["branin", "ts"], summary["branin", "ei"]
    # ts finished seed 0 only (0.05 against ei's 0.1): one pair at ratio 1/2
    assert (ts["paired_seeds"], ts["paired_lower"]) == (1, 1)
    assert ts["paired_ratio"] == pytest.approx(0.5) and ts["paired_ratio_hi"] == pytest.approx(0.5)
    assert ei["paired_ratio"] is None and ei["paired_seeds"] is None  # the baseline itself
    assert summary["noopt", "ei"]["paired_ratio"] is None  # best values, not regrets
    text = markdown_report(bo_store, tmp_path / "out", baseline="ei")
    assert "paired ÷ ei [90%]" in text and "| 0.5 [0.5, 0.5] | 1/1 |" in text


def test_default_baseline_is_the_studys_singletaskgp_method(tmp_path):
    store = Store(tmp_path / "b.db")
    spec = (
        '[study]\nname = "s"\nkind = "bo"\nseeds = 1\nbudget = 2\n[[problems]]\nname = "Branin"\n'
        '[[methods]]\nname = "mine"\nmodel = "svgp"\n[[methods]]\nname = "peer"\nmodel = "singletaskgp"\n'
    )
    store.set_meta(study="s", kind="bo", spec=spec)
    assert default_baseline(store) == "peer"
    store.set_meta(spec="not toml [")
    assert default_baseline(store) is None
    store.close()
