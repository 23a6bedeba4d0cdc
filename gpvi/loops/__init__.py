"""Decision loops over gpvi and BoTorch models: ask/tell objects with a `run()` convenience.

- `base`: the ask/tell base (seeding by (seed, iteration), model refresh, checkpoint/restore/replay);
- `bo`: Bayesian optimisation (`BayesOpt`);
- `active`: active learning over a pool or a box (`ActiveLearner`; `active_tools`: its metrics and fantasies);
- `continual`: continual learning over a sequence of tasks (`ContinualLearner`, `ContinualResult`);
- `factories`: how a loop builds, fits and updates its model (from the model registry);
- `streams`: the memory-based dual GP as a BO factory and as a model that learns a stream ("memory-dual").
"""

from gpvi.loops.active import ActiveLearner, ALResult
from gpvi.loops.base import AskTellLoop, ModelHistory, iteration_seed, sobol_design
from gpvi.loops.bo import ACQUISITIONS, BayesOpt, BOResult
from gpvi.loops.continual import ContinualLearner
from gpvi.loops.continual_result import ContinualResult
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
    "ALResult",
    "ActiveLearner",
    "AskTellLoop",
    "BOResult",
    "BayesOpt",
    "BoTorchFactory",
    "CallableFactory",
    "ContinualLearner",
    "ContinualResult",
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
