"""The "continual" study kind: spec, a tiny study through the real runner, resume after an interruption, report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import gpvi.loops.continual as continual
from gpvi.studies import Store, StudyError, parse_spec, run_study
from gpvi.studies.report import markdown_report
from gpvi.studies.status import status_text
from tests.helpers import study_rows

#: The fits stop at small step caps on purpose (tiny, fast runs).
pytestmark = pytest.mark.filterwarnings("ignore::gpvi.progress.MaxStepsWarning")

TINY = """
[study]
name = "tiny-continual"
kind = "continual"
seeds = [0]

[[problems]]
label = "digits-2x2"
data = "split-digits"
num_tasks = 2
classes_per_task = 2
max_train_per_task = 30
max_test_per_task = 20

[[methods]]
name = "memory-20"
strategy = "memory"
memory_size = 20
memory_selection = "leverage"
model = "dual-svgp"
options = { num_inducing = 8, max_steps = 2 }
update_options = { num_steps = 3, max_iter = 5 }

[[methods]]
name = "retrain"
strategy = "retrain"
options = { num_inducing = 8, max_steps = 2 }
"""


_rows = study_rows


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The tiny study run uninterrupted, in process."""
    folder = tmp_path_factory.mktemp("continual")
    (folder / "tiny.toml").write_text(TINY)
    outcome = run_study(folder / "tiny.toml", workers=1, progress=False, log=lambda line: None)
    assert (outcome.done, outcome.failed) == (2, 0)
    return outcome.db


def test_the_spec_parses_problems_and_methods():
    spec = parse_spec(TINY)
    assert spec.kind == "continual" and spec.seeds == [0]
    (problem,) = spec.problems
    assert (problem.label, problem.num_tasks, problem.classes_per_task, problem.metric) == (
        "digits-2x2",
        2,
        2,
        "accuracy",
    )
    memory, retrain = spec.methods
    assert (memory.strategy, memory.memory_size, memory.model) == ("memory", 20, "dual-svgp")
    assert memory.update_options == {"num_steps": 3, "max_iter": 5} and retrain.model == "dual-svgp"


@pytest.mark.parametrize(
    ("change", "field", "line"),
    [
        (('strategy = "retrain"', 'strategy = "rehearsal"'), "methods[1].strategy", 26),
        (('model = "dual-svgp"', 'model = "svgp"'), "methods[0].model", 20),
        (('data = "split-digits"', 'data = "split-mnist"'), "problems[0].data", 9),
        (("num_tasks = 2", "num_tasks = 6"), "problems[0].num_tasks", 10),
        (("max_iter = 5", "max_iters = 5"), "methods[0].update_options", 22),
        (("num_inducing = 8, max_steps = 2 }\nupdate", "num_inducin = 8 }\nupdate"), "methods[0].options", 21),
        (("memory_size = 20", "memory_size = -1"), "methods[0].memory_size", 18),
    ],
)
def test_bad_study_files_name_the_field_and_line(change, field, line):
    text = TINY.replace(*change, 1)
    assert text != TINY
    with pytest.raises(StudyError, match=re.escape(f"<study>:{line}: `{field}`")):
        parse_spec(text)


def test_a_run_stores_one_row_per_task_with_the_matrix_row(reference):
    rows = _rows(reference)
    assert [(r[1], r[3], r[4]) for r in rows] == [
        ("memory-20", 0, 0),
        ("memory-20", 1, 1),
        ("retrain", 0, 0),
        ("retrain", 1, 1),
    ]
    for *_, idx, _iteration, x, y, y_true, best, n_train in rows:
        R = json.loads(x)
        assert len(R) == idx + 1 and all(0 <= v <= 1 for v in R)
        assert y_true == pytest.approx(sum(R) / len(R)) and best == y  # average; accuracy on all seen
        assert n_train == 30 * (idx + 1)
        if idx == 0:
            assert y == pytest.approx(R[0])  # one test set: the pooled accuracy is its accuracy
    with Store(reference) as store:
        assert {r.status for r in store.runs()} == {"done"}
        assert all(store.state(r.run_id) is not None for r in store.runs())


def test_an_interrupted_study_resumes_at_the_next_task_and_equals_the_uninterrupted_one(
    reference, tmp_path, monkeypatch
):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY)
    learned = []
    real = continual.ContinualLearner.learn_next

    def killed_after_the_first_task(self):
        if self.num_learned == 1:
            raise RuntimeError("simulated kill")
        learned.append(self.strategy)
        return real(self)

    monkeypatch.setattr(continual.ContinualLearner, "learn_next", killed_after_the_first_task)
    outcome = run_study(study, workers=1, progress=False, log=lambda line: None)
    assert (outcome.done, outcome.failed) == (0, 2) and len(_rows(outcome.db)) == 2  # task 0 of each run

    def counted(self):
        learned.append(self.strategy)
        return real(self)

    learned.clear()
    monkeypatch.setattr(continual.ContinualLearner, "learn_next", counted)
    again = run_study(study, workers=1, progress=False, log=lambda line: None)
    assert (again.done, again.failed) == (2, 0)
    assert sorted(learned) == ["memory", "retrain"]  # task 1 only: nothing learned twice
    assert _rows(outcome.db) == _rows(reference)  # no row repeated or lost, the same numbers


def test_the_report_has_a_table_per_problem_and_the_plots(reference, tmp_path):
    with Store(reference) as store:
        text = markdown_report(store, tmp_path / "report")
        status = status_text(store)
    assert "### digits-2x2" in text and "| final average accuracy | accuracy on all seen | forgetting | BWT |" in text
    assert re.search(r"\| memory-20 \| 1/1 \| [0-9.]+ \|", text)
    for name in ("average.png", "all_seen.png"):
        assert f"]({name})" in text and (tmp_path / "report" / name).stat().st_size > 0
    assert "Tasks: 4 / 4 tasks learned (100%)" in status and "memory-20: 1/1 runs done" in status


def test_the_example_study_file_parses():
    spec = parse_spec((Path(__file__).resolve().parents[2] / "studies" / "sequential" / "continual.toml").read_text())
    assert spec.kind == "continual" and spec.seeds == [0, 1, 2]
    assert {m.strategy for m in spec.methods} == {"memory", "none", "retrain"} and len(spec.methods) == 8
