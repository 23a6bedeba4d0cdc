"""Dense linear algebra shared by every gpvi method.

The Cholesky wrapper escalates jitter a bounded number of times (each retry emits linear_operator's
`NumericalWarning`) and then raises a `NotPSDError` that says what to try. Jitter and the number of
tries are arguments, never global settings, so importing BoTorch (which changes gpytorch's global
settings) does not change gpvi's numerics.
"""

from __future__ import annotations

import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.errors import NanError, NotPSDError
from torch import Tensor
from torch.autograd.function import once_differentiable

DEFAULT_JITTER = {torch.float64: 1e-6, torch.float32: 1e-4}


def default_jitter(dtype: torch.dtype) -> float:
    """The diagonal jitter added to Kuu: 1e-6 in float64, 1e-4 in float32 (gpytorch's defaults)."""
    return DEFAULT_JITTER.get(dtype, 1e-4)


def cholesky(A: Tensor, *, jitter: float | None = None, max_tries: int = 4, what: str = "matrix") -> Tensor:
    """Lower Cholesky factor of a (batch of) symmetric PSD matrices `A` (*b, n, n).

    Tries A first; if that fails, adds jitter, 10x jitter, ... (``max_tries`` times, warning each
    time), then raises `NotPSDError` naming ``what`` and the remedies.
    """
    start = jitter if jitter is not None else 10 * default_jitter(A.dtype)
    try:
        return psd_safe_cholesky(A, jitter=start, max_tries=max_tries)
    except NanError as err:
        raise NotPSDError(
            f"The {what} contains NaN: check the inputs and hyperparameters for NaN/inf "
            "(a diverged optimiser often causes this; lower the learning rate)."
        ) from err
    except NotPSDError as err:
        top = start * 10 ** (max_tries - 1)
        raise NotPSDError(
            f"The {what} of shape {tuple(A.shape)} is not positive definite even with jitter "
            f"{top:.1e} on the diagonal. Try: float64 inputs; standardised inputs and outputs; "
            "removing duplicated inducing inputs; fewer inducing points or a longer lengthscale; "
            "or a larger `jitter` argument."
        ) from err


def tri_solve(L: Tensor, B: Tensor, *, upper: bool = False, left: bool = True) -> Tensor:
    """Solve L X = B (or X L = B with ``left=False``) for triangular `L` (*b, n, n)."""
    return torch.linalg.solve_triangular(L, B, upper=upper, left=left)


def tri_inverse(L: Tensor) -> Tensor:
    """Inverse of a lower-triangular `L` (*b, n, n), itself lower triangular."""
    eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device).expand_as(L)
    return torch.linalg.solve_triangular(L, eye, upper=False)


def eye_like(A: Tensor) -> Tensor:
    """Identity of the trailing (n, n) shape of `A`, on its device and dtype."""
    return torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)


def add_jitter(A: Tensor, jitter: float) -> Tensor:
    """A + jitter I without modifying `A`."""
    return A + jitter * eye_like(A)


def symmetrize(A: Tensor) -> Tensor:
    """(A + Aᵀ) / 2 over the trailing two dimensions: removes the round-off asymmetry of products."""
    return 0.5 * (A + A.mT)


def log_det_from_chol(L: Tensor) -> Tensor:
    """log |L Lᵀ| from the Cholesky factor `L` (*b, n, n) -> (*b,)."""
    return 2.0 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)


class _Gram(torch.autograd.Function):
    """A Aᵀ, and A y when ``y`` is given, with the backward (G + Gᵀ) A + g yᵀ as one product and one
    in-place rank update, where autograd of ``A @ A.mT`` and ``A @ y`` takes two products and two
    N-sized temporaries."""

    @staticmethod
    def forward(ctx, A: Tensor, y: Tensor | None):
        ctx.save_for_backward(A, y)
        return A @ A.mT if y is None else (A @ A.mT, A @ y)

    @staticmethod
    @once_differentiable
    def backward(ctx, G: Tensor, g: Tensor | None = None):
        A, y = ctx.saved_tensors
        grad_A = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_A = (G + G.mT) @ A
            if g is not None:
                grad_A = grad_A.addmm_(g, y.mT) if grad_A.dim() == 2 else grad_A + g @ y.mT
            grad_A = grad_A.sum_to_size(A.shape)
        if ctx.needs_input_grad[1] and g is not None:
            grad_y = (A.mT @ g).sum_to_size(y.shape)
        return grad_A, grad_y


def gram(A: Tensor) -> Tensor:
    """A Aᵀ for `A` (*b, M, N) -> (*b, M, M), differentiable (twice as cheap backwards as ``A @ A.mT``)."""
    return _Gram.apply(A, None)


def gram_and_project(A: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(A Aᵀ (*b, M, M), A y (*b, M, K)) for `A` (*b, M, N), `y` (*b, N, K), with one fused backward."""
    return _Gram.apply(A, y)


def batched_outer_sum(A: Tensor, w: Tensor) -> Tensor:
    """Σ_n w_n a_n a_nᵀ = A diag(w) Aᵀ for `A` (*b, M, N), `w` (*b, N) -> (*b, M, M)."""
    return (A * w.unsqueeze(-2)) @ A.mT


__all__ = [
    "NotPSDError",
    "add_jitter",
    "batched_outer_sum",
    "cholesky",
    "default_jitter",
    "eye_like",
    "gram",
    "gram_and_project",
    "log_det_from_chol",
    "symmetrize",
    "tri_inverse",
    "tri_solve",
]
