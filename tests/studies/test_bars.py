"""The study runner's progress bar: runs done / total, drawn when asked (`gpvi.progress`'s rule)."""

from __future__ import annotations

from gpvi import cli
from gpvi.studies import run_study

RANDOM_ONLY = """
[study]
name = "bars"
seeds = 2
budget = 2
num_initial = 2

[[problems]]
name = "Branin"

[[methods]]
name = "random"
model = "random"
"""


def test_the_runner_draws_a_bar_over_runs_when_asked_and_none_by_default(tmp_path, capsys):
    (tmp_path / "bars.toml").write_text(RANDOM_ONLY)
    outcome = run_study(tmp_path / "bars.toml", db=tmp_path / "a.sqlite", progress=True)
    err = capsys.readouterr().err
    assert outcome.done == 2
    assert "study bars" in err and "/2 [" in err and "run" in err
    assert "done   Branin / random / seed" in err  # the finished runs' lines, written above the bar
    lines: list[str] = []
    run_study(tmp_path / "bars.toml", db=tmp_path / "b.sqlite", log=lines.append)  # pytest: no bar
    assert "study bars" not in capsys.readouterr().err and len(lines) == 2


def test_study_run_progress_flags(tmp_path, capsys):
    (tmp_path / "bars.toml").write_text(RANDOM_ONLY)
    db = str(tmp_path / "c.sqlite")
    assert cli.main(["study", "run", str(tmp_path / "bars.toml"), "--db", db, "--progress"]) == 0
    assert "study bars" in capsys.readouterr().err
    db = str(tmp_path / "d.sqlite")
    assert cli.main(["study", "run", str(tmp_path / "bars.toml"), "--db", db, "--no-progress"]) == 0
    assert "study bars" not in capsys.readouterr().err
