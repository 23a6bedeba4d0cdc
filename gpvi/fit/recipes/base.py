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

import torch

from gpvi.progress import EarlyStopping, FitResult

#: The registered recipe classes by name (`register_recipe` adds one; `gpvi.fit` reads them).
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
        progress: Show a progress bar (default `gpvi.progress.show_progress`: on a terminal or in
            Jupyter, never under pytest; `GPVI_PROGRESS=0` turns bars off).
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
        """The recipe's option names (its dataclass fields): what `gpvi.fit` passes on to it."""
        return {f.name for f in dataclasses.fields(cls)}

    def check(self, model: Any) -> None:
        """Raise `ValueError` / `TypeError` if the recipe cannot train ``model`` (before any work)."""

    def run(self, model: Any) -> FitResult:
        """Train ``model`` in place and return what happened. The model is left in eval mode."""
        raise NotImplementedError


class SpreadScaledInducing:
    """L-BFGS on the inducing inputs in units of the data's spread: Z = s ⊙ Z̃, s = std(X) per column.

    L-BFGS starts from a unit-scale Hessian guess and is not invariant to rescaling one group of
    parameters: on inputs 1e-4 wide, ∂/∂Z is 1e4 times the data's scale and the line search threw
    the inducing inputs off the data (a 1e-4-wide copy of a problem ran to 1000 steps and another
    optimum; the 1e4-wide copy converged in 58). The optimiser sees the proxies Z̃ (``params``);
    `push` writes Z from them before an evaluation, `pull` turns ∂/∂Z into ∂/∂Z̃ after backward.
    Other parameters pass through unchanged.
    """

    def __init__(self, model: Any, params: list[torch.Tensor], X: torch.Tensor) -> None:
        inducing = {id(p) for p in model.inducing_parameters()}
        std = X.detach().std(-2) if X.shape[-2] > 1 else torch.ones_like(X[..., 0, :])
        spread = torch.where(std > 0, std, torch.ones_like(std))
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.params: list[torch.Tensor] = []
        for p in params:
            if id(p) in inducing and p.shape[-1] == spread.shape[-1]:
                proxy = (p.detach() / spread).requires_grad_(True)
                self.pairs.append((p, proxy))
                self.params.append(proxy)
            else:
                self.params.append(p)
        self.spread = spread

    def push(self) -> None:
        """Z ← s ⊙ Z̃ (and Z's gradient cleared)."""
        with torch.no_grad():
            for p, proxy in self.pairs:
                p.copy_(proxy * self.spread)
                p.grad = None

    def pull(self) -> None:
        """∂/∂Z̃ = s ⊙ ∂/∂Z."""
        for p, proxy in self.pairs:
            proxy.grad = None if p.grad is None else p.grad * self.spread


def early_stopping_rule(early_stopping: bool | EarlyStopping | None) -> EarlyStopping | None:
    """True: the defaults of `EarlyStopping`; False / None: no rule; an instance: itself."""
    return EarlyStopping() if early_stopping is True else (early_stopping or None)


__all__ = ["RECIPES", "Recipe", "SpreadScaledInducing", "early_stopping_rule", "register_recipe"]
