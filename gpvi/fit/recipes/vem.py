"""The "vem" recipe: a model's own variational EM (MagmaClust), run through `gpvi.fit`.

Models whose E-step and M-step are their own (`gpvi.multitask.MagmaClust`: closed-form E-steps on
the mean processes and the responsibilities, a guarded L-BFGS M-step) fit themselves with
``model.fit(max_iter=..., ...)`` on the shared step loop; this recipe makes ``gpvi.fit(model)``
do the same, so every gpvi model trains through one entry point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gpvi.fit.recipes.base import Recipe, register_recipe
from gpvi.progress import FitResult


@register_recipe
@dataclass
class VariationalEM(Recipe):
    """``model.fit``'s variational EM: each step one VM, VE(a), VE(b) iteration.

    Attributes:
        max_steps: EM iterations at most (default 50).
        tol: Stop when the ELBO changes by at most ``tol`` of its size.
        m_step_iter: L-BFGS iterations of each M-step.
        m_step: "collapsed" (q profiled out) or "expected" (the papers' M-step).
    """

    name: ClassVar[str] = "vem"
    max_steps: int = 50
    tol: float = 1e-6
    m_step_iter: int = 50
    m_step: str = "collapsed"

    def check(self, model: Any) -> None:
        if not hasattr(model, "vem_iteration"):
            raise ValueError(f"The 'vem' recipe trains models with a variational EM, not {type(model).__name__}.")

    def run(self, model: Any) -> FitResult:
        return model.fit(
            max_iter=self.max_steps,
            tol=self.tol,
            m_step_iter=self.m_step_iter,
            m_step=self.m_step,
            progress=self.progress,
        )


__all__ = ["VariationalEM"]
