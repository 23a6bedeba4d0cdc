"""gpvi: variational and sequential Gaussian-process inference on PyTorch, built for BoTorch."""

import gpvi._warnings_filter  # noqa: F401  (must precede the gpytorch import)
from gpvi import acquisition, core, data, features, loops, metrics, models, multitask, progress, sequential, variational
from gpvi.fit import EarlyStopping, FitResult, fit
from gpvi.loops import BayesOpt
from gpvi.models import SVGP, DualSVGP

__version__ = "0.1.0"

__all__ = [
    "SVGP",
    "BayesOpt",
    "DualSVGP",
    "EarlyStopping",
    "FitResult",
    "acquisition",
    "core",
    "data",
    "features",
    "fit",
    "loops",
    "metrics",
    "models",
    "multitask",
    "progress",
    "sequential",
    "variational",
]
