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

The modules: `bars` (the rule and the bars, `track`, `echo`), `result` (stop reasons, stopping
rules, `FitResult`, numerical failures, the warnings), `loop` (`StepLoop`, `caller_stacklevel`).
"""

from gpvi.progress.bars import (
    BAR_DELAY_S,
    PROGRESS_ENV_VAR,
    T,  # noqa: F401  (track's type variable; not in __all__)
    bar_delay,
    echo,
    in_jupyter_kernel,
    progress_bar,
    show_progress,
    track,
)
from gpvi.progress.loop import StepLoop, caller_stacklevel
from gpvi.progress.result import (
    FAILURES,
    OBJECTIVE_TITLES,
    STOP_REASONS,
    EarlyStopping,
    FitFailedWarning,
    FitResult,
    FitWarning,
    MaxStepsWarning,
    RelativeChange,
    StopFit,
    StopReason,  # noqa: F401  (the type of a stop reason; not in __all__)
    numerical_failure,
)

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
