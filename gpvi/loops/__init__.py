"""Decision loops over gpvi and BoTorch models: ask/tell objects with a `run()` convenience.

- `base`: the ask/tell base (seeding by (seed, iteration), model refresh, checkpoint/restore/replay);
- `bo`: Bayesian optimisation (`BayesOpt`);
- `factories`: how a loop builds, fits and updates its model (from the model registry);
- `streams`: the memory-based dual GP as a BO factory and as a model that learns a stream ("memory-dual").
"""

from gpvi.loops.base import AskTellLoop, ModelHistory, iteration_seed, sobol_design
from gpvi.loops.bo import ACQUISITIONS, BayesOpt, BOResult
from gpvi.loops.factories import (
    BoTorchFactory,
    CallableFactory,
    DualSVGPFactory,
    GPVIFactory,
    MagmaClustFactory,
    ModelFactory,
    SingleTaskGPFactory,
    SVGPFactory,
    make_factory,
)
from gpvi.loops.streams import MemoryDualFactory, StreamedDualSVGP

__all__ = [
    "ACQUISITIONS",
    "AskTellLoop",
    "BOResult",
    "BayesOpt",
    "BoTorchFactory",
    "CallableFactory",
    "DualSVGPFactory",
    "GPVIFactory",
    "MagmaClustFactory",
    "MemoryDualFactory",
    "ModelFactory",
    "ModelHistory",
    "SVGPFactory",
    "SingleTaskGPFactory",
    "StreamedDualSVGP",
    "iteration_seed",
    "make_factory",
    "sobol_design",
]
