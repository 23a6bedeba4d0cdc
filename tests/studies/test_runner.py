"""The studies runner: spec validation, storage, resume after kill -9, Dask, failures, regression."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gpvi.studies import Store, StudyError, parse_spec, run_study
from tests.helpers import study_rows

FAST = "acquisition_options = { num_restarts = 2, raw_samples = 32, maxiter = 30 }"

TINY = f"""
[study]
name = "tiny"
seeds = 2
budget = 4
num_initial = 4

[[problems]]
name = "Branin"

[[problems]]
name = "Hartmann"
dim = 3
noise_std = 0.05

[[methods]]
name = "random"
model = "random"

[[methods]]
name = "stgp"
model = "singletaskgp"
{FAST}

[[methods]]
name = "svgp-ts"
model = "svgp"
acquisition = "ts"
options = {{ max_steps = 30, warm_steps = 10 }}
{FAST}
"""


_table = study_rows


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The tiny study run uninterrupted, in process."""
    folder = tmp_path_factory.mktemp("reference")
    (folder / "tiny.toml").write_text(TINY)
    threads = torch.get_num_threads()
    try:  # one torch thread, as each worker of the runs compared with it (the last bits depend on it)
        outcome = run_study(folder / "tiny.toml", workers=1, threads=1, progress=False, log=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    assert (outcome.done, outcome.failed) == (12, 0)
    return outcome.db


def test_store_holds_every_evaluation_once(reference):
    rows = _table(reference)
    assert len(rows) == 12 * (4 + 4)
    assert len({(r[0], r[1], r[2], r[3]) for r in rows}) == len(rows)
    for problem, method, seed in {(r[0], r[1], r[2]) for r in rows}:
        run = [r for r in rows if r[:3] == (problem, method, seed)]
        assert [r[3] for r in run] == list(range(8))  # no gaps
        assert [r[4] for r in run] == [0, 0, 0, 0, 1, 2, 3, 4]
        best = [r[8] for r in run]
        assert best == sorted(best, reverse=True)  # best so far never increases
    noisy = [r for r in rows if r[0].startswith("Hartmann")]
    assert all(r[6] != r[7] for r in noisy) and all(r[6] == r[7] for r in rows if r[0] == "Branin")


def test_rerunning_a_finished_study_evaluates_nothing(reference):
    before = _table(reference)
    outcome = run_study(reference.with_suffix(".toml"), reference, progress=False, log=lambda line: None)
    assert (outcome.done, outcome.skipped) == (0, 12)
    assert _table(reference) == before


def test_kill_9_then_resume_equals_the_uninterrupted_run(reference, tmp_path):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY)
    db = tmp_path / "killed.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "gpvi.cli",
        "study",
        "run",
        str(study),
        "--db",
        str(db),
        "--workers",
        "2",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if db.exists() and _count(db) >= 30:
                break
            time.sleep(0.05)
        assert _count(db) >= 30, "the study did not start"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = _count(db)
    assert partial < len(_table(reference)), "killed too late: the study had finished"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    assert _table(db) == _table(reference)
    with Store(db) as store:
        assert {r.status for r in store.runs()} == {"done"}


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_dask_executor_gives_the_same_results(reference, tmp_path):
    pytest.importorskip("distributed")
    study = tmp_path / "tiny.toml"
    study.write_text(TINY)
    outcome = run_study(study, workers=2, executor="dask", threads=1, progress=False, log=lambda line: None)
    assert outcome.done == 12
    assert _table(outcome.db) == _table(reference)


def test_a_failing_model_is_stored_and_the_study_goes_on(tmp_path):
    text = TINY.replace(
        'name = "stgp"\nmodel = "singletaskgp"', 'name = "broken"\nmodel = "tests.studies.bad_model:broken_factory"'
    )
    text = text.replace("seeds = 2", "seeds = [5]").replace("budget = 4", "budget = 2")
    (tmp_path / "s.toml").write_text(text)
    lines: list[str] = []
    outcome = run_study(tmp_path / "s.toml", progress=False, log=lines.append)
    assert (outcome.done, outcome.failed) == (4, 2)
    assert any("FAILED" in line and "this model always fails" in line for line in lines)
    with Store(outcome.db) as store:
        failed = store.runs(status="failed")
        assert {r.method for r in failed} == {"broken"}
        assert all("RuntimeError: this model always fails" in r.error for r in failed)
        assert all(len(store.evaluations(r.run_id)) == 4 for r in failed)  # the initial design is kept
    from gpvi.studies.report import markdown_report

    with Store(outcome.db) as store:
        report = markdown_report(store, tmp_path / "report")
    assert "this model always fails" in report


def _dying_study(tmp_path: Path) -> Path:
    text = TINY.replace(
        'name = "stgp"\nmodel = "singletaskgp"', 'name = "dies"\nmodel = "tests.studies.bad_model:dying_factory"'
    )
    text = text.replace("seeds = 2", "seeds = [5]").replace("budget = 4", "budget = 2")
    text = text[: text.index('[[methods]]\nname = "svgp-ts"')]
    (tmp_path / "s.toml").write_text(text)
    return tmp_path / "s.toml"


