"""Model factories for the loops: build a BoTorch model from data, fit it, warm-start the next fit.

A loop never fits a model itself: it asks its factory. Every factory builds its model with
BoTorch's transforms, `Normalize(d, bounds)` on the inputs and `Standardize(1)` on the outputs,
so the models see the unit cube and standardised targets whatever the problem's scale. A gpvi
factory may instead build a classifier (``likelihood="bernoulli"`` or ``"softmax:C"``): its targets
are labels, read as given (no outcome transform).

- `BoTorchFactory` (`SingleTaskGPFactory`): a BoTorch model of the registry fitted by
  `fit_gpytorch_mll` (the baseline; cold start, exactly BoTorch's default behaviour).
- `GPVIFactory` (`SVGPFactory`, `DualSVGPFactory`): any gpvi model of the registry with
  SingleTaskGP's own kernel and priors, fitted by `gpvi.fit` with a step cap (for SVGP: q in closed
  form, L-BFGS on the collapsed bound; never BoTorch's scipy fit of an SVGP), from the prior's
  initial values like SingleTaskGP (or warm-started); between full refits `update()` absorbs the
  new points (`model.update`) and takes a short warm refit.
- `MagmaClustFactory`: a new task under a MagmaClust prior learned from related past tasks.
- `CallableFactory`: any ``fn(train_X, train_Y) -> fitted Model`` (refit from scratch each time).

The gpvi fits stop at a step budget on purpose (short warm starts and updates), so a fit that ends
there without converging is expected: `gpvi.progress.MaxStepsWarning` is silenced inside them
(`step_budget`), and every other warning reaches the user.

`make_factory(name)` reads the model registry (`gpvi.models.registry`): a model registered there
serves the loops with its "bo" defaults, without a line here.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from botorch.models.model import Model
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.likelihoods import BernoulliLikelihood, Likelihood, SoftmaxLikelihood
from gpytorch.likelihoods.gaussian_likelihood import _GaussianLikelihoodBase
from gpytorch.priors import GammaPrior
from torch import Tensor

from gpvi.fit import fit
from gpvi.fit.api import recipe_options
from gpvi.models.priors import UNIT_CUBE_SPREAD
from gpvi.models.registry import ModelEntry, get_model, load_object
from gpvi.progress import MaxStepsWarning

WarmState = dict[str, Tensor] | None
#: The likelihood names a gpvi factory takes (besides a gpytorch `Likelihood`; "softmax:C" for C classes).
LIKELIHOODS = ("gaussian", "bernoulli", "softmax:C")


@contextmanager
def step_budget() -> Iterator[None]:
    """Silence `MaxStepsWarning` only: the loops' fits stop at their step budget on purpose (short warm
    starts and updates), so running out of steps is expected there; every other warning passes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=MaxStepsWarning)
        yield


class ModelFactory:
    """Builds and fits a model from data (override `fit`; optionally `warm_state` and `update`)."""

    name = "model"
    #: Whether the models read their targets as class labels (a classifier) rather than real values.
    classifier = False

    def fit(self, train_X: Tensor, train_Y: Tensor, bounds: Tensor, warm: WarmState = None) -> Model:
        """A fitted model on `n x d` inputs and `n x 1` outputs (maximisation sign)."""
        raise NotImplementedError

    def warm_state(self, model: Model) -> WarmState:
        """What the next `fit` may start from (None: nothing; the next fit starts cold)."""
        return None

    def update(self, model: Model, X_new: Tensor, Y_new: Tensor) -> Model | None:
        """Absorb new points without a full refit; None when the factory cannot (the loop refits)."""
        return None


