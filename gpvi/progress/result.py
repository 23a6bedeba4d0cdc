"""How a fit ends: the stop reasons, the stopping rules, `FitResult`, and the numerical failures.

`STOP_REASONS` names every way a fit stops; `EarlyStopping` and `RelativeChange` decide "converged";
`numerical_failure` tells a numerical failure ("not-psd", "non-finite") from a bug; `FitResult` is
what a fit returns; `FitFailedWarning` and `MaxStepsWarning` are what `StepLoop.result` warns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from botorch.exceptions.warnings import OptimizationWarning
from linear_operator.utils.errors import NanError, NotPSDError

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
