"""`gpvi.fit(model, ...)`: train any gpvi model with the recipe it declares, or the one asked for.

    result = gpvi.fit(model)                                   # the model's default recipe
    result = gpvi.fit(model, max_steps=2000, batch_size=1024, optimizer="ngd")
    result = gpvi.fit(model, objective="collapsed")            # Gaussian: q exact, L-BFGS on the bound
    result = gpvi.fit(model, recipe="cvi", objective="ep")     # by name, with the recipe's options
    result = gpvi.fit(model, recipe=Collapsed(max_steps=50))  # or a recipe object

The recipe is named by ``recipe``, or, as before recipes had names, by ``optimizer`` ("adam",
"ngd", "cvi") and ``objective`` ("elbo", "ep", "collapsed"): "collapsed" is the closed-form
recipe, "ep" the EP-like M-step of "cvi". Without either, the model's ``default_recipe`` runs
(SVGP and DualSVGP: "collapsed" with a Gaussian likelihood while N·M ≤ 5e7, "cvi-em" with any
other; beyond, minibatch "ngd" (SVGP) or "cvi" (DualSVGP); "vem" for MagmaClust);
``optimizer="cvi"`` without an objective follows the same rule. An objective alone picks the
model's default recipe when that recipe trains it ("collapsed" is the ELBO at the optimal q). The
other options belong to the recipe (`gpvi.fit.recipes`): an option no recipe knows is a
`TypeError`; one that the chosen recipe does not use draws a warning. `fit` reads nothing of a
model but what its recipe calls.
"""

from __future__ import annotations

import warnings
from typing import Any

from gpvi.core.likelihoods import check_num_quadrature
from gpvi.fit.recipes import RECIPES, Recipe
from gpvi.progress import FitResult

#: The recipes that the older ``optimizer`` / ``objective`` arguments name.
LEGACY = ("adam", "ngd", "cvi", "collapsed")


#: Marks ``num_quadrature`` as not given (None is a value: the adaptive rule).
_MODEL_RULE = object()


def fit(
    model: Any,
    recipe: str | Recipe | None = None,
    *,
    optimizer: str | None = None,
    objective: str | None = None,
    num_quadrature: Any = _MODEL_RULE,
    **options: Any,
) -> FitResult:
    """Fit a gpvi model (see the module docstring); returns a `FitResult` and leaves the model in eval mode.

    Args:
        model: A gpvi model (`gpvi.SVGP`, `gpvi.DualSVGP`, `gpvi.multitask.MagmaClust`, ...).
        recipe: A recipe name (`gpvi.fit.recipes.RECIPES`) or a `Recipe` object.
        optimizer: "adam", "ngd" or "cvi": the recipe by its older name.
        objective: "elbo", "ep", "collapsed" or "pll" (the predictive log likelihood, adam / ngd).
        num_quadrature: The expectations' rule during this fit (None: adaptive; K: Gauss–Hermite
            nodes); default the model's own ``num_quadrature``, which is put back afterwards.
        options: The recipe's options, e.g. ``max_steps``, ``batch_size``, ``lr``, ``ngd_step``,
            ``early_stopping``, ``callback``, ``progress``, ``kl_weight``, ``seed``, ``e_steps``,
            ``m_steps``, ``restore_best``, ``warmup_e_steps``, ``learn_inducing`` (see each recipe).
    """
    if isinstance(recipe, Recipe):
        if options or optimizer is not None or objective is not None:
            raise TypeError("Pass options to the recipe object, not to fit, when giving a Recipe.")
        chosen = recipe
    else:
        name, extra = resolve_recipe(model, recipe, optimizer, objective)
        chosen = build_recipe(name, {**options, **extra})
    chosen.check(model)
    if num_quadrature is _MODEL_RULE:
        return chosen.run(model)
    check_num_quadrature(num_quadrature)
    saved = model.num_quadrature
    model.num_quadrature = num_quadrature
    try:
        return chosen.run(model)
    finally:
        model.num_quadrature = saved


