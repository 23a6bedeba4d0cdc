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
progress-bar rule (a bar on a terminal, never under pytest, or as the caller says).
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from botorch.exceptions.warnings import OptimizationWarning
from linear_operator.utils.errors import NanError, NotPSDError
from torch import Tensor

StopReason = str  # one of STOP_REASONS
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
def show_progress(progress: bool | None) -> bool:
    """Whether to draw a bar: the caller's choice, else only on a terminal and never under pytest."""
    if progress is not None:
        return progress
    return sys.stderr.isatty() and "PYTEST_CURRENT_TEST" not in os.environ


def progress_bar(total: int, show: bool, desc: str = "gpvi.fit") -> Any:
    """A tqdm bar of ``total`` steps (None when ``show`` is False; tqdm is imported only then)."""
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


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
        last, self._last = self._last, loss
        return last is not None and abs(loss - last) <= self.rel_tol * abs(loss)


# -- the result ------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """What a fit did: per-step objective parts, wall time, and why it stopped.

    Attributes:
        history: One dict per step: the objective's parts (e.g. elbo, expected_log_lik, kl, or
            objective for EP-like fits; floats, totals not per datum), step (1, 2, ...) and time (s).
        wall_time: Seconds spent.
        stop_reason: "max_steps", "converged", "callback", "non-finite" or "not-psd" (`STOP_REASONS`).
        num_steps: Steps taken.
    """

    history: list[dict[str, float]]
    wall_time: float
    stop_reason: StopReason
    num_steps: int

    @property
    def final_elbo(self) -> float:
        return self.history[-1].get("elbo", float("nan")) if self.history else float("nan")

    @property
    def final_objective(self) -> float:
        """The last objective value (the ELBO, or the EP-like estimate for ``objective="ep"``)."""
        last = self.history[-1] if self.history else {}
        return last.get("objective", last.get("elbo", float("nan")))

    @property
    def converged(self) -> bool:
        """Whether the stopping rule ended the fit (not the budget, a callback or a failure)."""
        return self.stop_reason == "converged"

    @property
    def failed(self) -> bool:
        """Whether a numerical failure ended the fit (the best state seen was restored)."""
        return self.stop_reason in FAILURES

    def column(self, key: str) -> list[float]:
        return [h[key] for h in self.history]


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
        progress: Draw a bar (default: `show_progress`'s rule).
        callback: ``callback(step, parts) -> bool | None`` after each step; True stops the fit.
        early_stopping: A rule with ``should_stop(loss) -> bool`` (`EarlyStopping`, `RelativeChange`)
            fed ``loss = −value / loss_scale``; None: no rule.
        loss_scale: Divides the objective before the rule sees it (e.g. N, for a per-datum loss).
        label: The name of the value on the bar.
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
        self._show, self._desc = show_progress(progress), desc
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
        self._bar = progress_bar(self.max_steps, self._show, desc=self._desc)
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
            self._bar.update(1)
            self._bar.set_postfix({self.label: f"{value:.4g}"})
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
        return FitResult(self.history, self.elapsed, reason, len(self.history))


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
    "numerical_failure",
    "progress_bar",
    "show_progress",
]
