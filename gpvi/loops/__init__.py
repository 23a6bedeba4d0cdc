"""Decision loops over gpvi and BoTorch models: ask/tell objects with a `run()` convenience."""

from gpvi.loops.bo import ACQUISITIONS, BayesOpt, BOResult
from gpvi.loops.factories import CallableFactory, ModelFactory, SingleTaskGPFactory, SVGPFactory, make_factory

__all__ = [
    "ACQUISITIONS",
    "BOResult",
    "BayesOpt",
    "CallableFactory",
    "ModelFactory",
    "SVGPFactory",
    "SingleTaskGPFactory",
    "make_factory",
]
