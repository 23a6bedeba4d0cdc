"""What a training recipe is: a small object holding its options, that checks a model and runs on it.

    @register_recipe
    @dataclass
    class MyRecipe(Recipe):
        name: ClassVar[str] = "my-recipe"
        max_steps: int = 500
        lr: float = 0.01

        def run(self, model) -> FitResult: ...

A model names its default recipe (``default_recipe``) and the recipes it supports (``recipes``);
`gpvi.fit` resolves a name to the registered class, builds it from the caller's options (a
dataclass: an unknown option is a `TypeError` naming the allowed ones) and calls `run`. A new
recipe is a new module under `gpvi/fit/recipes/`: it is imported, and so registered, with the
package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from gpvi.progress import EarlyStopping, FitResult

RECIPES: dict[str, type[Recipe]] = {}


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: make ``cls`` available to `gpvi.fit` under ``cls.name``."""
    if cls.name in RECIPES and RECIPES[cls.name] is not cls:
        raise ValueError(f"A recipe named {cls.name!r} is already registered ({RECIPES[cls.name].__name__}).")
    RECIPES[cls.name] = cls
    return cls


@dataclass
class Recipe:
    """Base of the recipes: the options every recipe takes.

    Attributes:
        max_steps: The step budget (each recipe says what one step is).
        callback: ``callback(step, parts) -> bool | None`` after each step; True stops the fit.
        progress: Show a progress bar (default: on a terminal, never under pytest).
    """

    name: ClassVar[str] = ""
    max_steps: int = 1000
    callback: Callable[[int, Any], bool | None] | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_steps, int) or isinstance(self.max_steps, bool) or self.max_steps < 0:
            raise ValueError(f"`max_steps` must be a non-negative int, got {self.max_steps!r}.")

    @classmethod
    def option_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def check(self, model: Any) -> None:
        """Raise `ValueError` / `TypeError` if the recipe cannot train ``model`` (before any work)."""

    def run(self, model: Any) -> FitResult:
        """Train ``model`` in place and return what happened. The model is left in eval mode."""
        raise NotImplementedError


def early_stopping_rule(early_stopping: bool | EarlyStopping | None) -> EarlyStopping | None:
    """True: the defaults of `EarlyStopping`; False / None: no rule; an instance: itself."""
    return EarlyStopping() if early_stopping is True else (early_stopping or None)


__all__ = ["RECIPES", "Recipe", "early_stopping_rule", "register_recipe"]
