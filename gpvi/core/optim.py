"""A guarded L-BFGS maximisation: a run that fails or loses ground is retried once, then undone.

torch's L-BFGS with a strong-Wolfe line search can step where a covariance is not positive
definite (a `NotPSDError` from the objective) or end below where it started. For fits whose every
step must not decrease the objective (variational EM, a new task's EM), `guarded_lbfgs` runs it
from the current parameters, retries once with a 10x shorter first step, and otherwise restores
the parameters it started from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gpvi.core.linalg import NotPSDError


def guarded_lbfgs(
    params: list[Tensor],
    objective: Callable[[], Tensor],
    *,
    scale: float = 1.0,
    after_backward: Callable[[], None] | None = None,
    **options: Any,
) -> bool:
    """Maximise ``objective()`` over ``params`` by L-BFGS (strong Wolfe), guarded (see the module docstring).

    Args:
        params: Leaf tensors to optimise (changed in place).
        objective: Returns the scalar to maximise; differentiable in ``params``.
        scale: The loss handed to L-BFGS is −objective / scale (a per-datum scale for its tolerances).
        after_backward: Called after each backward pass (e.g. to move gradients onto proxies of
            ``params`` that ``objective`` reads through).
        options: `torch.optim.LBFGS` options (``max_iter``, ``tolerance_grad``, ...).

    Returns:
        True when the parameters were kept (the objective did not decrease), False when undone.
    """
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        start = float(objective())
    for lr in (1.0, 0.1):
        lbfgs = torch.optim.LBFGS(params, lr=lr, line_search_fn="strong_wolfe", **options)

        def closure(lbfgs: torch.optim.LBFGS = lbfgs) -> Tensor:
            lbfgs.zero_grad(set_to_none=True)
            loss = -objective() / scale
            loss.backward()
            if after_backward is not None:
                after_backward()
            return loss

        try:
            lbfgs.step(closure)
            with torch.no_grad():
                end = float(objective())
            if math.isfinite(end) and end >= start:
                return True
        except (NotPSDError, RuntimeError, ValueError):
            pass
        with torch.no_grad():  # undo the failed run
            for p, value in zip(params, saved, strict=True):
                p.copy_(value)
    return False


__all__ = ["guarded_lbfgs"]
