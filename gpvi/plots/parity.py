"""Predicted against observed targets on held-out data, for inputs of any dimension (a parity plot).

Each point is one held-out target: the predictive mean of y against the observed y, with the
central predictive interval of y (observation noise included) as an error bar; points on the
diagonal are exact predictions. The legend gives the RMSE over all points.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gpvi.plots.common import axes, held_out, numpy, predictive


def plot_parity(
    model: Any,
    X: Tensor,
    Y: Tensor,
    *,
    ax: Any = None,
    level: float = 0.95,
    output: int = 0,
    max_points: int | None = 200,
    seed: int = 0,
) -> Any:
    """Draw predictive means with central intervals against observed targets.

    Args:
        model: A fitted regression model (a Gaussian predictive gets error bars; another likelihood
            draws E[y | x] without them).
        X: Held-out inputs, `n x d` (any d).
        Y: Held-out targets, `n x m` (or `n`), in the original units.
        ax: Axes to draw in (default: a new figure).
        level: The central probability of the error bars, in (0, 1).
        output: The output (column of ``Y``) to draw.
        max_points: Draw at most this many points, a random subset (None: all); the RMSE uses all.
        seed: Seed of the subset.

    Returns:
        The Axes.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` must be a probability in (0, 1), got {level!r}.")
    if max_points is not None and (not isinstance(max_points, int) or max_points < 1):
        raise ValueError(f"`max_points` must be a positive integer or None, got {max_points!r}.")
    X, Y = held_out(model, X, Y, output)
    pred = predictive(model, X, output)
    Y = Y.detach().to(pred.noisy_mean)
    rmse = float((pred.noisy_mean - Y).pow(2).mean().sqrt())
    rows = torch.arange(Y.shape[0])
    if max_points is not None and Y.shape[0] > max_points:
        rows = torch.randperm(Y.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
    ax = axes(ax, (5.0, 4.5))
    yerr = None
    if pred.noisy_variance is not None:
        z = float(torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=torch.float64)))
        yerr = numpy(z * pred.noisy_variance[rows].clamp_min(0).sqrt())
    ax.errorbar(
        numpy(Y[rows]),
        numpy(pred.noisy_mean[rows]),
        yerr=yerr,
        fmt="o",
        ms=3,
        alpha=0.6,
        elinewidth=0.8,
        label=f"mean ± {level:.0%} interval (RMSE {rmse:.3g})" if yerr is not None else f"mean (RMSE {rmse:.3g})",
    )
    lo, hi = float(Y.min()), float(Y.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="prediction = y")
    ax.set_xlabel("observed y")
    ax.set_ylabel("predicted y")
    ax.legend(loc="best", fontsize=8)
    return ax


__all__ = ["plot_parity"]