class BoTorchFactory(ModelFactory):
    """A BoTorch model of the registry (default `SingleTaskGP`), fitted with `fit_gpytorch_mll`.

    Regression only: its model is an exact GP with a Gaussian likelihood, so a classifier's
    ``likelihood`` ("bernoulli", "softmax:C", a non-Gaussian gpytorch likelihood) is a `ValueError`
    (use a gpvi factory: ``GPVIFactory("svgp", likelihood="bernoulli")``).

    Args:
        model: The registered name ("singletaskgp").
        likelihood: None or "gaussian" (the model's own), or a Gaussian gpytorch likelihood passed
            to the constructor.
        model_options: Passed to the model's constructor.
    """

    def __init__(
        self, model: str = "singletaskgp", *, likelihood: str | Likelihood | None = None, **model_options: Any
    ) -> None:
        self.entry = get_model(model)
        if self.entry.trainer != "botorch":
            raise ValueError(f"{model!r} is not a BoTorch model fitted by fit_gpytorch_mll.")
        if parse_likelihood(likelihood) is not None:
            raise ValueError(
                f"{model!r} is a regression model (an exact GP with a Gaussian likelihood): it cannot take "
                f"likelihood={likelihood!r}; use a gpvi factory for a classifier, e.g. "
                f"GPVIFactory('svgp', likelihood={likelihood!r})."
            )
        if isinstance(likelihood, Likelihood):
            model_options["likelihood"] = likelihood
        self.name = self.entry.name
        self.model_options = model_options

    def fit(self, train_X: Tensor, train_Y: Tensor, bounds: Tensor, warm: WarmState = None) -> Model:
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        model = self.entry.build(
            train_X,
            train_Y,
            input_transform=Normalize(train_X.shape[-1], bounds=bounds),
            outcome_transform=Standardize(1),
            **self.model_options,
        )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model


class SingleTaskGPFactory(BoTorchFactory):
    """BoTorch's `SingleTaskGP`, fitted with `fit_gpytorch_mll` (L-BFGS-B on the exact marginal likelihood)."""

    def __init__(self, *, likelihood: str | Likelihood | None = None, **model_options: Any) -> None:
        super().__init__("singletaskgp", likelihood=likelihood, **model_options)


