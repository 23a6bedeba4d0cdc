"""gpvi: variational and sequential Gaussian-process inference on PyTorch, built for BoTorch."""

import gpvi._warnings_filter  # noqa: F401  (must precede the gpytorch import)
from gpvi import core, data, features, models, variational
from gpvi.fit import EarlyStopping, FitResult, fit
from gpvi.models import SVGP

__version__ = "0.1.0"

__all__ = ["SVGP", "EarlyStopping", "FitResult", "core", "data", "features", "fit", "models", "variational"]
