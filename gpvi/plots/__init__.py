"""Plots of gpvi models and fits (matplotlib; nothing is shown, every function returns its Axes or Figure).

- `plot_predictive`: the predictive over 1-D inputs (mean, bands of f and of y, data, inducing
  inputs as rug marks) or 2-D inputs (mean and standard deviation as filled contours); a binary
  classifier's p(y = 1 | x).
- `plot_history`: a `FitResult`'s history (ELBO, objective, KL, ...) against step or wall time.
- `plot_parity`: predicted against observed held-out targets, for inputs of any dimension.
- `plot_calibration` / `interval_coverage`: coverage of central predictive intervals (regression).
- `plot_reliability` / `reliability_curve`: the reliability diagram of a binary classifier.

Models are read through their public API only: ``posterior``, ``train_inputs``/``train_targets``
(with the outcome transform undone) and ``plot_locations()``, the protocol by which a model names
its special input locations (gpvi's models: the inducing inputs; families with coreset or memory
points add theirs), label -> `k x d` tensor in input space.
"""

from gpvi.plots.calibration import (
    IntervalCoverage,
    ReliabilityCurve,
    interval_coverage,
    plot_calibration,
    plot_reliability,
    reliability_curve,
)
from gpvi.plots.common import Predictive, locations, predictive
from gpvi.plots.history import plot_history
from gpvi.plots.parity import plot_parity
from gpvi.plots.predictive import plot_predictive

__all__ = [
    "IntervalCoverage",
    "Predictive",
    "ReliabilityCurve",
    "interval_coverage",
    "locations",
    "plot_calibration",
    "plot_history",
    "plot_parity",
    "plot_predictive",
    "plot_reliability",
    "predictive",
    "reliability_curve",
]
