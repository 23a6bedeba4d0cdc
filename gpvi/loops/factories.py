"""Model factories for the loops: build a BoTorch model from data, fit it, warm-start the next fit.

A loop never fits a model itself: it asks its factory. Every factory builds its model with
BoTorch's transforms, `Normalize(d, bounds)` on the inputs and `Standardize(1)` on the outputs,
so the models see the unit cube and standardised targets whatever the problem's scale.

- `SingleTaskGPFactory`: BoTorch's exact GP, fitted by `fit_gpytorch_mll` (the baseline; cold
  start, exactly BoTorch's default behaviour).
- `SVGPFactory`: gpvi's SVGP with SingleTaskGP's own kernel and priors, fitted by `gpvi.fit` with
  a step cap (q in closed form, L-BFGS on the collapsed bound; never BoTorch's scipy fit of an
  SVGP), from the prior's initial values like SingleTaskGP (or warm-started, ``warm_start=True``);
  between full refits `update()` absorbs new points with a short warm refit.
- `DualSVGPFactory`: gpvi's `DualSVGP` (closed-form sites for Gaussian data, L-BFGS on the
  collapsed bound), started likewise.
- `MagmaClustFactory`: a new task under a MagmaClust prior learned from related past tasks.
- `CallableFactory`: any ``fn(train_X, train_Y) -> fitted Model`` (refit from scratch each time).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from botorch.models.model import Model
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from torch import Tensor

WarmState = dict[str, Tensor] | None


class ModelFactory:
    """Builds and fits a model from data (override `fit`; optionally `warm_state` and `update`)."""

    name = "model"

    def fit(self, train_X: Tensor, train_Y: Tensor, bounds: Tensor, warm: WarmState = None) -> Model:
        """A fitted model on `n x d` inputs and `n x 1` outputs (maximisation sign)."""
        raise NotImplementedError

    def warm_state(self, model: Model) -> WarmState:
        """What the next `fit` may start from (None: nothing; the next fit starts cold)."""
        return None

    def update(self, model: Model, X_new: Tensor, Y_new: Tensor) -> Model | None:
        """Absorb new points without a full refit; None when the factory cannot (the loop refits)."""
        return None


class SingleTaskGPFactory(ModelFactory):
    """BoTorch's `SingleTaskGP`, fitted with `fit_gpytorch_mll` (L-BFGS-B on the exact marginal likelihood)."""

    name = "singletaskgp"

    def __init__(self, **model_options: Any) -> None:
        self.model_options = model_options

    def fit(self, train_X: Tensor, train_Y: Tensor, bounds: Tensor, warm: WarmState = None) -> Model:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        model = SingleTaskGP(
            train_X,
            train_Y,
            input_transform=Normalize(train_X.shape[-1], bounds=bounds),
            outcome_transform=Standardize(1),
            **self.model_options,
        )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model


