"""Inducing features: each gives Kuu, Kuf and E[u]."""

from gpvi.features.base import InducingFeatures
from gpvi.features.points import InducingPoints

__all__ = ["InducingFeatures", "InducingPoints"]
