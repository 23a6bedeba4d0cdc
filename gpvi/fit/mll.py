"""`botorch.fit.fit_gpytorch_mll` on a gpvi model: the mll names the objective, gpvi's recipes optimise it.

BoTorch calls ``mll.model.custom_fit(mll=mll, closure=..., closure_kwargs=..., optimizer_kwargs=...,
**kwargs)`` when the model has that hook (gpvi's models and their inner gpytorch module do), and
the hook calls `fit_mll`. The mll's type decides the objective, and so the recipe:

    ExactMarginalLogLikelihood(likelihood, model.model)    the collapsed bound, recipe "collapsed"
                                                            (Gaussian likelihood; = log p(y) when Z = X)
    VariationalELBO(likelihood, model.model, num_data=N,   the ELBO with kl_weight β: the model's default
                    beta=β)                                 recipe when it fits the ELBO ("adam", "ngd",
                                                            "cvi", "collapsed" for β = 1), else "adam"
                                                            ("cvi" for a dual model)
    PredictiveLogLikelihood(likelihood, model.model,       Σ_n log E_q[p(y_n|f_n)] − β KL (Jankowiak,
                            num_data=N, beta=β)             Pleiss & Gardner 2020): "adam" with
                                                            objective "pll" ("ngd" when q is held as sites)

(``model`` itself is accepted in place of ``model.model`` where gpytorch allows it.) Anything else
(`GammaRobustVariationalELBO`, `DeepApproximateMLL`, `LeaveOneOutPseudoLikelihood`, any subclass, an
mll over another model or likelihood, or with num_data ≠ the training size) is a `TypeError` /
`ValueError` saying what to pass: gpvi never fits one objective while the mll names another.

Options (``optimizer_kwargs``): BoTorch's names are mapped, ``{"options": {"maxiter": k}}`` (scipy's)
and ``{"step_limit": k}`` (`fit_gpytorch_mll_torch`'s) to ``max_steps=k``, ``"lr"`` to ``lr``; every
`gpvi.fit` option (``recipe``, ``optimizer`` "adam"/"ngd"/"cvi", ``batch_size``, ``ngd_step``, ...)
passes as is (``callback`` is gpvi's ``callback(step, parts)``, not BoTorch's); any other name is a
`TypeError` listing the accepted ones. ``objective`` and ``kl_weight`` come from the mll: given in
``optimizer_kwargs`` they must agree with it. BoTorch's own keywords of its fallback fit
(``max_attempts``, ``optimizer``, ...) do not apply and draw a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from gpytorch.mlls import (
    ExactMarginalLogLikelihood,
    PredictiveLogLikelihood,
    VariationalELBO,
    VariationalELBOEmpirical,
    VariationalMarginalLogLikelihood,
)

from gpvi.fit.api import fit, fit_option_names
from gpvi.progress import FitResult

#: The mll types `fit_mll` understands, by what they ask for (deprecated gpytorch aliases of the ELBO included).
ELBO_MLLS = (VariationalELBO, VariationalELBOEmpirical, VariationalMarginalLogLikelihood)
#: Recipes that maximise the ELBO (with a ``kl_weight``), and those that can run the PLL.
ELBO_RECIPES = ("adam", "ngd", "cvi", "cvi-em")
PLL_RECIPES = ("adam", "ngd")
#: BoTorch option names with a gpvi meaning: scipy's ``options`` (only ``maxiter``), the torch fitter's ``step_limit``.
BOTORCH_OPTIONS = ("options", "step_limit")


def fit_mll(
    model: Any,
    mll: Any,
    *,
    closure: Any = None,
    closure_kwargs: Any = None,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    **botorch_kwargs: Any,
) -> FitResult:
    """Fit ``model`` to the objective ``mll`` names, with BoTorch's option names mapped (module docstring).

    Args:
        model: A gpvi model (`gpvi.models.base.VariationalGPModel`).
        mll: A gpytorch mll over ``model`` or ``model.model`` and ``model.likelihood``.
        closure, closure_kwargs: BoTorch's; a closure is refused (gpvi computes its own objective).
        optimizer_kwargs: gpvi.fit options, or BoTorch's ``options={"maxiter": k}``, ``step_limit``, ``lr``.
        botorch_kwargs: The rest of `fit_gpytorch_mll`'s keywords; ignored with a warning.

    Returns:
        The `FitResult` of `gpvi.fit` (the model is left in eval mode).
    """
    if closure is not None:
        raise TypeError("gpvi models fit their own objective; pass options in `optimizer_kwargs`, not a closure.")
    ignored = sorted(k for k, v in {"closure_kwargs": closure_kwargs, **botorch_kwargs}.items() if v is not None)
    if ignored:
        warnings.warn(f"fit_gpytorch_mll options {ignored} are not used by gpvi models.", stacklevel=2)
    _check_target(model, mll)
    options = map_options(optimizer_kwargs or {})
    recipe, optimizer = options.pop("recipe", None), options.pop("optimizer", None)
    if recipe is not None and optimizer is not None and recipe != optimizer:
        raise TypeError(f"`optimizer_kwargs` names two recipes, recipe={recipe!r} and optimizer={optimizer!r}.")
    recipe, implied = objective_recipe(model, mll, recipe or optimizer)
    wanted = {"objective": "collapsed", "kl_weight": float(getattr(mll, "beta", 1.0)), **implied}  # the mll's
    for name, value in wanted.items():
        if name in options and options[name] != value:
            raise TypeError(
                f"`optimizer_kwargs` sets {name}={options.pop(name)!r} but {type(mll).__name__} asks for {value!r}: "
                f"the mll defines the objective ({_how_to_set(name)})."
            )
        options.pop(name, None)
    return fit(model, recipe, **{"progress": False, **options, **implied})


def map_options(optimizer_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``optimizer_kwargs`` -> `gpvi.fit` options: BoTorch's ``options['maxiter']``, ``step_limit`` -> ``max_steps``."""
    accepted = sorted(fit_option_names() | set(BOTORCH_OPTIONS))
    out: dict[str, Any] = {}

    def put(name: str, value: Any, source: str) -> None:
        if name in out and out[name] != value:
            raise TypeError(f"`optimizer_kwargs` gives {name} twice, differently (last from {source!r}).")
        out[name] = value

    for key, value in optimizer_kwargs.items():
        if key == "options":
            if not isinstance(value, Mapping):
                raise TypeError(
                    f"`optimizer_kwargs['options']` must be a dict such as {{'maxiter': 100}}, got {value!r}."
                )
            unknown = sorted(set(value) - {"maxiter"})
            if unknown:
                raise TypeError(
                    f"`optimizer_kwargs['options']` takes only 'maxiter' (gpvi.fit's max_steps), got {unknown}."
                )
            if "maxiter" in value:
                put("max_steps", value["maxiter"], "options['maxiter']")
        elif key == "step_limit":
            put("max_steps", value, key)
        elif key == "optimizer" and not isinstance(value, str):
            raise TypeError(
                "gpvi runs its own optimisers: `optimizer_kwargs['optimizer']` names a gpvi recipe "
                f"('adam', 'ngd', 'cvi'), not {value!r}; set the learning rate with 'lr'."
            )
        elif key in accepted:
            put(key, value, key)
        else:
            raise TypeError(
                f"fit_gpytorch_mll on a gpvi model got unknown optimizer_kwargs {key!r}; accepted: {accepted}."
            )
    return out