class SVGPFactory(ModelFactory):
    """gpvi's `SVGP` with a step-capped fit: by default SingleTaskGP's model while n ≤ M, sparse beyond.

    Args:
        num_inducing: M (capped at n, so small data sets get Z = X).
        max_steps: Steps of the first (cold) fit (L-BFGS evaluations for ``fit="collapsed"``).
        warm_steps: Steps of a fit warm-started from the previous model's hyperparameters.
        update_steps: Steps of `update()` between full refits.
        lr: Adam's learning rate for the hyperparameters (``fit="ngd"``).
        inducing: Initial inducing inputs: "kmeans" or "greedy".
        kernel: "singletaskgp" (default): BoTorch SingleTaskGP's own kernel and likelihood (RBF with
            the dimension-scaled lengthscale prior, log-normal noise prior; `gpvi.models.priors`), so
            that a comparison with SingleTaskGP isolates the inference; "matern": gpvi's SVGP default
            (Matérn-5/2 ARD with an outputscale, no priors).
        fit: "collapsed" (default): q exact in closed form and L-BFGS on the collapsed bound plus the
            log prior (with Z = X this is SingleTaskGP's MAP fit); "ngd": natural-gradient steps on q
            plus Adam.
        warm_start: Start each full refit from the previous model's hyperparameters (capped at
            ``warm_steps``) instead of from the kernel's initial values (``max_steps``). Default: on
            for "ngd"; for "collapsed" off while n ≤ M (Z = X: SingleTaskGP's model, started like
            SingleTaskGP) and on beyond (where a cold L-BFGS over Z costs as much as an exact fit).
            Cold starts matter on noisy problems: a chain of warm starts drifts into the
            higher-posterior but degenerate mode of lengthscales at their 0.025 bound and
            near-zero noise, where qLogEI is flat (Ackley-10 with noise, n = 54: MAP −103.5 there
            against −105.9 in SingleTaskGP's mode).
        learn_inducing: Learn the inducing inputs. Default: only when n > M; with M ≥ n they stay at
            Z = X, where the collapsed bound is the exact marginal likelihood (its maximum over Z).
    """

    name = "svgp"
    optimizer = "ngd"

    def __init__(
        self,
        num_inducing: int = 128,
        max_steps: int = 300,
        warm_steps: int = 100,
        update_steps: int = 20,
        lr: float = 0.05,
        inducing: str = "kmeans",
        kernel: str = "singletaskgp",
        fit: str = "collapsed",
        warm_start: bool | None = None,
        learn_inducing: bool | None = None,
    ) -> None:
        if kernel not in ("singletaskgp", "matern"):
            raise ValueError(f"`kernel` must be 'singletaskgp' or 'matern', got {kernel!r}.")
        if fit not in ("collapsed", "ngd"):
            raise ValueError(f"`fit` must be 'collapsed' or 'ngd', got {fit!r}.")
        self.num_inducing = num_inducing
        self.max_steps = max_steps
        self.warm_steps = warm_steps
        self.update_steps = update_steps
        self.lr = lr
        self.inducing = inducing
        self.kernel = kernel
        self.objective = "collapsed" if fit == "collapsed" else None
        self.warm_start = True if warm_start is None and fit == "ngd" else warm_start
        self.learn_inducing = learn_inducing

    def _model_class(self) -> type:
        from gpvi.models import SVGP

        return SVGP

    def _modules(self, d: int, dtype) -> dict[str, Any]:
        if self.kernel == "matern":
            return {}
        from gpvi.models.priors import singletaskgp_modules

        kernel, likelihood = singletaskgp_modules(d, dtype=dtype)
        return {"kernel": kernel, "likelihood": likelihood}

    def fit(self, train_X: Tensor, train_Y: Tensor, bounds: Tensor, warm: WarmState = None) -> Model:
        from gpvi.fit import fit

        model = self._model_class()(
            train_X,
            train_Y,
            num_inducing=min(self.num_inducing, train_X.shape[-2]),
            inducing=self.inducing,
            learn_inducing=self._learns_inducing(train_X.shape[-2]),
            input_transform=Normalize(train_X.shape[-1], bounds=bounds),
            outcome_transform=Standardize(1),
            **self._modules(train_X.shape[-1], train_X.dtype),
        )
        warm = warm if self._uses_warm_start(train_X.shape[-2]) else None
        if warm:
            model.load_state_dict(warm, strict=False)
        steps = self.warm_steps if warm else self.max_steps
        fit(model, max_steps=steps, **self._fit_options())
        return model

    def _uses_warm_start(self, n: int) -> bool:
        return self.warm_start if self.warm_start is not None else n > self.num_inducing

    def _learns_inducing(self, n: int) -> bool:
        return n > self.num_inducing if self.learn_inducing is None else self.learn_inducing

    def _fit_options(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "objective": self.objective, "lr": self.lr, "progress": False}

    def warm_state(self, model: Model) -> WarmState:
        """The kernel, mean and likelihood hyperparameters (not q, Z or the transforms' statistics);
        None with ``warm_start=False``."""
        if self.warm_start is False:
            return None
        keep = ("model.mean_module.", "model.covar_module.", "likelihood.")
        return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(keep)}

    def update(self, model: Model, X_new: Tensor, Y_new: Tensor) -> Model | None:
        return model.update(X_new, Y_new, max_steps=self.update_steps, **self._fit_options())


