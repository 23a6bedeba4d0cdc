"""The one step loop of every iterative fit in gpvi: history, progress bar, stopping rules, best state.

    with StepLoop(max_steps, desc="gpvi.fit", early_stopping=EarlyStopping()) as loop:
        for step in loop.steps():
            value, parts = take_a_step()                  # the recipe's own work
            reason = loop.record(value, parts)            # history, bar, stop rules
            if reason is not None:
                break
    result = loop.result(reason or "max_steps")           # FitResult

`gpvi.fit`'s recipes, the gpytorch baseline (`gpvi.baselines`) and MagmaClust's variational EM all
run on it, so they share one notion of a step, one history format and one set of stop reasons:

    "max_steps"   the step budget ran out          "converged"  the stopping rule fired
    "callback"    the user's callback returned True "non-finite" the objective became NaN or inf
    "not-psd"     a covariance met in a step was not positive definite (a Cholesky failed)

A fit never loses its result to a numerical failure: a step that raises `NotPSDError` (or another
numerical error, `numerical_failure`) inside ``with loop:`` ends the loop instead of the program,
and a loop given the model (``keep_best``) puts back the best state it was offered (or the state it
started from). `result` then warns: `FitFailedWarning` after a failure, `MaxStepsWarning` when the
budget ran out while a stopping rule was active (BoTorch's `OptimizationWarning`s, so its filters
apply).

Nothing here knows about models: it sits below every other floor of the package, next to the
progress bars of every long operation (fits, MagmaClust's EM and its choice of K, studies, the
benchmark scripts). Whether a bar is drawn (`show_progress`), first rule that applies:

    1. the caller's ``progress=True`` / ``progress=False`` (``--progress`` / ``--no-progress`` on the CLI);
    2. the environment variable ``GPVI_PROGRESS``: "1" draws, "0" never draws;
    3. never under pytest (``PYTEST_CURRENT_TEST`` is set);
    4. draw when stderr is a terminal or the code runs in a Jupyter (IPython) kernel.

Bars are `tqdm.auto` bars (a widget in Jupyter when ipywidgets is installed, text on stderr
otherwise), transient (``leave=False``), and, unless the caller asked for them with
``progress=True``, drawn only once an operation has run for `BAR_DELAY_S` seconds, so short fits
draw nothing. `track` wraps any loop in a bar under the same rule, and `echo` prints a line
without breaking the bars.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

import torch
from botorch.exceptions.warnings import OptimizationWarning
from linear_operator.utils.errors import NanError, NotPSDError
from torch import Tensor

T = TypeVar("T")
StopReason = str  # one of STOP_REASONS
#: Why a fit stopped: every value `FitResult.stop_reason` can take.
STOP_REASONS = ("max_steps", "converged", "callback", "non-finite", "not-psd")
#: The stop reasons of a numerical failure (the best state is restored, `FitFailedWarning`).
FAILURES = ("non-finite", "not-psd")


class FitWarning(OptimizationWarning):
    """Base of gpvi's fitting warnings (a BoTorch `OptimizationWarning`, so BoTorch's filters apply)."""


class MaxStepsWarning(FitWarning):
    """The step budget ran out before the stopping rule fired: the fit may not have converged."""


class FitFailedWarning(FitWarning):
    """A step met a numerical failure (non-finite objective, a matrix not positive definite): the fit
    stopped and the best iterate seen was restored."""


# -- progress bars ---------------------------------------------------------------------------------
#: The environment variable that turns bars on ("1") or off ("0") where the caller did not say.
PROGRESS_ENV_VAR = "GPVI_PROGRESS"
#: Seconds an operation runs before its bar appears (unless the caller asked for it with progress=True).
BAR_DELAY_S = 0.5
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def show_progress(progress: bool | None = None) -> bool:
    """Whether to draw a bar: ``progress`` if given, else ``GPVI_PROGRESS`` ("0"/"1"), else never under
    pytest, else on a terminal (stderr) or in a Jupyter kernel (the module docstring's rule).

    An unrecognised ``GPVI_PROGRESS`` is ignored with a warning naming it; a ``progress`` other than
    True, False or None is a `TypeError`.
    """
    if progress is not None:
        if not isinstance(progress, bool):
            raise TypeError(f"`progress` must be True, False or None, got {progress!r}.")
        return progress
    env = os.environ.get(PROGRESS_ENV_VAR, "").strip().lower()
    if env in _ON:
        return True
    if env in _OFF:
        return False
    if env:
        warnings.warn(
            f"{PROGRESS_ENV_VAR}={os.environ[PROGRESS_ENV_VAR]!r} is neither '0' nor '1'; ignored.",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
    if "PYTEST_CURRENT_TEST" in os.environ:
        return False
    return _stderr_is_terminal() or in_jupyter_kernel()


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def in_jupyter_kernel() -> bool:
    """Whether this process is an IPython kernel (Jupyter, VS Code, Colab). IPython is not imported
    here: without it in `sys.modules` there is no kernel."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too broken to ask is no kernel to draw in
        return False
    if shell is None:
        return False
    return getattr(shell, "kernel", None) is not None or "IPKernelApp" in getattr(shell, "config", {})


def bar_delay(progress: bool | None) -> float:
    """`BAR_DELAY_S`, or 0 when the caller asked for a bar (``progress=True``): it is drawn at once."""
    return 0.0 if progress is True else BAR_DELAY_S


def progress_bar(
    total: int | None,
    show: bool,
    desc: str = "gpvi.fit",
    *,
    leave: bool = False,
    delay: float | None = None,
    unit: str = "it",
    initial: int = 0,
) -> Any:
    """A `tqdm.auto` bar of ``total`` steps on stderr (None when ``show`` is False; tqdm is imported only then).

    It appears once ``delay`` seconds have passed (default `BAR_DELAY_S`; `bar_delay` gives the
    caller's). Draw it with ``bar.set_postfix(..., refresh=False)`` then ``bar.update(n)``: a refreshing
    ``set_postfix`` would draw the bar before ``delay`` has passed.
    """
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        leave=leave,
        delay=BAR_DELAY_S if delay is None else delay,
        unit=unit,
        initial=initial,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def track(
    iterable: Iterable[T],
    desc: str,
    progress: bool | None = None,
    *,
    total: int | None = None,
    leave: bool = False,
    unit: str = "it",
) -> Iterable[T]:
    """``iterable`` wrapped in a bar under `show_progress`'s rule (itself when no bar is drawn).

        for name in track(datasets, "data sets"):
            ...

    ``total`` defaults to ``len(iterable)`` when it has one.
    """
    if not show_progress(progress):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        desc=desc,
        total=total,
        leave=leave,
        delay=bar_delay(progress),
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def echo(line: str, file: TextIO | None = None) -> None:
    """Print ``line`` to ``file`` (default stdout) and flush, without breaking a bar drawn on stderr
    (through ``tqdm.write`` once tqdm is in use; a plain ``print`` otherwise)."""
    file = sys.stdout if file is None else file
    if "tqdm" in sys.modules:
        from tqdm.auto import tqdm

        tqdm.write(line, file=file)
    else:
        print(line, file=file)
    file.flush()


# -- stopping rules --------------------------------------------------------------------------------
@dataclass
class EarlyStopping:
    """Stop when the smoothed loss has not improved by ``rel_tol`` (relative) for ``patience`` steps."""

    patience: int = 100
    rel_tol: float = 1e-4
    smoothing: float = 0.9
    _ema: float | None = field(default=None, repr=False)
    _best: float = field(default=math.inf, repr=False)
    _stale: int = field(default=0, repr=False)

    def should_stop(self, loss: float) -> bool:
        """Feed one step's loss (lower is better); True once ``patience`` steps passed without improvement."""
        self._ema = loss if self._ema is None else self.smoothing * self._ema + (1 - self.smoothing) * loss
        if self._best == math.inf or self._ema < self._best - self.rel_tol * max(abs(self._best), 1e-8):
            self._best, self._stale = self._ema, 0
        else:
            self._stale += 1
        return self._stale >= self.patience


@dataclass
class RelativeChange:
    """Stop when one step changes the loss by at most ``rel_tol`` of its size: |Δ| <= rel_tol · |loss|.

    The rule of deterministic fits whose every step is a full update (variational EM)."""

    rel_tol: float = 1e-6
    _last: float | None = field(default=None, repr=False)

    def should_stop(self, loss: float) -> bool:
        """Feed one step's loss; True when it differs from the previous one by at most ``rel_tol`` of its size."""
        last, self._last = self._last, loss
        return last is not None and abs(loss - last) <= self.rel_tol * abs(loss)


# -- the result ------------------------------------------------------------------------------------
#: How `FitResult`'s repr names each objective (the names are the recipes' ``objective`` options).
OBJECTIVE_TITLES = {"elbo": "elbo", "ep": "EP-like objective", "pll": "pll"}


@dataclass(repr=False)
class FitResult:
    """What a fit did: per-step objective parts, wall time, and why it stopped.

        >>> result
        FitResult(stop_reason='converged', steps=412, time=1.93 s, final elbo=-123.4)
        >>> result.final_objective, result.objective_name
        (-123.4, 'elbo')
        >>> result.plot()                      # the objective against the step (matplotlib)

    Attributes:
        history: One dict per step: the objective's parts (floats, totals not per datum), step (1,
            2, ...) and time (s). The keys are the recipe's: "elbo", "expected_log_lik", "kl" (the
            ELBO recipes), "pll", "log_predictive", "kl" (``objective="pll"``), "ep" (the EP-like
            M-step), and "objective" where a recipe records the maximised value apart from its
            parts ("cvi", "cvi-em": the ELBO or the EP-like value; "collapsed": the bound "elbo"
            plus the log prior).
        wall_time: Seconds spent.
        stop_reason: "max_steps", "converged", "callback", "non-finite" or "not-psd" (`STOP_REASONS`).
        num_steps: Steps taken.
        objective_name: The name of the objective the fit maximised: "elbo", "ep" (the EP-like
            estimate of log p(y | θ)), "pll" (the predictive log likelihood); the step loop's label.
            Default (""): read from the history's keys ("ep", "pll", "elbo", in that order).
    """

    history: list[dict[str, float]]
    wall_time: float
    stop_reason: StopReason
    num_steps: int
    objective_name: str = ""

    def __post_init__(self) -> None:
        if not self.objective_name:
            last = self.history[-1] if self.history else {}
            self.objective_name = next((k for k in ("ep", "pll", "elbo", "objective") if k in last), "")

    @property
    def final_objective(self) -> float:
        """The last value of the objective the fit maximised (`objective_name`): the history's
        "objective" where the recipe records it, else its `objective_name` column; NaN after 0 steps."""
        if not self.history:
            return math.nan
        last = self.history[-1]
        key = "objective" if "objective" in last else self.objective_name
        if key not in last:
            raise AttributeError(
                f"This fit's history has no {self.objective_name or 'objective'!r} column "
                f"(its keys: {', '.join(last)}); read the one you need from `history`."
            )
        return last[key]

    @property
    def final_elbo(self) -> float:
        """The last ELBO the fit recorded (the history's "elbo"); NaN after 0 steps.

        Raises:
            AttributeError: The fit computed no ELBO (an EP-like or PLL fit records its own objective
                only): read `final_objective`, or evaluate the fitted model's ELBO.
        """
        if not self.history:
            return math.nan
        last = self.history[-1]
        if "elbo" not in last:
            title = OBJECTIVE_TITLES.get(self.objective_name, self.objective_name or "an objective")
            raise AttributeError(
                f"This fit maximised the {title} ({self.objective_name!r}) and recorded no ELBO (history keys: "
                f"{', '.join(last)}): read `final_objective`, or evaluate the fitted model's ELBO "
                "(e.g. `model.elbo(X, Y).elbo`)."
            )
        return last["elbo"]

    @property
    def converged(self) -> bool:
        """Whether the stopping rule ended the fit (not the budget, a callback or a failure)."""
        return self.stop_reason == "converged"

    @property
    def failed(self) -> bool:
        """Whether a numerical failure ended the fit (the best state seen was restored)."""
        return self.stop_reason in FAILURES

    def column(self, key: str) -> list[float]:
        """One history column, step by step (a `KeyError` when a step lacks ``key``)."""
        return [h[key] for h in self.history]

    def __repr__(self) -> str:
        """One line: the stop reason, steps, time and the final objective by name (never the history)."""
        seconds = f"{self.wall_time:.3g}" if abs(self.wall_time) < 1000 else f"{self.wall_time:.0f}"
        text = f"FitResult(stop_reason={self.stop_reason!r}, steps={self.num_steps}, time={seconds} s"
        try:
            value = self.final_objective if self.history else None
        except AttributeError:
            value = None
        if value is not None:
            title = OBJECTIVE_TITLES.get(self.objective_name, self.objective_name or "objective")
            text += f", final {title}={value:.6g}"
        return text + ")"

    def plot(self, keys: str | Sequence[str] | None = None, ax: Any = None, x: str = "step") -> Any:
        """Plot the training history with matplotlib (imported here); returns the Axes.

        Args:
            keys: History columns to draw (default: the maximised objective's, see `final_objective`).
            ax: A matplotlib Axes to draw on (default: a new figure's).
            x: "step" or "time" (seconds since the fit started).
        """
        if x not in ("step", "time"):
            raise ValueError(f"`x` must be 'step' or 'time', got {x!r}.")
        available = list(dict.fromkeys(k for row in self.history for k in row if k not in ("step", "time")))
        if keys is None:
            last = self.history[-1] if self.history else {}
            keys = ["objective" if "objective" in last else self.objective_name] if last else []
        elif isinstance(keys, str):
            keys = [keys]
        else:
            keys = list(keys)
        missing = [k for k in keys if k not in available]
        if missing:
            raise ValueError(f"`keys` {missing} are not in the history; it has {available}.")
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(6, 3.5))
        for key in keys:
            rows = [row for row in self.history if key in row]
            label = OBJECTIVE_TITLES.get(self.objective_name, key) if key == "objective" else key
            ax.plot([row[x] for row in rows], [row[key] for row in rows], label=label)
        ax.set_xlabel("step" if x == "step" else "time (s)")
        if len(keys) == 1:
            ax.set_ylabel(ax.lines[-1].get_label() if ax.lines else keys[0])
        elif keys:
            ax.legend()
        ax.set_title(f"{self.num_steps} steps, {self.wall_time:.3g} s, stopped: {self.stop_reason}")
        return ax


