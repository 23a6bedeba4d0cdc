"""User-facing models: BoTorch `Model`s built from data."""

from gpvi.models import _pathwise  # noqa: F401  (registers pathwise-sampling dispatchers)
from gpvi.models.dual_svgp import DualSVGP
from gpvi.models.priors import singletaskgp_modules, transformed_constraints
from gpvi.models.svgp import SVGP, SVGPModule

__all__ = ["SVGP", "DualSVGP", "SVGPModule", "singletaskgp_modules", "transformed_constraints"]