class DualSVGPFactory(SVGPFactory):
    """gpvi's `DualSVGP` (sites + CVI), fitted by its default recipe with a step cap.

    With the loops' Gaussian likelihood that recipe is closed form: L-BFGS on the collapsed bound
    (each step one evaluation) and exact sites; `update()` appends the new points, takes
    ``update_steps`` warm L-BFGS evaluations and rewrites the sites exactly. Same arguments as
    `SVGPFactory` (``lr`` is used only by non-Gaussian recipes).
    """

    name = "dual-svgp"
    optimizer = "cvi"

    def __init__(
        self,
        num_inducing: int = 128,
        max_steps: int = 100,
        warm_steps: int = 40,
        update_steps: int = 10,
        lr: float = 0.05,
        inducing: str = "kmeans",
        kernel: str = "singletaskgp",
        warm_start: bool | None = None,
    ) -> None:
        super().__init__(
            num_inducing, max_steps, warm_steps, update_steps, lr, inducing, kernel, "collapsed", warm_start
        )
        self.objective = None  # the model's default recipe (collapsed for Gaussian data)

    def _model_class(self) -> type:
        from gpvi.models import DualSVGP

        return DualSVGP


class MagmaClustFactory(ModelFactory):
    """A new task under a fitted `gpvi.multitask.MagmaClust` prior (transfer from related tasks).

    The prior must be fitted on past tasks in the problem's own input space and in the loop's
    maximisation sign (negate past outputs when the loop minimises). Nothing is refitted per
    iteration except the new task's cluster probabilities (and its kernel, when task-specific).
    """

    name = "magmaclust"

    def __init__(self, prior: Any) -> None:
        self.prior = prior

    def fit(self, train_X: Tensor, train_Y: Tensor, bounds: Tensor, warm: WarmState = None) -> Model:
        from gpvi.multitask import MagmaClustTaskModel

        return MagmaClustTaskModel(self.prior, train_X, train_Y)


class CallableFactory(ModelFactory):
    """Wraps ``fn(train_X, train_Y) -> fitted Model`` (inputs in the problem's space, `n x 1` outputs)."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Model], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "callable")

    def fit(self, train_X: Tensor, train_Y: Tensor, bounds: Tensor, warm: WarmState = None) -> Model:
        return self.fn(train_X, train_Y)


FACTORIES: dict[str, type[ModelFactory]] = {
    "singletaskgp": SingleTaskGPFactory,
    "svgp": SVGPFactory,
    "dual-svgp": DualSVGPFactory,
}


def make_factory(spec: str | ModelFactory | Callable, **options: Any) -> ModelFactory:
    """A factory from a name ("singletaskgp", "svgp"), a "module:attr" path, a factory or a callable."""
    if isinstance(spec, ModelFactory):
        if options:
            raise TypeError("Options go to the factory's constructor when passing a ModelFactory instance.")
        return spec
    if isinstance(spec, str):
        if spec.lower() in FACTORIES:
            return FACTORIES[spec.lower()](**options)
        if ":" in spec:
            obj = load_object(spec)
            if isinstance(obj, type) and issubclass(obj, ModelFactory):
                return obj(**options)
            return make_factory(obj, **options)
        raise ValueError(f"Unknown model {spec!r}: use one of {sorted(FACTORIES)} or a 'module:callable' path.")
    if callable(spec):
        if options:
            return CallableFactory(lambda X, Y: spec(X, Y, **options), getattr(spec, "__name__", None))
        return CallableFactory(spec)
    raise TypeError(f"`model_factory` must be a name, a ModelFactory or a callable, got {type(spec).__name__}.")


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


__all__ = [
    "CallableFactory",
    "ModelFactory",
    "SVGPFactory",
    "DualSVGPFactory",
    "MagmaClustFactory",
    "SingleTaskGPFactory",
    "load_object",
    "make_factory",
]