class GPVIFactory(ModelFactory):
    """A gpvi model of the registry with a step-capped fit: by default SingleTaskGP's model while n ≤ M.

    Options left as None take the model's "bo" defaults from the registry.

    Args:
        model: The registered name ("svgp", "dual-svgp", ...).
        num_inducing: M (capped at n, so small data sets get Z = X).
        max_steps: Steps of the first (cold) fit (L-BFGS evaluations for the collapsed recipe).
        warm_steps: Steps of a fit warm-started from the previous model's hyperparameters.
        update_steps: Steps of the refit after `update()` between full refits.
        lr: Adam's learning rate for the hyperparameters (recipes that use one).
        inducing: Initial inducing inputs: "kmeans" or "greedy".
        kernel: "singletaskgp" (default): BoTorch SingleTaskGP's own kernel and likelihood (RBF with
            the dimension-scaled lengthscale prior, log-normal noise prior; `gpvi.models.priors`), so
            that a comparison with SingleTaskGP isolates the inference; "matern": Matérn-5/2 ARD with an
            outputscale, no priors (gpvi's SVGP default before it took SingleTaskGP's).
        fit: "collapsed": q exact in closed form and L-BFGS on the collapsed bound plus the log prior
            (with Z = X this is SingleTaskGP's MAP fit); "ngd": natural-gradient steps on q plus
            Adam; "default": the model's own default recipe (always, for a classifier: the
            collapsed bound needs a Gaussian likelihood, and asking for it is a `ValueError`).
        warm_start: Start each full refit from the previous model's hyperparameters (capped at
            ``warm_steps``) instead of from the kernel's initial values (``max_steps``). Default: on
            for "ngd"; otherwise off while n ≤ M (Z = X: SingleTaskGP's model, started like
            SingleTaskGP) and on beyond (where a cold L-BFGS over Z costs as much as an exact fit).
            Cold starts matter on noisy problems: a chain of warm starts drifts into the
            higher-posterior but degenerate mode of lengthscales at their 0.025 bound and
            near-zero noise, where qLogEI is flat (Ackley-10 with noise, n = 54: MAP −103.5 there
            against −105.9 in SingleTaskGP's mode).
        learn_inducing: Learn the inducing inputs. Default: only when n > M; with M ≥ n they stay at
            Z = X, where the collapsed bound is the exact marginal likelihood (its maximum over Z).
        likelihood: None or "gaussian": regression (SingleTaskGP's Gaussian likelihood, targets
            standardised); "bernoulli" (gpytorch's probit `BernoulliLikelihood`, labels in {0, 1});
            "softmax:C" (`SoftmaxLikelihood` over C classes, one latent GP each, labels 0..C−1); or
            a gpytorch `Likelihood` (copied for every model). A classifier's targets are labels, read
            as given (no outcome transform); its kernel is SingleTaskGP's in a `ScaleKernel` (the
            latent amplitude is learned: Gamma(2, 0.15) prior, as gpvi's models without a Gaussian
            likelihood; "matern": Matérn-5/2 in a `ScaleKernel`), one per class for a softmax.
    """

    FITS: ClassVar[tuple[str, ...]] = ("collapsed", "ngd", "default")

    def __init__(
        self,
        model: str = "svgp",
        *,
        num_inducing: int = 128,
        max_steps: int | None = None,
        warm_steps: int | None = None,
        update_steps: int | None = None,
        lr: float = 0.05,
        inducing: str = "kmeans",
        kernel: str = "singletaskgp",
        fit: str | None = None,
        warm_start: bool | None = None,
        learn_inducing: bool | None = None,
        likelihood: str | Likelihood | None = None,
    ) -> None:
        self.entry: ModelEntry = get_model(model)
        if self.entry.trainer != "gpvi":
            raise ValueError(f"{model!r} is not a gpvi model; use BoTorchFactory or a callable.")
        self.likelihood = parse_likelihood(likelihood)  # None: Gaussian (SingleTaskGP's)
        if isinstance(likelihood, _GaussianLikelihoodBase):
            self.likelihood = likelihood
        defaults = self.entry.options_for("bo")
        if self.classifier and fit == "collapsed":
            raise ValueError(
                f"fit='collapsed' needs a Gaussian likelihood; with likelihood={likelihood!r} use fit='default' "
                "(the model's own recipe) or 'ngd'."
            )
        fit = ("default" if self.classifier else defaults.get("fit", "default")) if fit is None else fit
        if kernel not in ("singletaskgp", "matern"):
            raise ValueError(f"`kernel` must be 'singletaskgp' or 'matern', got {kernel!r}.")
        if fit not in self.FITS:
            raise ValueError(f"`fit` must be one of {self.FITS}, got {fit!r}.")
        self.name = self.entry.name
        self.num_inducing = num_inducing
        self.max_steps = defaults.get("max_steps", 300) if max_steps is None else max_steps
        self.warm_steps = defaults.get("warm_steps", 100) if warm_steps is None else warm_steps
        self.update_steps = defaults.get("update_steps", 20) if update_steps is None else update_steps
        self.lr = lr
        self.inducing = inducing
        self.kernel = kernel
        self.fit_kind = fit
        self.warm_start = True if warm_start is None and fit == "ngd" else warm_start
        self.learn_inducing = learn_inducing

    @property
    def classifier(self) -> bool:
        """Whether the models read their targets as class labels (a likelihood other than Gaussian)."""
        return self.likelihood is not None and not isinstance(self.likelihood, _GaussianLikelihoodBase)

    def _modules(self, d: int, dtype: Any) -> dict[str, Any]:
        if self.likelihood is not None:
            likelihood = copy.deepcopy(self.likelihood)  # a fresh one per model: none shares parameters
            if self.classifier:
                return {"kernel": self._classifier_kernel(d, likelihood, dtype), "likelihood": likelihood}
            return {**self._modules_gaussian(d, dtype), "likelihood": likelihood.to(dtype)}
        return self._modules_gaussian(d, dtype)

    def _classifier_kernel(self, d: int, likelihood: Likelihood, dtype: Any) -> ScaleKernel:
        """SingleTaskGP's kernel (or Matérn-5/2) in a `ScaleKernel`, batched over a softmax's classes."""
        batch = torch.Size([likelihood.num_features]) if isinstance(likelihood, SoftmaxLikelihood) else torch.Size()
        if self.kernel == "matern":
            base = MaternKernel(nu=2.5, ard_num_dims=d, batch_shape=batch).to(dtype)
            base.lengthscale = 0.5 * d**0.5 * UNIT_CUBE_SPREAD
        else:
            from gpvi.models.priors import singletaskgp_modules

            base, _ = singletaskgp_modules(d, batch_shape=batch, dtype=dtype)
        kernel = ScaleKernel(base, batch_shape=batch, outputscale_prior=GammaPrior(2.0, 0.15)).to(dtype)
        kernel.outputscale = 1.0
        return kernel

    def _modules_gaussian(self, d: int, dtype: Any) -> dict[str, Any]:
        if self.kernel == "matern":
            kernel = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=d)).to(dtype)
            kernel.base_kernel.lengthscale = 0.5 * d**0.5 * UNIT_CUBE_SPREAD  # inputs normalised to the bounds
            return {"kernel": kernel}
        from gpvi.models.priors import singletaskgp_modules

        kernel, likelihood = singletaskgp_modules(d, dtype=dtype)
        return {"kernel": kernel, "likelihood": likelihood}

    def fit(self, train_X: Tensor, train_Y: Tensor, bounds: Tensor, warm: WarmState = None) -> Model:
        options = {
            "num_inducing": min(self.num_inducing, train_X.shape[-2]),
            "inducing": self.inducing,
            "learn_inducing": self._learns_inducing(train_X.shape[-2]),
            "input_transform": Normalize(train_X.shape[-1], bounds=bounds),
            "outcome_transform": None if self.classifier else Standardize(1),
            **self._modules(train_X.shape[-1], train_X.dtype),
        }
        params, open_ended = self.entry.constructor_parameters()  # a family without inducing inputs: no num_inducing
        model = self.entry.build(train_X, train_Y, **{k: v for k, v in options.items() if open_ended or k in params})
        warm = warm if self._uses_warm_start(train_X.shape[-2]) else None
        if warm:
            model.load_state_dict(warm, strict=False)
        self._train(model, self.warm_steps if warm else self.max_steps)
        return model

    def _train(self, model: Model, steps: int) -> None:
        """A fit capped at ``steps`` (a deliberate budget: `MaxStepsWarning` is not raised to the user)."""
        with step_budget():
            if self.fit_kind == "collapsed":
                fit(model, recipe="collapsed", max_steps=steps, progress=False)
            elif self.fit_kind == "ngd":
                fit(model, recipe="ngd", max_steps=steps, lr=self.lr, progress=False)
            else:
                lr = {"lr": self.lr} if "lr" in recipe_options(model) else {}
                fit(model, max_steps=steps, progress=False, **lr)

    def _uses_warm_start(self, n: int) -> bool:
        return self.warm_start if self.warm_start is not None else n > self.num_inducing

    def _learns_inducing(self, n: int) -> bool:
        return n > self.num_inducing if self.learn_inducing is None else self.learn_inducing

    def warm_state(self, model: Model) -> WarmState:
        """The kernel, mean and likelihood hyperparameters (not q, Z or the transforms' statistics);
        None with ``warm_start=False``."""
        if self.warm_start is False:
            return None
        keep = ("model.mean_module.", "model.covar_module.", "likelihood.")
        return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(keep)}

    def update(self, model: Model, X_new: Tensor, Y_new: Tensor) -> Model | None:
        """Absorb the new points keeping all data (`model.append`), then a warm refit of ``update_steps`` steps."""
        model.append(X_new, Y_new)
        if self.update_steps:
            self._train(model, self.update_steps)
        return model


