"""One registry of model names, read by the study spec, the BO factories and the regression studies.

    register_model(ModelEntry("my-gp", "My GP", MyGP, trainer="gpvi", defaults={"bo": {...}}))
    get_model("svgp").constructor(train_X, train_Y, num_inducing=64)
    model_names("bo")                                  # the names a BO study may use

An entry says how to build a model from data and how it is trained:

- ``trainer="gpvi"``: a gpvi model, trained by `gpvi.fit` with its own default recipe;
- ``trainer="botorch"``: a BoTorch model trained by `botorch.fit.fit_gpytorch_mll` (the peers);
- ``trainer="own"``: an object with its own ``fit(**options)`` (the gpytorch baseline).

``defaults`` holds default options per use ("bo": the loops' factory options; "regression": the
constructor and fit options of the regression study), so a family registered here is available to
`BayesOpt`, to BO studies and to regression studies without editing them. gpvi's own models
register themselves in their modules; the peers from other libraries are registered below, by
"module:attribute" path, imported when first built.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TRAINERS = ("gpvi", "botorch", "own")


@dataclass(frozen=True)
class ModelEntry:
    """A model known by name (see the module docstring).

    Attributes:
        name: The name in study files and in ``BayesOpt(model_factory=...)``.
        label: A display name.
        constructor: ``(train_X, train_Y, **options) -> model``, or a "module:attribute" path to it.
        trainer: "gpvi", "botorch" or "own".
        defaults: Default options per use ("bo", "regression").
        uses: The uses the model serves.
    """

    name: str
    label: str
    constructor: Callable[..., Any] | str
    trainer: str = "gpvi"
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    uses: tuple[str, ...] = ("bo", "regression")

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ValueError(f"`trainer` must be one of {TRAINERS}, got {self.trainer!r}.")

    def build(self, train_X: Any, train_Y: Any, **options: Any) -> Any:
        """The constructor called on data (a path is imported first)."""
        return self.resolve()(train_X, train_Y, **options)

    def resolve(self) -> Callable[..., Any]:
        """The constructor itself (importing a "module:attribute" path)."""
        return load_object(self.constructor) if isinstance(self.constructor, str) else self.constructor

    def constructor_parameters(self) -> tuple[set[str], bool]:
        """(the keyword parameters the constructor takes, whether it takes any others too).

        A class is read along its MRO while its ``__init__`` passes ``**options`` on (DualSVGP's reach
        SVGP's), so a caller can send each option to the constructor or to the training.
        """
        constructor = self.resolve()
        signatures = (
            [inspect.signature(c.__init__) for c in constructor.__mro__ if "__init__" in c.__dict__]
            if isinstance(constructor, type)
            else [inspect.signature(constructor)]
        )
        names: set[str] = set()
        for signature in signatures:
            params = signature.parameters.values()
            names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                return names - {"self"}, False
        return names - {"self"}, True

    def options_for(self, use: str) -> dict[str, Any]:
        """A fresh copy of the default options for ``use``."""
        return dict(self.defaults.get(use, {}))


#: The registered models by name (`register_model` adds one; `get_model` reads one).
MODELS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add ``entry`` under its name (a name is registered once)."""
    if entry.name in MODELS and MODELS[entry.name] != entry:
        raise ValueError(f"A model named {entry.name!r} is already registered.")
    MODELS[entry.name] = entry
    return entry


def get_model(name: str) -> ModelEntry:
    """The entry of ``name``; a `ValueError` lists the known names."""
    _load_gpvi_models()
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}: use one of {sorted(MODELS)} or a 'module:callable' path.")
    return MODELS[name]


def model_names(use: str | None = None) -> list[str]:
    """The registered names (serving ``use``, when given), sorted."""
    _load_gpvi_models()
    return sorted(n for n, e in MODELS.items() if use is None or use in e.uses)


def load_object(path: str) -> Any:
    """Import ``"package.module:attribute"``, with a clear error when it does not exist."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"Cannot import module {module_name!r} of {path!r}: {err}") from err
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as err:
        raise ValueError(f"{module_name!r} has no attribute {attr!r} (from {path!r}).") from err
    return obj


def _load_gpvi_models() -> None:
    """gpvi's own models register themselves when `gpvi.models` is imported."""
    importlib.import_module("gpvi.models")


def exact_gp(train_X: Any, train_Y: Any, **options: Any) -> Any:
    """BoTorch's `SingleTaskGP` with its inputs normalised by `Normalize(d)` (the regression study's exact GP)."""
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.input import Normalize

    return SingleTaskGP(train_X, train_Y, input_transform=Normalize(train_X.shape[-1]), **options)


# -- peers from other libraries -----------------------------------------------------------------------
register_model(
    ModelEntry("singletaskgp", "BoTorch SingleTaskGP", "botorch.models:SingleTaskGP", "botorch", uses=("bo",))
)
register_model(
    ModelEntry(
        "exact",
        "BoTorch SingleTaskGP (exact; subset of data)",
        exact_gp,
        "botorch",
        defaults={"regression": {"max_n": 3000}},
        uses=("regression",),
    )
)
register_model(
    ModelEntry(
        "gpytorch-svgp",
        "gpytorch SVGP (Adam)",
        "gpvi.baselines:GPyTorchSVGPModel",
        "own",
        defaults={
            "regression": {"num_inducing": 256, "inducing": "kmeans", "max_steps": 2000, "batch_size": 1024, "lr": 0.01}
        },
        uses=("regression",),
    )
)

__all__ = ["MODELS", "ModelEntry", "exact_gp", "get_model", "load_object", "model_names", "register_model"]
