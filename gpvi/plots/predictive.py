"""The predictive of a model over its inputs: a curve with bands (1-D) or two filled-contour panels (2-D).

1-D inputs (one Axes): the predictive mean over a grid spanning the training data (or at given
inputs), central bands of the latent posterior q(f) (filled) and of y with the observation noise
(dashed), the training data as points, and the model's special locations (inducing inputs, and any
others its ``plot_locations()`` gives) as rug marks along the bottom. A binary classifier draws
p(y = 1 | x) (the likelihood averaged over q(f)) and its data coloured by label; any other
non-Gaussian likelihood draws E[y | x].

2-D inputs (a Figure of two panels): the predictive mean (classifiers: p(y = 1 | x) with its 0.5
contour) and the latent posterior standard deviation, as filled contours, with the data and the
special locations on both.

Regression values are in the original target units: the model's `posterior` undoes its outcome
transform. The model is read through its public API only (`gpvi.plots.common`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from gpvi.plots.common import (
    LOCATION_STYLES,
    Predictive,
    axes,
    check_inputs,
    input_dim,
    locations,
    numpy,
    predictive,
    training_points,
)

#: Fraction of the training inputs' range added on each side of the default grid.
PADDING = 0.05


def plot_predictive(
    model: Any,
    X: Tensor | None = None,
    *,
    ax: Any = None,
    data: bool | tuple[Tensor, Tensor] = True,
    inducing: bool = True,
    bands: Sequence[float] = (0.95,),
    observation_noise: bool = True,
    output: int = 0,
    num: int | None = None,
) -> Any:
    """Draw a model's predictive over 1-D or 2-D inputs (see the module docstring).

    Example:
        >>> model = gpvi.SVGP(X, Y, num_inducing=10)          # X: n x 1
        >>> gpvi.fit(model)
        >>> ax = plot_predictive(model, bands=(0.5, 0.95))
        >>> ax.figure.savefig("svgp.png")

    Args:
        model: A fitted model with BoTorch's ``posterior`` and ``train_inputs``/``train_targets``
            (any gpvi model; `n x d` inputs with d = 1 or 2).
        X: Inputs to predict at, `k x d` (default: a grid of ``num`` points per axis over the
            training inputs' range, padded by 5 % on each side). In 1-D they are sorted; in 2-D
            given points are contoured by triangulation.
        ax: 1-D: an Axes to draw in; 2-D: a pair of Axes (mean, standard deviation). Default: a new figure.
        data: Draw the training data (True), none (False), or the points of an `(X, Y)` pair of
            `n x d` inputs and `n x m` targets in the original units.
        inducing: Mark the model's special locations: ``model.plot_locations()``, a dict
            label -> `k x d` inputs (gpvi's models: the inducing inputs).
        bands: Central probability levels of the bands in (0, 1), 1-D Gaussian predictives only.
        observation_noise: 1-D: also draw the bands of y with the likelihood's noise (dashed).
        output: The output (column of the targets) to draw.
        num: Grid points per axis when ``X`` is None (default 200 in 1-D, 60 in 2-D).

    Returns:
        1-D: the Axes. 2-D: the Figure holding the two panels.
    """
    d = input_dim(model)
    if d not in (1, 2):
        raise ValueError(
            f"plot_predictive draws 1-D or 2-D inputs; the model has d = {d}: "
            "use plot_parity or plot_calibration on held-out data instead."
        )
    levels = tuple(float(b) for b in bands)
    if any(not 0.0 < b < 1.0 for b in levels):
        raise ValueError(f"`bands` must be probabilities in (0, 1), got {list(bands)}.")
    if num is not None and (not isinstance(num, int) or num < 2):
        raise ValueError(f"`num` must be an integer >= 2, got {num!r}.")
    points = _data_points(model, data, output)
    marks = locations(model) if inducing else {}
    if d == 1:
        grid = _grid_1d(model, num or 200) if X is None else check_inputs(model, X).sort(dim=0).values
        return _draw_1d(ax, grid, predictive(model, grid, output), points, marks, levels, observation_noise)
    return _draw_2d(model, ax, X, num or 60, output, points, marks)


def _data_points(model: Any, data: bool | tuple[Tensor, Tensor], output: int) -> tuple[Tensor, Tensor] | None:
    if data is True:
        return training_points(model, output)
    if data is False or data is None:
        return None
    if not (isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)):
        raise TypeError("`data` must be True, False or an `(X, Y)` pair of tensors.")
    X, Y = data
    if Y.dim() == 2:
        Y = Y[:, output]
    if X.dim() != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"`data` must be `n x d` inputs and `n x m` targets, got {tuple(X.shape)}, {tuple(Y.shape)}.")
    return X.detach(), Y.detach()


def _span(model: Any, num: int) -> list[Tensor]:
    """``num`` points per input column over the training inputs' range, padded by `PADDING`."""
    X = model.train_inputs[0].detach().reshape(-1, input_dim(model))
    lo, hi = X.min(0).values, X.max(0).values
    width = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    lo, hi = lo - PADDING * width, hi + PADDING * width
    return [
        torch.linspace(float(a), float(b), num, dtype=X.dtype, device=X.device) for a, b in zip(lo, hi, strict=True)
    ]


def _grid_1d(model: Any, num: int) -> Tensor:
    return _span(model, num)[0].unsqueeze(-1)


def _rug(ax: Any, marks: dict[str, Tensor]) -> None:
    """Rug marks along the bottom of a 1-D plot, one colour per kind of location."""
    for i, (label, Z) in enumerate(marks.items()):
        color, _ = LOCATION_STYLES[i % len(LOCATION_STYLES)]
        z = numpy(Z[:, 0])
        ax.plot(
            z,
            [0.025 + 0.04 * i] * len(z),
            linestyle="none",
            marker="|",
            markersize=12,
            color=color,
            transform=ax.get_xaxis_transform(),
            label=f"{label} ({len(z)})",
        )


def _draw_1d(
    ax: Any,
    grid: Tensor,
    pred: Predictive,
    points: tuple[Tensor, Tensor] | None,
    marks: dict[str, Tensor],
    levels: tuple[float, ...],
    observation_noise: bool,
) -> Any:
    ax = axes(ax, (7.0, 4.0))
    x = numpy(grid[:, 0])
    if pred.kind == "gaussian":
        sd, noisy_sd = pred.variance.clamp_min(0).sqrt(), pred.noisy_variance.clamp_min(0).sqrt()
        for i, level in enumerate(sorted(levels, reverse=True)):
            z = float(torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=torch.float64)))
            lo, hi = pred.mean - z * sd, pred.mean + z * sd
            alpha = 0.15 + 0.15 * i / max(1, len(levels) - 1)
            ax.fill_between(x, numpy(lo), numpy(hi), color="C0", alpha=alpha, lw=0, label=f"{level:.0%} band of f")
            if observation_noise:
                style = dict(color="C0", lw=0.9, ls="--", alpha=0.8)
                ax.plot(x, numpy(pred.noisy_mean - z * noisy_sd), label=f"{level:.0%} band of y", **style)
                ax.plot(x, numpy(pred.noisy_mean + z * noisy_sd), **style)
        ax.plot(x, numpy(pred.mean), color="C0", lw=2, label="mean")
        ylabel = "y"
    else:
        ylabel = "p(y = 1 | x)" if pred.kind == "bernoulli" else "E[y | x]"
        ax.plot(x, numpy(pred.noisy_mean), color="C0", lw=2, label=ylabel)
    if points is not None:
        X, Y = points
        if pred.kind == "bernoulli":
            ax.scatter(
                numpy(X[:, 0]),
                numpy(Y),
                c=numpy(Y),
                cmap="coolwarm",
                vmin=0,
                vmax=1,
                s=14,
                edgecolors="k",
                linewidths=0.4,
                zorder=3,
                label="data",
            )
        else:
            ax.scatter(numpy(X[:, 0]), numpy(Y), color="k", s=10, zorder=3, label="data")
    _rug(ax, marks)
    if pred.kind == "bernoulli":
        ax.set_ylim(-0.08, 1.08)
    ax.set_xlabel("x")
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize=8)
    return ax