class SVGPFactory(GPVIFactory):
    """gpvi's `SVGP` (`GPVIFactory` with model "svgp"; collapsed fit, 300 / 100 / 20 steps by default)."""

    def __init__(self, **options: Any) -> None:
        super().__init__("svgp", **options)


class DualSVGPFactory(GPVIFactory):
    """gpvi's `DualSVGP` (sites + CVI), fitted by its default recipe with a step cap.

    With the loops' Gaussian likelihood that recipe is closed form: L-BFGS on the collapsed bound
    (each step one evaluation) and exact sites (100 / 40 / 10 steps by default); `update()` writes
    the sites exactly and takes ``update_steps`` warm L-BFGS evaluations.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__("dual-svgp", **options)


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


def parse_likelihood(likelihood: str | Likelihood | None) -> Likelihood | None:
    """A classifier's likelihood from its name (`LIKELIHOODS`); None for a Gaussian one (by name or None).

    "bernoulli": gpytorch's `BernoulliLikelihood` (probit); "softmax:C": `SoftmaxLikelihood` over C ≥ 2
    classes without mixing weights; a gpytorch `Likelihood` other than Gaussian is returned as given.
    """
    if likelihood is None or isinstance(likelihood, _GaussianLikelihoodBase):
        return None
    if isinstance(likelihood, Likelihood):
        return likelihood
    if not isinstance(likelihood, str):
        raise TypeError(f"`likelihood` must be a name {LIKELIHOODS} or a gpytorch Likelihood, got {likelihood!r}.")
    name = likelihood.lower().strip()
    if name == "gaussian":
        return None
    if name == "bernoulli":
        return BernoulliLikelihood()
    if name.startswith("softmax:"):
        count = name.partition(":")[2]
        if count.isdigit() and int(count) >= 2:
            return SoftmaxLikelihood(num_classes=int(count), mixing_weights=False)
    raise ValueError(f"Unknown `likelihood` {likelihood!r}: use one of {LIKELIHOODS} (C ≥ 2) or a gpytorch Likelihood.")


def make_factory(spec: str | ModelFactory | Callable, **options: Any) -> ModelFactory:
    """A factory from a registered model name, a "module:attr" path, a factory or a callable."""
    if isinstance(spec, ModelFactory):
        if options:
            raise TypeError("Options go to the factory's constructor when passing a ModelFactory instance.")
        return spec
    if isinstance(spec, str):
        if ":" in spec:
            obj = load_object(spec)
            if isinstance(obj, type) and issubclass(obj, ModelFactory):
                return obj(**options)
            return make_factory(obj, **options)
        entry = get_model(spec.lower())
        own_factory = entry.options_for("bo").get("factory")
        if own_factory is not None and "bo" in entry.uses:
            return load_object(own_factory)(**options)
        if "bo" not in entry.uses or entry.trainer == "own":
            raise ValueError(f"Model {spec!r} is not available to the BO loop (uses: {entry.uses}).")
        if entry.trainer == "botorch":
            return BoTorchFactory(entry.name, **options)
        return GPVIFactory(entry.name, **options)
    if callable(spec):
        if options:
            return CallableFactory(lambda X, Y: spec(X, Y, **options), getattr(spec, "__name__", None))
        return CallableFactory(spec)
    raise TypeError(f"`model_factory` must be a name, a ModelFactory or a callable, got {type(spec).__name__}.")


__all__ = [
    "BoTorchFactory",
    "CallableFactory",
    "DualSVGPFactory",
    "GPVIFactory",
    "LIKELIHOODS",
    "MagmaClustFactory",
    "ModelFactory",
    "SVGPFactory",
    "SingleTaskGPFactory",
    "WarmState",
    "make_factory",
    "parse_likelihood",
    "step_budget",
]
