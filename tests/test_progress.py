"""`gpvi.progress`: the progress-bar rule, the bars, `track` / `echo`, and `FitResult`'s repr, objective and plot."""

from __future__ import annotations

import io
import math
import sys
import types
from pathlib import Path

import gpytorch
import pytest
import torch

import gpvi
from gpvi import progress
from gpvi.progress import FitResult, StepLoop, bars, echo, in_jupyter_kernel, show_progress, track


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture
def outside_pytest(monkeypatch):
    """The rule as a user's process sees it: no GPVI_PROGRESS, no kernel; a test then calls
    ``outside_pytest.delenv("PYTEST_CURRENT_TEST")`` (pytest sets it again for each phase)."""
    monkeypatch.delenv(progress.PROGRESS_ENV_VAR, raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    return monkeypatch


def _fake_ipython(monkeypatch, shell) -> None:
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


# -- the rule --------------------------------------------------------------------------------------
def test_the_callers_choice_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(progress.PROGRESS_ENV_VAR, "0")
    assert show_progress(True) is True
    monkeypatch.setenv(progress.PROGRESS_ENV_VAR, "1")
    assert show_progress(False) is False


def test_the_environment_variable_wins_over_pytest_and_the_terminal(outside_pytest):
    outside_pytest.setenv(progress.PROGRESS_ENV_VAR, "1")
    assert show_progress(None) is True
    outside_pytest.delenv("PYTEST_CURRENT_TEST")
    outside_pytest.setattr(sys, "stderr", _Stream(tty=True))
    outside_pytest.setenv(progress.PROGRESS_ENV_VAR, "0")
    assert show_progress(None) is False


def test_never_under_pytest_even_on_a_terminal(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_ENV_VAR, raising=False)
    monkeypatch.setattr(sys, "stderr", _Stream(tty=True))
    assert "PYTEST_CURRENT_TEST" in __import__("os").environ
    assert show_progress(None) is False


def test_a_terminal_or_a_jupyter_kernel_draws(outside_pytest):
    outside_pytest.delenv("PYTEST_CURRENT_TEST")
    outside_pytest.setattr(sys, "stderr", _Stream(tty=True))
    assert show_progress(None) is True
    outside_pytest.setattr(sys, "stderr", _Stream(tty=False))
    assert show_progress(None) is False
    _fake_ipython(outside_pytest, types.SimpleNamespace(kernel=object(), config={}))  # Jupyter
    assert in_jupyter_kernel() and show_progress(None) is True
    _fake_ipython(outside_pytest, types.SimpleNamespace(config={}))  # the terminal IPython: no kernel
    assert not in_jupyter_kernel() and show_progress(None) is False
    _fake_ipython(outside_pytest, None)  # IPython imported, not running
    assert not in_jupyter_kernel()


def test_ipython_is_not_imported_to_look_for_a_kernel(outside_pytest):
    assert not in_jupyter_kernel()
    assert "IPython" not in sys.modules


def test_a_bad_environment_value_is_ignored_with_a_warning_and_a_bad_argument_refused(outside_pytest):
    outside_pytest.delenv("PYTEST_CURRENT_TEST")
    outside_pytest.setenv(progress.PROGRESS_ENV_VAR, "sometimes")
    outside_pytest.setattr(sys, "stderr", _Stream(tty=False))
    with pytest.warns(UserWarning, match="GPVI_PROGRESS='sometimes'") as record:
        assert show_progress(None) is False
    assert record[0].filename == __file__  # the warning points at the caller, outside gpvi
    with pytest.raises(TypeError, match="`progress` must be True, False or None"):
        show_progress("yes")


# -- the bars --------------------------------------------------------------------------------------
def _loop_steps(loop: StepLoop, n: int) -> None:
    with loop:
        for step in loop.steps():
            loop.record(-float(step), {"elbo": -float(step)})
            if step == n:
                break


def test_a_bar_is_drawn_on_stderr_when_asked_and_never_by_default_under_pytest(capsys):
    _loop_steps(StepLoop(5, desc="my fit", progress=True), 5)
    err = capsys.readouterr().err
    assert "my fit" in err and "/5 [" in err
    _loop_steps(StepLoop(5, desc="my fit"), 5)
    assert capsys.readouterr().err == ""


def test_bars_not_asked_for_wait_for_the_delay(monkeypatch, capsys):
    monkeypatch.setenv(progress.PROGRESS_ENV_VAR, "1")
    _loop_steps(StepLoop(50, desc="short fit"), 50)  # far below BAR_DELAY_S: nothing drawn
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(bars, "BAR_DELAY_S", 0.0)  # read where it is defined
    _loop_steps(StepLoop(50, desc="short fit"), 50)
    assert "short fit" in capsys.readouterr().err


def _bernoulli_data(n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.rand(n, 2, dtype=torch.float64)
    return X, (X[:, :1] + 0.2 * torch.randn(n, 1, dtype=torch.float64) > 0.5).double()


def _dual(X: torch.Tensor, Y: torch.Tensor) -> gpvi.DualSVGP:
    return gpvi.DualSVGP(X, Y, likelihood=gpytorch.likelihoods.BernoulliLikelihood(), num_inducing=8)


@pytest.mark.filterwarnings("ignore::gpvi.progress.MaxStepsWarning")
def test_gpvi_fit_draws_with_progress_true_only(capsys):
    X, Y = _bernoulli_data()
    gpvi.fit(_dual(X, Y), max_steps=2, progress=True)
    assert "gpvi.fit" in capsys.readouterr().err
    gpvi.fit(_dual(X, Y), max_steps=2)
    assert capsys.readouterr().err == ""


def test_track_wraps_a_loop_under_the_rule(capsys):
    items = [1, 2, 3]
    assert track(items, "items") is items  # under pytest: the iterable itself
    assert track(items, "items", progress=False) is items
    assert list(track(items, "items", progress=True)) == items
    assert "items" in capsys.readouterr().err


def test_echo_prints_a_line_to_stdout(capsys):
    echo("| a | b |")
    stream = io.StringIO()
    echo("to a file", file=stream)
    assert capsys.readouterr().out == "| a | b |\n" and stream.getvalue() == "to a file\n"


# -- FitResult ---------------------------------------------------------------------------------------
def _history(steps: int, **last: float) -> list[dict[str, float]]:
    rows = [
        {"elbo": -1000.0 + i, "expected_log_lik": -900.0 + i, "kl": 100.0, "step": i + 1, "time": 0.01 * i}
        for i in range(steps)
    ]
    if last:
        rows[-1] = {**{k: v for k, v in rows[-1].items() if k in ("step", "time")}, **last}
    return rows


def test_repr_is_one_short_line_with_the_stop_reason_and_the_final_objective():
    result = FitResult(_history(500), 1.9312, "converged", 500, objective_name="elbo")
    text = repr(result)
    assert len(text) < 200 and "\n" not in text
    assert text == "FitResult(stop_reason='converged', steps=500, time=1.93 s, final elbo=-501)"
    assert repr(FitResult([], 0.0, "max_steps", 0)) == "FitResult(stop_reason='max_steps', steps=0, time=0 s)"
    ep = FitResult(_history(3, ep=-12.5, objective=-12.5), 0.1, "max_steps", 3, objective_name="ep")
    assert "final EP-like objective=-12.5" in repr(ep)


def test_final_objective_and_final_elbo_semantics():
    # the maximised value is "objective" where recorded (collapsed: the bound "elbo" plus the log prior)
    collapsed = FitResult(_history(2, elbo=-10.0, objective=-12.0), 0.1, "converged", 2, objective_name="elbo")
    assert (collapsed.final_objective, collapsed.final_elbo) == (-12.0, -10.0)
    # else the objective's own column; a fit that recorded no ELBO says so instead of giving NaN
    pll = FitResult(_history(2, pll=-7.0, log_predictive=-6.0, kl=1.0), 0.1, "converged", 2)
    assert pll.objective_name == "pll" and pll.final_objective == -7.0
    with pytest.raises(AttributeError, match=r"maximised the pll \('pll'\) and recorded no ELBO"):
        _ = pll.final_elbo
    ep = FitResult(_history(2, ep=-5.0, objective=-5.0), 0.1, "converged", 2)
    assert ep.objective_name == "ep" and ep.final_objective == -5.0
    with pytest.raises(AttributeError, match="EP-like objective"):
        _ = ep.final_elbo
    empty = FitResult([], 0.0, "max_steps", 0, objective_name="elbo")
    assert math.isnan(empty.final_elbo) and math.isnan(empty.final_objective)  # no step, no value


def _final_elbo_is_honest(result: FitResult) -> None:
    """`final_elbo` is a finite number or an AttributeError, never a silent NaN."""
    try:
        value = result.final_elbo
    except AttributeError as error:
        assert "recorded no ELBO" in str(error)
    else:
        assert math.isfinite(value)


@pytest.mark.filterwarnings("ignore::gpvi.progress.MaxStepsWarning")
@pytest.mark.parametrize("recipe", [None, "cvi"])
def test_elbo_and_ep_fits_name_their_objective(recipe):
    X, Y = _bernoulli_data()
    options = {} if recipe is None else {"recipe": recipe}
    elbo = gpvi.fit(_dual(X, Y), objective="elbo", max_steps=3, **options)
    assert elbo.objective_name == "elbo"
    assert elbo.final_objective == elbo.history[-1]["objective"] == elbo.final_elbo
    ep = gpvi.fit(_dual(X, Y), objective="ep", max_steps=3, **options)
    assert ep.objective_name == "ep" and "final EP-like objective=" in repr(ep)
    assert math.isfinite(ep.final_objective) and ep.final_objective == ep.history[-1]["objective"]
    _final_elbo_is_honest(ep)


@pytest.mark.filterwarnings("ignore::gpvi.progress.MaxStepsWarning")
def test_a_pll_fit_names_its_objective():
    X, Y = _bernoulli_data()
    model = gpvi.SVGP(X, Y, likelihood=gpytorch.likelihoods.BernoulliLikelihood(), num_inducing=8)
    result = gpvi.fit(model, objective="pll", max_steps=3)
    assert result.objective_name == "pll" and result.final_objective == result.history[-1]["pll"]
    _final_elbo_is_honest(result)


def test_plot_draws_the_history_to_png(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = FitResult(_history(20), 0.5, "converged", 20, objective_name="elbo")
    ax = result.plot()
    assert [line.get_label() for line in ax.lines] == ["elbo"] and len(ax.lines[0].get_xdata()) == 20
    path = tmp_path / "history.png"
    ax.figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _, ax2 = plt.subplots()
    assert result.plot(["expected_log_lik", "kl"], ax=ax2, x="time") is ax2 and len(ax2.lines) == 2
    assert ax2.get_xlabel() == "time (s)"
    with pytest.raises(ValueError, match=r"`keys` \['nope'\] are not in the history"):
        result.plot("nope")
    with pytest.raises(ValueError, match="`x` must be 'step' or 'time'"):
        result.plot(x="epoch")
    plt.close("all")


def test_progress_imports_no_plotting_at_module_level():
    files = sorted(Path(progress.__file__).parent.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "bars.py", "loop.py", "result.py"}
    for path in files:
        source = path.read_text(encoding="utf-8")
        top = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert not any("matplotlib" in line or "gpvi.plots" in line or "tqdm" in line for line in top), path.name


def test_every_name_is_importable_from_the_package():
    """The package re-exports its modules' names: `from gpvi.progress import X` as before the split."""
    from gpvi.progress import OBJECTIVE_TITLES, StopReason, T, caller_stacklevel  # noqa: F401

    assert all(hasattr(progress, name) for name in progress.__all__)
    assert sorted(n for n in vars(progress) if not n.startswith("_") and n not in progress.__all__) == [
        "StopReason",
        "T",
        "bars",
        "loop",
        "result",
    ]
