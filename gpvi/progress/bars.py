"""Progress bars: whether one is drawn (`show_progress`), the bars themselves, `track` and `echo`.

The rule, the delay and the tqdm bars are described in `gpvi.progress`. tqdm is imported only when a
bar is drawn, IPython never.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

#: The environment variable that turns bars on ("1") or off ("0") where the caller did not say.
PROGRESS_ENV_VAR = "GPVI_PROGRESS"
#: Seconds an operation runs before its bar appears (unless the caller asked for it with progress=True).
BAR_DELAY_S = 0.5
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def show_progress(progress: bool | None = None) -> bool:
    """Whether to draw a bar: ``progress`` if given, else ``GPVI_PROGRESS`` ("0"/"1"), else never under
    pytest, else on a terminal (stderr) or in a Jupyter kernel (`gpvi.progress`'s rule).

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
        from gpvi.progress.loop import caller_stacklevel  # here: loop imports this module

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
