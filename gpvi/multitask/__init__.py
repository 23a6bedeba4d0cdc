"""Multi-task GPs with common (clustered) mean processes: Magma and MagmaClust (Leroy et al.).

- `magma`: `MagmaClust` / `Magma`, the model and its variational EM;
- `newtask`: a new task under a fitted prior (cluster probabilities, its own kernel by EM, predictive);
- `mixture`: the mixture predictive `MixturePrediction`;
- `selection`: K by VBIC (`select_num_clusters`);
- `botorch`: `MagmaClustTaskModel`, a new task as a BoTorch model (a mixture posterior), so the
  BO loop can transfer what past tasks taught;
- `plots`: clusters and predictions.
"""

from gpvi.multitask.botorch import MagmaClustTaskModel, MixturePosterior
from gpvi.multitask.magma import HyperPosterior, Magma, MagmaClust
from gpvi.multitask.mixture import MixturePrediction
from gpvi.multitask.newtask import NewTask
from gpvi.multitask.selection import select_num_clusters

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