_NOT_PSD = re.compile(r"positive.definite|cholesky|singular", re.IGNORECASE)
_NON_FINITE = re.compile(r"\bnan\b|\binf\b|non-finite|not finite|invalid values", re.IGNORECASE)


def numerical_failure(error: BaseException) -> StopReason | None:
    """The stop reason of an exception raised by a numerical failure ("not-psd", "non-finite"), else None.

    Not positive definite: linear_operator's `NotPSDError`, torch's `LinAlgError`, a runtime error
    naming a Cholesky factor. Non-finite: `NanError`, and value/runtime errors about NaN or inf values
    (a torch distribution's argument check). Anything else is a bug or bad input and must propagate.
    """
    if isinstance(error, (NotPSDError, torch.linalg.LinAlgError)):
        return "non-finite" if _NON_FINITE.search(str(error)) else "not-psd"
    if isinstance(error, NanError):
        return "non-finite"
    if isinstance(error, (RuntimeError, ValueError)) and not isinstance(error, NotImplementedError):
        text = str(error)
        if _NOT_PSD.search(text):
            return "not-psd"
        if _NON_FINITE.search(text):
            return "non-finite"
    return None


class StopFit(Exception):
    """Raised by `StepLoop.record_or_raise` to leave an optimiser's closure (L-BFGS) with a stop reason."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason)
        self.reason = reason


# -- the loop --------------------------------------------------------------------------------------
class StepLoop:
    """Books the steps of one fit (see the module docstring); use it as a context manager.

    Args:
        max_steps: The step budget (`steps()` yields 1..max_steps).
        desc: The progress bar's label.
        progress: Draw a bar: True (at once), False, or None for `show_progress`'s rule (a terminal or
            Jupyter, never under pytest, ``GPVI_PROGRESS``; drawn after `BAR_DELAY_S` seconds).
        callback: ``callback(step, parts) -> bool | None`` after each step; True stops the fit.
        early_stopping: A rule with ``should_stop(loss) -> bool`` (`EarlyStopping`, `RelativeChange`)
            fed ``loss = −value / loss_scale``; None: no rule.
        loss_scale: Divides the objective before the rule sees it (e.g. N, for a per-datum loss).
        label: The name of the value given to `record` (the maximised objective: "elbo", "ep", "pll"),
            on the bar and as the result's `FitResult.objective_name`.
        keep_best: A module whose state is saved at the start and whenever `offer` sees a new best
            value; `restore_best` puts it back (the rule of Li et al. against a non-monotone EP-like
            objective), and so does a numerical failure.
        warn_max_steps: Warn (`MaxStepsWarning`) when the budget runs out; default: when a stopping
            rule is active (a fixed step count asked for without one is not a failure to converge).
    """

    def __init__(
        self,
        max_steps: int,
        *,
        desc: str = "gpvi.fit",
        progress: bool | None = None,
        callback: Callable[[int, Any], bool | None] | None = None,
        early_stopping: Any = None,
        loss_scale: float = 1.0,
        label: str = "elbo",
        keep_best: torch.nn.Module | None = None,
        warn_max_steps: bool | None = None,
    ) -> None:
        self.max_steps = max_steps
        self.callback, self.rule, self.loss_scale, self.label = callback, early_stopping, loss_scale, label
        self.history: list[dict[str, float]] = []
        self._show, self._desc, self._delay = show_progress(progress), desc, bar_delay(progress)
        self._bar: Any = None
        self._start = time.perf_counter()
        self._keep = keep_best
        self._best: tuple[float, dict[str, Tensor]] | None = None
        self.warn_max_steps = early_stopping is not None if warn_max_steps is None else warn_max_steps
        #: The stop reason of a numerical failure met inside ``with loop:`` (None: none met).
        self.failure: StopReason | None = None
        self.error: BaseException | None = None

    def __enter__(self) -> StepLoop:
        self._start = time.perf_counter()
        self._bar = progress_bar(self.max_steps, self._show, desc=self._desc, delay=self._delay)
        if self._keep is not None and self._best is None:
            self._best = (-math.inf, self._snapshot())
        return self

    def __exit__(self, exc_type: Any, error: BaseException | None, traceback: Any) -> bool:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        reason = None if error is None or isinstance(error, StopFit) else numerical_failure(error)
        if reason is None:
            return False
        self.failure, self.error = reason, error
        self.restore_best()
        return True  # the fit ends here; `result` reports it

    def steps(self) -> Iterator[int]:
        """1, 2, ..., max_steps."""
        return iter(range(1, self.max_steps + 1))

    @property
    def elapsed(self) -> float:
        """Seconds since the loop started (entering ``with loop:``)."""
        return time.perf_counter() - self._start

    def record(
        self, value: float, parts: Mapping[str, Tensor | float], *, callback_arg: Any = None
    ) -> StopReason | None:
        """Book one step: its history row (the parts as floats, step, time), the bar, then the stop rules.

        Returns the reason to stop ("non-finite", "callback", "converged") or None. The callback
        receives ``callback_arg`` (default: ``parts``).
        """
        row = {k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in parts.items()}
        row.update(step=len(self.history) + 1, time=self.elapsed)
        self.history.append(row)
        step = row["step"]
        if self._bar is not None:
            self._bar.set_postfix({self.label: f"{value:.4g}"}, refresh=False)  # drawn by update (after the delay)
            self._bar.update(1)
        if not math.isfinite(value):
            return "non-finite"
        if self.callback is not None and self.callback(step, parts if callback_arg is None else callback_arg):
            return "callback"
        if self.rule is not None and self.rule.should_stop(-value / self.loss_scale):
            return "converged"
        return None

    def record_or_raise(self, value: float, parts: Mapping[str, Tensor | float], **kw: Any) -> None:
        """`record`, raising `StopFit` with the reason (to leave an optimiser's closure)."""
        reason = self.record(value, parts, **kw)
        if reason is not None:
            raise StopFit(reason)

    def write(self, line: str) -> None:
        """Print a line without breaking the bar."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    # -- restore-best ---------------------------------------------------------------------------
    def offer(self, value: float) -> None:
        """Save ``keep_best``'s state if ``value`` is the best seen (call it before changing the state)."""
        if self._keep is not None and math.isfinite(value) and (self._best is None or value > self._best[0]):
            self._best = (value, self._snapshot())

    def _snapshot(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self._keep.state_dict().items()}

    def restore_best(self) -> None:
        """Put back the state saved with the best value (nothing when none was saved)."""
        if self._keep is not None and self._best is not None:
            self._keep.load_state_dict(self._best[1])

    def result(self, stop_reason: StopReason) -> FitResult:
        """The `FitResult`; a numerical failure (met in the loop, or ``stop_reason``) overrides the
        reason, restores the best state and warns; running out of steps warns (see the class)."""
        reason = self.failure or stop_reason
        if reason in FAILURES:
            if self.failure is None:
                self.restore_best()
            kept = "the best state seen was restored" if self._keep is not None else "the model is as it was then"
            cause = f": {type(self.error).__name__}: {_first_line(self.error)}" if self.error is not None else ""
            warnings.warn(
                f"{self._desc} stopped at step {len(self.history) + 1} ({reason}{cause}); {kept}.",
                FitFailedWarning,
                stacklevel=caller_stacklevel(),
            )
        elif reason == "max_steps" and self.warn_max_steps:
            warnings.warn(
                f"{self._desc} ran out of steps (max_steps={self.max_steps}) before it converged; "
                "raise max_steps, or check the history of the result.",
                MaxStepsWarning,
                stacklevel=caller_stacklevel(),
            )
        return FitResult(self.history, self.elapsed, reason, len(self.history), objective_name=self.label)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def caller_stacklevel() -> int:
    """The ``stacklevel`` of a `warnings.warn` made here that points at the first frame outside gpvi."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0][:200] if error is not None and str(error).strip() else ""


__all__ = [
    "BAR_DELAY_S",
    "OBJECTIVE_TITLES",
    "PROGRESS_ENV_VAR",
    "STOP_REASONS",
    "EarlyStopping",
    "FitFailedWarning",
    "FAILURES",
    "FitWarning",
    "MaxStepsWarning",
    "FitResult",
    "RelativeChange",
    "StepLoop",
    "StopFit",
    "caller_stacklevel",
    "echo",
    "bar_delay",
    "in_jupyter_kernel",
    "numerical_failure",
    "progress_bar",
    "show_progress",
    "track",
]
