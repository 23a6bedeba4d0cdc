"""Figures shared by every kind's report: panel grids, one colour per method, PNG output (Agg, no display)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gpvi.studies.store import Run
from gpvi.studies.tables import groups


def figure(n_panels: int, ncols_max: int = 3) -> tuple[Any, list[Any]]:
    """An Agg figure with a grid of `n_panels` axes (at least one); unused cells are hidden."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(n_panels, 1)
    ncols = min(ncols_max, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.5 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def empty_panel(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def method_colors(runs: Sequence[Run]) -> dict[str, str]:
    """One colour per method, the same in every panel."""
    methods = list(dict.fromkeys(r.method for r in runs))
    return {m: f"C{i % 10}" for i, m in enumerate(methods)}


def problem_panels(
    runs: Sequence[Run],
    problems: Sequence[str],
    draw: Callable[[Any, Run, list[Run], str], list[float]],
    *,
    empty: str,
    xlabel: str,
    ylabel: Callable[[str], str],
    integer_x: bool = False,
) -> Any:
    """One panel per problem, one ``draw(ax, problem, runs_of_method, color) -> plotted y values`` call per
    method; panels with nothing plotted say ``empty``, others get labels, a legend and log y when all
    plotted values are positive. Returns the figure."""
    from matplotlib.ticker import MaxNLocator

    colors = method_colors(runs)
    by_group = groups(runs)
    fig, axes = figure(len(problems))
    if not problems:
        empty_panel(axes[0], "no runs yet")
    for ax, problem in zip(axes, problems, strict=False):
        plotted: list[float] = []
        for (p, method), group in by_group.items():
            if p == problem:
                plotted += draw(ax, problem, group, colors[method])
        if not plotted:
            empty_panel(ax, empty)
        else:
            if all(v > 0 for v in plotted):
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            if integer_x:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(ylabel(problem))
            ax.legend(fontsize="small")
        ax.set_title(problem)
    return fig


__all__ = ["empty_panel", "figure", "method_colors", "problem_panels", "save"]
