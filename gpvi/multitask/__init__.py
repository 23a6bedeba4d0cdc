"""Multi-task GPs with common (clustered) mean processes: Magma and MagmaClust (Leroy et al.).

`MagmaClust` / `Magma` learn cluster mean processes from many related tasks (variational EM);
`MagmaClustTaskModel` serves a new task under that prior as a BoTorch model (a mixture posterior),
so the BO loop can transfer what past tasks taught; `plots` draws clusters and predictions.
"""

from gpvi.multitask.botorch import MagmaClustTaskModel, MixturePosterior
from gpvi.multitask.magma import HyperPosterior, Magma, MagmaClust, MixturePrediction, NewTask, select_num_clusters

__all__ = [
    "HyperPosterior",
    "Magma",
    "MagmaClust",
    "MagmaClustTaskModel",
    "MixturePosterior",
    "MixturePrediction",
    "NewTask",
    "select_num_clusters",
]
