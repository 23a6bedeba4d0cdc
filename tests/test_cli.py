"""Tests for the ``gpvi`` command line (`gpvi.cli.main`)."""

from __future__ import annotations

import math
import re

import pytest

from gpvi import cli
from gpvi.data import uci

MODEL_NAMES = ("gpvi SVGP", "gpytorch SVGP")


def _table_rows(out: str) -> dict[str, list[float]]:
    """Parse the demo's table: model name -> [RMSE, NLPD, fit time, steps]."""
    rows = {}
    number = r"(-?\d+(?:\.\d+)?|nan|inf|-inf)"
    for line in out.splitlines():
        for name in MODEL_NAMES:
            if line.startswith(name):
                values = re.findall(number, line[line.index(")") + 1 :])
                rows[name] = [float(v) for v in values]
    return rows


def test_svgp_demo_quick_prints_a_table_for_both_models(capsys: pytest.CaptureFixture[str]) -> None:
    if "yacht" not in uci.available():
        pytest.skip(f"UCI data not found (looked in $GPVI_DATA_DIR or {uci.default_root()}).")
    status = cli.main(["svgp-demo", "--quick"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "yacht" in out and "standardised units" in out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    for column in ("test RMSE", "test NLPD", "fit time (s)", "steps"):
        assert column in header
    rows = _table_rows(out)
    assert set(rows) == set(MODEL_NAMES), out
    for name, (rmse, nlpd, fit_time, steps) in rows.items():
        assert all(math.isfinite(v) for v in (rmse, nlpd, fit_time)), (name, out)
        assert 0 < rmse < 1.0, (name, out)  # better than predicting the training mean
        assert fit_time > 0 and steps == cli._DEMO_QUICK["steps"], (name, out)


def test_svgp_demo_with_an_empty_data_dir_exits_2_naming_the_folder(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(uci.ENV_VAR, str(tmp_path))
    assert cli.main(["svgp-demo", "--quick"]) == 2
    captured = capsys.readouterr()
    assert str(tmp_path) in captured.err and "yacht" in captured.err
    assert "Traceback" not in captured.err


def test_svgp_demo_with_a_missing_data_dir_exits_2_naming_the_folder(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv(uci.ENV_VAR, str(missing))
    assert cli.main(["svgp-demo", "--quick"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and uci.ENV_VAR in err


def test_quick_env_var_selects_the_quick_preset(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # With an empty data folder the demo stops at loading, which names the data set it chose.
    monkeypatch.setenv(uci.ENV_VAR, str(tmp_path))
    monkeypatch.setenv(cli.QUICK_ENV_VAR, "1")
    assert cli.main(["svgp-demo"]) == 2
    assert repr(cli._DEMO_QUICK["dataset"]) in capsys.readouterr().err
    monkeypatch.setenv(cli.QUICK_ENV_VAR, "0")
    assert cli.main(["svgp-demo"]) == 2
    assert repr(cli._DEMO_FULL["dataset"]) in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["svgp-demo", "--steps", "0"],
        ["svgp-demo", "--num-inducing", "x"],
        ["study"],
        ["study", "run", "x.toml", "--executor", "ray"],
        ["demo", "--workers", "0"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: gpvi" in capsys.readouterr().err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("gpvi ")
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "demo" in capsys.readouterr().out


def test_bo_demo_quick_runs_the_study_and_writes_the_report(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    db, out = tmp_path / "demo.sqlite", tmp_path / "report"
    assert cli.main(["demo", "--quick", "--db", str(db), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for name in ("Branin", "Hartmann-6", "random", "singletaskgp-qlogei", "svgp-qlogei"):
        assert name in text
    assert (out / "report.md").is_file() and (out / "regret.png").stat().st_size > 1000
    # re-running resumes: nothing left to do, same report
    assert cli.main(["demo", "--quick", "--db", str(db), "--out", str(out), "--no-progress"]) == 0
    assert cli.main(["study", "status", str(db)]) == 0
    assert "6 done" in capsys.readouterr().out


def test_study_run_with_a_bad_file_exits_2_naming_the_field(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[study]\nname = "x"\nseeds = 1\nbudget = 2\n\n[[problems]]\nname = "Branim"\n\n[[methods]]\nmodel = "random"\n'
    )
    assert cli.main(["study", "run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:7: `problems[0].name`" in err and "Branim" in err
    assert not (tmp_path / "bad.sqlite").exists()  # nothing ran
    assert cli.main(["study", "report", str(tmp_path / "none.sqlite")]) == 2