def resolve_recipe(model: Any, recipe: str | None, optimizer: str | None, objective: str | None) -> tuple[str, dict]:
    """The recipe name (and options it implies) for ``recipe`` or the (``optimizer``, ``objective``) pair."""
    implied = {} if objective is None else {"objective": objective}
    if recipe is not None:
        if optimizer is not None:
            raise TypeError("Pass `recipe` or `optimizer`, not both.")
        if recipe not in RECIPES:
            raise ValueError(f"Unknown `recipe` {recipe!r}; registered: {sorted(RECIPES)}.")
        return recipe, implied
    default = model.default_recipe
    if optimizer is None and objective is None:
        return default, {}
    if optimizer is None:  # an objective for the model's default family
        if default not in LEGACY + ("cvi-em",):  # a model's own recipe (e.g. "vem") judges the objective
            return default, implied
        return objective_default(default, objective)
    if optimizer not in ("adam", "ngd", "cvi"):
        raise ValueError(f"`optimizer` must be 'adam', 'ngd' or 'cvi', got {optimizer!r}.")
    if objective not in (None, "elbo", "ep", "collapsed", "pll"):
        raise ValueError(f"`objective` must be 'elbo', 'ep', 'collapsed' or 'pll', got {objective!r}.")
    if objective == "pll":
        if optimizer not in ("adam", "ngd"):
            raise ValueError("`objective='pll'` is trained by optimizer 'adam' or 'ngd'.")
        return optimizer, {"objective": "pll"}
    if optimizer == "cvi":
        RECIPES["cvi"]().check(model)  # even when it resolves to the collapsed recipe
        if objective is None:
            objective = "collapsed" if default == "collapsed" else "elbo"
    if objective == "collapsed":
        if optimizer == "adam":
            raise ValueError("`objective='collapsed'` sets q in closed form: use optimizer 'ngd', 'cvi' or None.")
        return "collapsed", {}
    if objective == "ep" and optimizer != "cvi":
        raise ValueError("`objective='ep'` needs `optimizer='cvi'` and a dual model (it is built from sites).")
    if optimizer == "cvi":
        return "cvi", {"objective": objective}
    return optimizer, {}


def objective_default(default: str, objective: str) -> tuple[str, dict]:
    """The recipe for ``objective`` when no optimizer is named: the model's ``default`` recipe when it
    trains that objective, else the recipe that does ("collapsed"; "adam" for "pll"; "cvi" for "ep")."""
    if objective not in ("elbo", "ep", "collapsed", "pll"):
        raise ValueError(f"`objective` must be 'elbo', 'ep', 'collapsed' or 'pll', got {objective!r}.")
    if objective == "collapsed":
        return "collapsed", {}
    if objective == "pll":
        return ("ngd" if default == "ngd" else "adam"), {"objective": "pll"}
    if objective == "ep":  # small Adam M-steps: the EP-like estimate is not a bound (see "cvi-em")
        return "cvi", {"objective": "ep"}
    if default == "collapsed":  # the collapsed bound is the ELBO at the optimal q
        return default, {}
    return default, ({"objective": "elbo"} if "objective" in RECIPES[default].option_names() else {})


def recipe_options(
    model: Any, recipe: str | None = None, optimizer: str | None = None, objective: str | None = None
) -> set[str]:
    """The option names of the recipe `fit` would run with these arguments (to pass only what it uses)."""
    return RECIPES[resolve_recipe(model, recipe, optimizer, objective)[0]].option_names()


def fit_option_names() -> set[str]:
    """Every keyword `fit` accepts: ``recipe``, ``optimizer``, ``objective`` and every recipe's options."""
    return {"recipe", "optimizer", "objective", "num_quadrature"}.union(*(c.option_names() for c in RECIPES.values()))


def build_recipe(name: str, options: dict[str, Any]) -> Recipe:
    """The recipe ``name`` built from ``options``: unknown options raise, unused ones warn."""
    cls = RECIPES[name]
    mine = cls.option_names()
    known = fit_option_names()
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"gpvi.fit got unexpected option(s) {unknown}; the {name!r} recipe takes {sorted(mine)}.")
    unused = sorted(set(options) - mine)
    if unused:
        warnings.warn(f"gpvi.fit options {unused} are not used by the {name!r} recipe.", stacklevel=3)
    return cls(**{k: v for k, v in options.items() if k in mine})


__all__ = ["LEGACY", "build_recipe", "fit", "fit_option_names", "objective_default", "recipe_options", "resolve_recipe"]
