"""Plots for MagmaClust (1-D inputs): the data coloured by cluster with the cluster mean processes,
and a new task's mixture prediction (mean, 95 % mixture quantiles or a density heatmap, cluster-first samples).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gpvi.multitask.magma import MagmaClust
from gpvi.multitask.mixture import MixturePrediction


def _axes(ax: Any):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4))[1]


def _dense_grid(model: MagmaClust, num: int = 200) -> Tensor:
    grid = model.data.grid
    if grid.shape[-1] != 1:
        raise ValueError("MagmaClust plots need 1-D inputs.")
    lo, hi = grid.min(), grid.max()
    return torch.linspace(float(lo), float(hi), num, dtype=grid.dtype, device=grid.device).unsqueeze(-1)


def plot_clusters(model: MagmaClust, *, ax: Any = None, band: float = 2.0, max_tasks: int | None = None) -> Any:
    """Training tasks coloured by their MAP cluster, and each cluster's mean process m̂_k ± ``band`` sd."""
    import matplotlib.pyplot as plt

    ax = _axes(ax)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = model.labels
    data = model.data
    for i in range(data.num_tasks if max_tasks is None else min(max_tasks, data.num_tasks)):
        n = int(data.mask[i].sum())
        c = colors[int(labels[i]) % len(colors)]
        ax.plot(
            data.X[i, :n, 0].detach().cpu().numpy(),
            data.y[i, :n].detach().cpu().numpy(),
            color=c,
            alpha=0.25,
            lw=0.8,
            marker=".",
            ms=3,
        )
    grid = _dense_grid(model)
    mean, cov = model.extend(grid)
    sd = cov.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()
    for k in range(model.num_clusters):
        c = colors[k % len(colors)]
        x = grid[:, 0].detach().cpu().numpy()
        share = float(model.mixture_weights[k])
        ax.plot(x, mean[k].detach().cpu().numpy(), color=c, lw=2.5, label=f"cluster {k} (π = {share:.2f})")
        ax.fill_between(
            x,
            (mean[k] - band * sd[k]).detach().cpu().numpy(),
            (mean[k] + band * sd[k]).detach().cpu().numpy(),
            color=c,
            alpha=0.2,
        )
    ax.set_xlabel("input")
    ax.set_ylabel("output")
    ax.legend(loc="best", fontsize=8)
    return ax


def plot_prediction(
    pred: MixturePrediction,
    X_pred: Tensor,
    X_obs: Tensor | None = None,
    y_obs: Tensor | None = None,
    *,
    ax: Any = None,
    heatmap: bool = False,
    num_samples: int = 0,
    truth: tuple[Tensor, Tensor] | None = None,
) -> Any:
    """A new task's mixture predictive: mean and 95 % mixture quantiles (or the density as a heatmap).

    The mixture can be multimodal, so the band is made of the mixture's own 2.5 % and 97.5 %
    quantiles, not ±2 sd; ``heatmap=True`` shows the predictive density on a y-grid instead.
    """
    import matplotlib.pyplot as plt

    ax = _axes(ax)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x = X_pred.reshape(-1).detach().cpu().numpy()
    if heatmap:
        lo, hi = pred.quantile(0.005), pred.quantile(0.995)
        ys = torch.linspace(float(lo.min()), float(hi.max()), 200, dtype=pred.means.dtype)
        sd = (pred.covs.diagonal(dim1=-2, dim2=-1).clamp_min(0) + pred.noise).sqrt()  # (K, P)
        z = (ys.reshape(-1, 1, 1) - pred.means) / sd
        dens = (pred.weights.reshape(1, -1, 1) * torch.exp(-0.5 * z**2) / (sd * (2 * torch.pi) ** 0.5)).sum(1)
        ax.pcolormesh(x, ys.detach().cpu().numpy(), dens.detach().cpu().numpy(), shading="auto", cmap="Blues")
    else:
        lo, hi = pred.quantile(0.025).detach().cpu().numpy(), pred.quantile(0.975).detach().cpu().numpy()
        ax.fill_between(x, lo, hi, color="grey", alpha=0.25, label="95 % interval")
    ax.plot(x, pred.mean.detach().cpu().numpy(), lw=2, color="k", label="mixture mean")
    for k in range(pred.means.shape[0]):  # cluster colours as in `plot_clusters`
        if float(pred.weights[k]) > 0.05:
            label = f"cluster {k} (τ* = {float(pred.weights[k]):.2f})"
            ax.plot(
                x, pred.means[k].detach().cpu().numpy(), ls="--", lw=1.2, color=colors[k % len(colors)], label=label
            )
    if num_samples:
        for draw in pred.sample(num_samples):
            ax.plot(x, draw.detach().cpu().numpy(), color="grey", lw=0.5, alpha=0.5)
    if truth is not None:
        ax.plot(
            truth[0].reshape(-1).detach().cpu().numpy(),
            truth[1].detach().cpu().numpy(),
            "x",
            color="crimson",
            ms=6,
            label="held out",
        )
    if X_obs is not None and y_obs is not None:
        ax.plot(
            X_obs.reshape(-1).detach().cpu().numpy(),
            y_obs.reshape(-1).detach().cpu().numpy(),
            "o",
            color="k",
            ms=4,
            label="observed",
        )
    ax.legend(loc="best", fontsize=8)
    return ax


__all__ = ["plot_clusters", "plot_prediction"]
