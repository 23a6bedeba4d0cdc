"""A fit's training history: chosen columns of `gpvi.progress.FitResult.history` against step or wall time.

One line per key (e.g. "elbo", "objective", "expected_log_lik", "kl"), optionally scaled (1 / n:
per-datum values) and smoothed by a centred moving average drawn over the raw, faint line (a
minibatch ELBO is a noisy estimate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from gpvi.plots.common import axes

#: The abscissae `plot_history` knows, and their axis labels.
X_AXES = {"step": "step", "time": "wall time (s)"}


def plot_history(
    result: Any,
    keys: str | Sequence[str] = ("elbo",),
    *,
    ax: Any = None,
    x: str = "step",
    scale: float = 1.0,
    smooth: int | None = None,
    label: str | None = None,
) -> Any:
    """Draw columns of a fit's history against step or wall time.

    Example:
        >>> result = gpvi.fit(model, max_steps=500)
        >>> plot_history(result, ("elbo", "kl"), scale=1 / model.num_data)

    Args:
        result: A `gpvi.progress.FitResult` (anything with a ``history`` list of dicts), or such a list.
        keys: The history columns to draw, one line each (a single name is one key).
        ax: Axes to draw in (default: a new figure).
        x: "step" (the step number) or "time" (wall time since the fit began, s).
        scale: Multiplies every value (``1 / n`` draws per-datum values).
        smooth: A window of w >= 2 steps: draw the raw values faintly and their centred moving
            average over w steps on top (default: the raw values only).
        label: Legend label of the lines (prefixed to the key when there are several keys).

    Returns:
        The Axes.
    """
    history = getattr(result, "history", result)
    if not isinstance(history, Sequence) or not all(isinstance(row, Mapping) for row in history):
        raise TypeError(f"`result` must be a FitResult or a list of dicts, got {type(result).__name__}.")
    if not history:
        raise ValueError("`result` has an empty history: nothing to draw.")
    if x not in X_AXES:
        raise ValueError(f"`x` must be one of {sorted(X_AXES)}, got {x!r}.")
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if not keys:
        raise ValueError("`keys` names no column to draw.")
    columns = set().union(*(row.keys() for row in history))
    missing = [k for k in (*keys, x) if any(k not in row for row in history)]
    if missing:
        raise ValueError(f"history has no column {missing[0]!r} (in every row); its columns: {sorted(columns)}.")
    if smooth is not None and (not isinstance(smooth, int) or smooth < 2):
        raise ValueError(f"`smooth` must be a window of at least 2 steps, or None; got {smooth!r}.")
    ax = axes(ax, (6.5, 4.0))
    xs = torch.tensor([float(row[x]) for row in history], dtype=torch.float64)
    for key in keys:
        ys = torch.tensor([float(row[key]) for row in history], dtype=torch.float64) * scale
        name = key if label is None else (label if len(keys) == 1 else f"{label}: {key}")
        if smooth is None or smooth > len(ys):
            ax.plot(xs.numpy(), ys.numpy(), lw=1.3, label=name)
            continue
        (raw,) = ax.plot(xs.numpy(), ys.numpy(), lw=0.8, alpha=0.35)
        average = torch.nn.functional.avg_pool1d(ys[None, None], smooth, stride=1)[0, 0]
        offset = (smooth - 1) // 2
        ax.plot(
            xs[offset : offset + len(average)].numpy(),
            average.numpy(),
            lw=1.5,
            color=raw.get_color(),
            label=f"{name} (moving average, {smooth} steps)",
        )
    ax.set_xlabel(X_AXES[x])
    ax.set_ylabel((keys[0] + (" (scaled)" if scale != 1.0 else "")) if len(keys) == 1 else "value")
    if len(keys) > 1 or label is not None or smooth is not None:
        ax.legend(loc="best", fontsize=8)
    return ax


__all__ = ["X_AXES", "plot_history"]
