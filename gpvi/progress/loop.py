"""`StepLoop`, the one step loop of every iterative fit (history, bar, stopping rules, best state).

How it is used, and what it does on a numerical failure, is described in `gpvi.progress`.
`caller_stacklevel` points gpvi's warnings at the first frame outside the package.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from gpvi._state import clone_state
from gpvi.progress.bars import bar_delay, progress_bar, show_progress
from gpvi.progress.result import (
    FAILURES,
    FitFailedWarning,
    FitResult,
    MaxStepsWarning,
    StopFit,
    StopReason,
    numerical_failure,
)


class StepLoop:
    """Books the steps of one fit (see `gpvi.progress`); use it as a context manager.

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
        return clone_state(self._keep)

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


# The directory of the gpvi package (this file is gpvi/progress/loop.py): frames there are gpvi's.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def caller_stacklevel() -> int:
    """The ``stacklevel`` of a `warnings.warn` made here that points at the first frame outside gpvi."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0][:200] if error is not None and str(error).strip() else ""