def test_a_worker_killed_by_the_os_is_stored_and_the_study_goes_on(tmp_path, monkeypatch):
    monkeypatch.delenv("GPVI_TEST_DIE_ONCE", raising=False)
    lines: list[str] = []
    outcome = run_study(_dying_study(tmp_path), workers=2, threads=1, progress=False, log=lines.append)
    assert (outcome.done, outcome.failed) == (2, 2)
    assert any("died (exit code -9); retrying it" in line for line in lines)
    with Store(outcome.db) as store:
        failed = store.runs(status="failed")
        assert {r.method for r in failed} == {"dies"}
        assert all("WorkerDied" in r.error for r in failed)
        assert all(len(store.evaluations(r.run_id)) == 4 for r in failed)  # the initial design is kept


def test_a_run_whose_worker_died_once_resumes_and_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    study = _dying_study(tmp_path)
    monkeypatch.setenv("GPVI_TEST_DIE_ONCE", str(tmp_path / "died"))
    outcome = run_study(study, db=tmp_path / "a.sqlite", workers=2, threads=1, progress=False, log=lambda line: None)
    assert (tmp_path / "died").exists()
    assert (outcome.done, outcome.failed) == (4, 0)
    # with the marker there the factory is a plain SingleTaskGP: the same study, never interrupted
    again = run_study(study, db=tmp_path / "b.sqlite", workers=1, threads=1, progress=False, log=lambda line: None)
    assert again.done == 4
    assert _table(outcome.db) == _table(again.db)


@pytest.mark.parametrize(
    ("change", "field", "line"),
    [
        (("budget = 4", 'budget = "four"'), "study.budget", 5),
        (('name = "Branin"', 'name = "Branim"'), "problems[0].name", 9),
        (('model = "singletaskgp"', 'model = "exactgp"'), "methods[1].model", 22),
        (("seeds = 2", "seeds = []"), "study.seeds", 4),
        (('acquisition = "ts"', 'acquisition = "pi"'), "methods[2].acquisition", 28),
        (("num_initial = 4", "num_initial = 4\nbatch = 3"), "study.batch", 7),
        (("dim = 3", "dim = 5"), "problems[1].name", 12),
    ],
)
def test_bad_study_files_name_the_field_and_line(change, field, line):
    text = TINY.replace(*change)
    assert text != TINY
    with pytest.raises(StudyError, match=re.escape(f"<study>:{line}: `{field}`")):
        parse_spec(text)


def test_missing_tables_and_invalid_toml():
    with pytest.raises(StudyError, match="not valid TOML"):
        parse_spec("[study\nname=1")
    with pytest.raises(StudyError, match=r"\[\[methods\]\]"):
        parse_spec('[study]\nname = "x"\nseeds = 1\nbudget = 1\n[[problems]]\nname = "Branin"\n')
    with pytest.raises(StudyError, match="study.name` is missing"):
        parse_spec("[study]\nseeds = 1\nbudget = 1\n")


def test_regression_study_stores_metrics(tmp_path):
    from gpvi.data import uci

    if "yacht" not in uci.available():
        pytest.skip("UCI data not found")
    text = """
[study]
name = "reg"
kind = "regression"
splits = [0]

[[datasets]]
name = "yacht"

[[methods]]
name = "gpvi-svgp"
model = "svgp"
options = { num_inducing = 32, max_steps = 60 }

[[methods]]
name = "gpytorch-svgp"
model = "gpytorch-svgp"
options = { num_inducing = 32, max_steps = 60 }

[[methods]]
name = "exact"
model = "exact"

[[methods]]
name = "dual"
model = "dual-svgp"
options = { num_inducing = 32, max_steps = 40 }
"""
    (tmp_path / "reg.toml").write_text(text)
    outcome = run_study(tmp_path / "reg.toml", progress=False, log=lambda line: None)
    assert (outcome.done, outcome.failed) == (4, 0)
    with Store(outcome.db) as store:
        metrics = {r.method: store.metrics(r.run_id) for r in store.runs()}
    assert metrics["exact"]["rmse"] < 0.35 and metrics["gpvi-svgp"]["rmse"] < 0.6 and metrics["dual"]["rmse"] < 0.6
    assert all({"rmse", "nlpd", "fit_time", "predict_time", "peak_memory_mb"} <= set(m) for m in metrics.values())


def test_problem_values_do_not_depend_on_the_callers_default_dtype():
    """BoTorch builds Hartmann's constants at the default dtype: a study run from a script (float32
    default) and one run under pytest or the CLI (float64) must still see the same function."""
    from gpvi.studies.kinds.bo_problems import ProblemSpec, make_problem

    spec = ProblemSpec(name="Hartmann", label="Hartmann", dim=6, noise_std=0.1)
    X = torch.rand(5, 6, dtype=torch.float64)
    values = {}
    for dtype in (torch.float32, torch.float64):
        torch.set_default_dtype(dtype)  # the autouse fixture restores the default
        values[dtype] = make_problem(spec).evaluate(X, seed=3, iteration=2)
    for a, b in zip(values[torch.float32], values[torch.float64], strict=True):
        assert torch.equal(a, b)