def _draw_2d(
    model: Any,
    ax: Any,
    X: Tensor | None,
    num: int,
    output: int,
    points: tuple[Tensor, Tensor] | None,
    marks: dict[str, Tensor],
) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        pair = plt.subplots(1, 2, figsize=(11.0, 4.4), layout="constrained")[1]
    else:
        pair = list(ax) if isinstance(ax, Sequence) or hasattr(ax, "__len__") else [ax]
        if len(pair) != 2:
            raise ValueError("With 2-D inputs `ax` must be a pair of Axes (mean, standard deviation).")
    if X is None:
        g0, g1 = _span(model, num)
        mesh = torch.stack(torch.meshgrid(g0, g1, indexing="xy"), -1)  # num x num x 2
        inputs = mesh.reshape(-1, 2)
    else:
        inputs = check_inputs(model, X)
    pred = predictive(model, inputs, output)
    first = pred.noisy_mean if pred.kind != "gaussian" else pred.mean
    title = {"gaussian": "predictive mean", "bernoulli": "p(y = 1 | x)", "other": "E[y | x]"}[pred.kind]
    panels = [
        (first, title, "RdBu_r" if pred.kind == "bernoulli" else "viridis"),
        (pred.variance.clamp_min(0).sqrt(), "posterior standard deviation of f", "magma"),
    ]
    for axis, (values, name, cmap) in zip(pair, panels, strict=True):
        if X is None:
            args = (numpy(g0), numpy(g1), numpy(values.reshape(num, num)))
            filled = axis.contourf(*args, levels=20, cmap=cmap)
            if name == "p(y = 1 | x)":
                axis.contour(*args, levels=[0.5], colors="k", linewidths=1.2)
        else:
            args = (numpy(inputs[:, 0]), numpy(inputs[:, 1]), numpy(values))
            filled = axis.tricontourf(*args, levels=20, cmap=cmap)
        axis.figure.colorbar(filled, ax=axis)
        if points is not None:
            P, Y = points
            if pred.kind == "bernoulli":
                style = dict(c=numpy(Y), cmap="RdBu_r", vmin=0, vmax=1, edgecolors="k", s=14)
                axis.scatter(numpy(P[:, 0]), numpy(P[:, 1]), linewidths=0.5, label="data", **style)
            else:
                style = dict(color="w", edgecolors="k", s=12)
                axis.scatter(numpy(P[:, 0]), numpy(P[:, 1]), linewidths=0.5, label="data", **style)
        for i, (label, Z) in enumerate(marks.items()):
            color, marker = LOCATION_STYLES[i % len(LOCATION_STYLES)]
            color = "gold" if color == "k" else color
            axis.scatter(numpy(Z[:, 0]), numpy(Z[:, 1]), marker=marker, color=color, s=40, label=f"{label} ({len(Z)})")
        if X is None:  # the contoured region (a learned inducing input may lie outside it)
            axis.set(xlim=(float(g0[0]), float(g0[-1])), ylim=(float(g1[0]), float(g1[-1])))
        axis.set_title(name)
        axis.set_xlabel("x₁")
        axis.set_ylabel("x₂")
    if points is not None or marks:
        pair[0].legend(loc="lower left", fontsize=8)
    return pair[0].figure


__all__ = ["PADDING", "plot_predictive"]
