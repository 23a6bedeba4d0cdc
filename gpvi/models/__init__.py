"""User-facing models: BoTorch `Model`s built from data, and the registry of model names."""

from gpvi.models import pathwise  # noqa: F401  (registers pathwise-sampling dispatchers)
from gpvi.models.base import VariationalGPModel, VariationalGPModule
from gpvi.models.data import TrainingData, prepare_training_data
from gpvi.models.dual_svgp import DualSVGP
from gpvi.models.priors import singletaskgp_modules, transformed_constraints
from gpvi.models.registry import MODELS, ModelEntry, get_model, model_names, register_model
from gpvi.models.streaming import StreamState, UpdateSettings
from gpvi.models.svgp import SVGP

__all__ = [
    "MODELS",
    "SVGP",
    "DualSVGP",
    "ModelEntry",
    "StreamState",
    "TrainingData",
    "UpdateSettings",
    "VariationalGPModel",
    "VariationalGPModule",
    "get_model",
    "model_names",
    "prepare_training_data",
    "register_model",
    "singletaskgp_modules",
    "transformed_constraints",
]