def objective_recipe(model: Any, mll: Any, asked: str | None = None) -> tuple[str, dict[str, Any]]:
    """The recipe and the options (``objective``, ``kl_weight``) that make it optimise what ``mll`` names.

    ``asked``: a recipe the caller named; a `TypeError` when it cannot optimise that objective.
    """
    if type(mll) is ExactMarginalLogLikelihood:
        if not model.is_gaussian:
            raise TypeError(
                f"ExactMarginalLogLikelihood fits the collapsed bound, which needs a GaussianLikelihood; with a "
                f"{type(model.likelihood).__name__} pass VariationalELBO(likelihood, model.model, num_data=N) or "
                "PredictiveLogLikelihood(likelihood, model.model, num_data=N)."
            )
        _check_asked(asked, ("collapsed",), mll)
        return "collapsed", {}
    beta = float(getattr(mll, "beta", 1.0))
    if type(mll) in ELBO_MLLS:
        allowed = ELBO_RECIPES + (("collapsed",) if beta == 1.0 else ())
        _check_asked(asked, allowed, mll)
        chosen = asked or _default_elbo_recipe(model, allowed)
        if chosen == "collapsed":
            return chosen, {}
        return chosen, {"objective": "elbo", "kl_weight": beta}
    if type(mll) is PredictiveLogLikelihood:
        _check_asked(asked, PLL_RECIPES, mll)
        chosen = asked or ("adam" if model.variational_parameters() else "ngd")
        return chosen, {"objective": "pll", "kl_weight": beta}
    raise TypeError(
        f"gpvi models fit ExactMarginalLogLikelihood (collapsed bound, Gaussian likelihood), VariationalELBO "
        f"(beta = KL weight) or PredictiveLogLikelihood (beta = KL weight), not {type(mll).__name__}: pass one of "
        "those, e.g. VariationalELBO(model.likelihood, model.model, num_data=model.num_data), or call gpvi.fit."
    )


def _default_elbo_recipe(model: Any, allowed: tuple[str, ...]) -> str:
    default = model.default_recipe
    if default in allowed:
        return default
    return "cvi" if hasattr(model, "dual_step") else "adam"


def _check_asked(asked: str | None, allowed: tuple[str, ...], mll: Any) -> None:
    if asked is not None and asked not in allowed:
        raise TypeError(
            f"{type(mll).__name__} is fitted by the recipes {list(allowed)}, not {asked!r} "
            f"(beta = {getattr(mll, 'beta', 1.0)})."
        )


def _check_target(model: Any, mll: Any) -> None:
    """The mll must be over this model (or its inner gpytorch module) and its likelihood, with num_data = N."""
    if mll is None:
        raise TypeError("fit_gpytorch_mll needs an mll over the gpvi model, e.g. VariationalELBO(...).")
    inner = getattr(model, "model", None)
    if getattr(mll, "model", None) is not model and getattr(mll, "model", None) is not inner:
        raise TypeError(
            f"The {type(mll).__name__} is over another model ({type(getattr(mll, 'model', None)).__name__}); "
            "build it over this gpvi model (`model`, or `model.model` as BoTorch's convention has it)."
        )
    if getattr(mll, "likelihood", None) is not model.likelihood:
        raise TypeError(f"The {type(mll).__name__} holds another likelihood than the model's: pass `model.likelihood`.")
    num_data = getattr(mll, "num_data", None)
    if num_data is not None and int(num_data) != model.num_data:
        raise ValueError(
            f"The {type(mll).__name__} has num_data={num_data} but the model holds N = {model.num_data} points: "
            "gpvi.fit scales minibatches by N itself; weight the KL with `beta` instead."
        )


def _how_to_set(name: str) -> str:
    if name == "kl_weight":
        return "set `beta` on the mll"
    return "pass VariationalELBO for the ELBO, PredictiveLogLikelihood for the PLL"


__all__ = ["BOTORCH_OPTIONS", "ELBO_MLLS", "ELBO_RECIPES", "PLL_RECIPES", "fit_mll", "map_options", "objective_recipe"]
