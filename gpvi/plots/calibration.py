"""Calibration on held-out data: the coverage of central predictive intervals (regression) and the
reliability diagram (binary classifiers), with the numbers in plain functions.

    coverage(p)  = (1/n) Σ_i 1[ |y_i − μ_i| ≤ z_p σ_i ],   z_p = Φ⁻¹((1 + p) / 2)
    reliability  : per bin b of predicted probabilities, (mean p_i, mean y_i, n_b) over i in b;
                   ECE = Σ_b (n_b / n) |mean y − mean p|

A calibrated Gaussian predictive covers a fraction p of the data with its central p-interval, up to
the binomial sampling error √(p (1 − p) / n) (drawn as a band around the diagonal); a calibrated
classifier's observed frequency equals its mean predicted probability in every bin.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from gpvi.plots.common import axes, held_out, numpy, predictive

#: The default nominal levels of `interval_coverage`: 0.05, 0.10, ..., 0.95.
LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))


class IntervalCoverage(NamedTuple):
    """Nominal and empirical coverage of central predictive intervals.

    Attributes:
        nominal: The levels p, `L`.
        empirical: The fraction of targets inside each central p-interval, `L`.
        num_points: n, the number of targets (the binomial standard error is √(p (1 − p) / n)).
    """

    nominal: Tensor
    empirical: Tensor
    num_points: int


class ReliabilityCurve(NamedTuple):
    """A reliability diagram's numbers, per bin of predicted probability (NaN in empty bins).

    Attributes:
        mean_predicted: The mean predicted probability p(y = 1) in each bin, `B`.
        observed: The fraction of labels 1 in each bin, `B`.
        counts: The number of predictions in each bin, `B` (int64).
        edges: The bin edges, `B + 1`, from 0 to 1 (a bin holds [e_b, e_{b+1}); the last also 1).
        ece: The expected calibration error Σ_b (n_b / n) |observed − mean predicted| (a scalar).
    """

    mean_predicted: Tensor
    observed: Tensor
    counts: Tensor
    edges: Tensor
    ece: Tensor


def _flat(name: str, t: Any, n: int | None = None) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"`{name}` must be a tensor, got {type(t).__name__}.")
    if t.dim() == 2 and t.shape[-1] == 1:
        t = t[:, 0]
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"`{name}` must be a non-empty `n` (or `n x 1`) tensor, got shape {tuple(t.shape)}.")
    if n is not None and t.shape[0] != n:
        raise ValueError(f"`{name}` must have {n} entries (as the first argument), got {t.shape[0]}.")
    if not torch.isfinite(t).all():
        raise ValueError(f"`{name}` holds non-finite values.")
    return t.detach().to(torch.float64)


def interval_coverage(mean: Tensor, variance: Tensor, Y: Tensor, levels: Any = LEVELS) -> IntervalCoverage:
    """The empirical coverage of central Gaussian predictive intervals (module docstring).

    Args:
        mean: Predictive means μ, `n` or `n x 1`.
        variance: Predictive variances σ² (of y: with the observation noise), `n` or `n x 1`, >= 0.
        Y: Targets, `n` or `n x 1`.
        levels: Nominal levels p in (0, 1) (default 0.05, 0.10, ..., 0.95).

    Returns:
        `IntervalCoverage` (nominal levels, empirical coverage, n).
    """
    mean = _flat("mean", mean)
    n = mean.shape[0]
    variance, Y = _flat("variance", variance, n), _flat("Y", Y, n)
    if (variance < 0).any():
        raise ValueError("`variance` must be non-negative.")
    p = torch.as_tensor(levels, dtype=torch.float64).reshape(-1)
    if p.numel() == 0 or ((p <= 0) | (p >= 1)).any():
        raise ValueError(f"`levels` must be probabilities in (0, 1), got {p.tolist()}.")
    z = torch.special.ndtri((1 + p) / 2)  # L
    inside = (Y - mean).abs()[:, None] <= z[None, :] * variance.sqrt()[:, None]  # n x L
    return IntervalCoverage(p, inside.to(torch.float64).mean(0), n)


def reliability_curve(probs: Tensor, labels: Tensor, bins: int = 10) -> ReliabilityCurve:
    """Bin predicted probabilities into ``bins`` equal bins of [0, 1] and compare with the labels.

    Args:
        probs: Predicted probabilities p(y = 1), `n` or `n x 1`, in [0, 1].
        labels: Labels in {0, 1}, `n` or `n x 1`.
        bins: The number of equal-width bins B >= 1.

    Returns:
        `ReliabilityCurve` (mean predicted probability, observed frequency, counts, edges, ECE).
    """
    probs = _flat("probs", probs)
    labels = _flat("labels", labels, probs.shape[0])
    if ((probs < 0) | (probs > 1)).any():
        raise ValueError("`probs` must lie in [0, 1].")
    if ((labels != 0) & (labels != 1)).any():
        raise ValueError("`labels` must be 0 or 1.")
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"`bins` must be a positive integer, got {bins!r}.")
    index = (probs * bins).floor().long().clamp(0, bins - 1)
    counts = torch.bincount(index, minlength=bins)
    sum_p = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, probs)
    sum_y = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, labels)
    nonempty = counts > 0
    nan = torch.full((bins,), float("nan"), dtype=torch.float64)
    mean_p = torch.where(nonempty, sum_p / counts.clamp_min(1), nan)
    observed = torch.where(nonempty, sum_y / counts.clamp_min(1), nan)
    ece = ((sum_y - sum_p).abs()).sum() / probs.shape[0]  # Σ_b n_b |ȳ_b − p̄_b| / n
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    return ReliabilityCurve(mean_p, observed, counts, edges, ece)


def plot_calibration(model: Any, X: Tensor, Y: Tensor, *, ax: Any = None, levels: Any = LEVELS, output: int = 0) -> Any:
    """Draw the coverage of a regression model's central predictive intervals on held-out data.

    The predictive of y (``model.posterior(X, observation_noise=True)``, in the original units)
    must be Gaussian. Drawn: the empirical against the nominal coverage (`interval_coverage`), the
    diagonal, and the band of ±2 binomial standard errors around it that sampling alone explains.

    Args:
        model: A fitted model with a Gaussian likelihood.
        X: Held-out inputs, `n x d`.
        Y: Held-out targets, `n x m` (or `n`), in the original units.
        ax: Axes to draw in (default: a new figure).
        levels: Nominal levels in (0, 1) (default 0.05, ..., 0.95).
        output: The output (column of ``Y``) to check.

    Returns:
        The Axes.
    """
    X, Y = held_out(model, X, Y, output)
    pred = predictive(model, X, output)
    if pred.kind != "gaussian":
        raise ValueError("plot_calibration needs a Gaussian predictive; for a binary classifier use plot_reliability.")
    cov = interval_coverage(pred.noisy_mean, pred.noisy_variance, Y, levels)
    ax = axes(ax, (4.5, 4.5))
    line = torch.linspace(0, 1, 101, dtype=torch.float64)
    se = (line * (1 - line) / cov.num_points).sqrt()
    ax.fill_between(numpy(line), numpy(line - 2 * se), numpy(line + 2 * se), color="0.85", lw=0, label="±2 s.e.")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    ax.plot(numpy(cov.nominal), numpy(cov.empirical), "o-", color="C0", ms=4, label=f"model (n = {cov.num_points})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal coverage of central interval", ylabel="empirical coverage")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_reliability(model: Any, X: Tensor, Y: Tensor, bins: int = 10, *, ax: Any = None, output: int = 0) -> Any:
    """Draw the reliability diagram of a binary classifier on held-out data.

    The predicted probabilities are p(y = 1 | x) = E_q(f)[p(y = 1 | f)] from
    ``model.posterior(X, observation_noise=True)``. Drawn: the observed frequency of label 1 against
    the mean predicted probability in each non-empty bin (`reliability_curve`), the diagonal, and
    the bin counts as bars on a second y-axis; the title gives the ECE.

    Args:
        model: A fitted binary classifier (Bernoulli likelihood).
        X: Held-out inputs, `n x d`.
        Y: Held-out labels in {0, 1}, `n x 1` (or `n`).
        bins: The number of equal-width probability bins.
        ax: Axes to draw in (default: a new figure).
        output: The output to check.

    Returns:
        The Axes of the curve (the counts' axis is its twin).
    """
    X, Y = held_out(model, X, Y, output)
    pred = predictive(model, X, output)
    if pred.kind != "bernoulli":
        raise ValueError("plot_reliability needs a binary classifier (Bernoulli predictive); use plot_calibration.")
    curve = reliability_curve(pred.noisy_mean, Y, bins)
    ax = axes(ax, (4.5, 4.5))
    width = 1.0 / bins
    twin = ax.twinx()
    twin.bar(numpy(curve.edges[:-1]), numpy(curve.counts), width=width, align="edge", color="0.8", edgecolor="0.6")
    twin.set_ylim(0, 3 * max(1, int(curve.counts.max())))
    twin.set_ylabel("predictions per bin")
    ax.set_zorder(twin.get_zorder() + 1)  # the curve above the bars
    ax.patch.set_visible(False)
    keep = curve.counts > 0
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    ax.plot(numpy(curve.mean_predicted[keep]), numpy(curve.observed[keep]), "o-", color="C0", ms=4, label="model")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted p(y = 1)", ylabel="observed frequency of y = 1")
    ax.set_title(f"reliability (ECE {float(curve.ece):.3f}, n = {Y.shape[0]})")
    ax.legend(loc="upper left", fontsize=8)
    return ax


__all__ = [
    "LEVELS",
    "IntervalCoverage",
    "ReliabilityCurve",
    "interval_coverage",
    "plot_calibration",
    "plot_reliability",
    "reliability_curve",
]
