"""Dense cross-covariances of stationary kernels with a lean backward pass.

gpytorch evaluates a Matérn kernel as a chain of elementwise operations on the N×M distance matrix
(centring, `sqrt`, `exp`, the polynomial, the outputscale), and autograd keeps every
intermediate and replays the chain backwards: on kin40k (N = 36k, M = 256) half the time of a
collapsed-bound step went there. `cross_covariance` computes the same matrix from the squared
scaled distance r² = ‖(x − z)/ℓ‖² (one matrix product) and differentiates the profile in closed
form in r², where it has no singularity at r = 0:

    RBF:          k = σ² exp(−r²/2),                     ∂k/∂r² = −k / 2
    Matérn-3/2:   k = σ² (1 + s) e^{−s},        s = √3 r, ∂k/∂r² = −(3/2) σ² e^{−s}
    Matérn-5/2:   k = σ² (1 + s + s²/3) e^{−s}, s = √5 r, ∂k/∂r² = −(5/6) σ² (1 + s) e^{−s}

(σ² = 1 without a `ScaleKernel`). r² is clamped at 0 against round-off in the forward pass only,
so its derivative is the profile's continuous one at r = 0. Any other kernel, or one with
``active_dims``, is evaluated by gpytorch, so the function is always safe to call.
"""

from __future__ import annotations

import math

import torch
from gpytorch.kernels import Kernel, MaternKernel, RBFKernel, ScaleKernel
from torch import Tensor
from torch.autograd.function import once_differentiable

_MATERN_SCALE = {1.5: math.sqrt(3.0), 2.5: math.sqrt(5.0)}


class _StationaryProfile(torch.autograd.Function):
    """k(r²) for ``kind`` "rbf", 1.5 or 2.5 (Matérn ν), with the closed-form ∂k/∂r² of the module docstring."""

    @staticmethod
    def forward(ctx, sq_dist: Tensor, kind: str | float) -> Tensor:
        sq = sq_dist.clamp_min(0.0)
        ctx.kind = kind
        if kind == "rbf":
            value = sq.mul_(-0.5).exp_()
            ctx.save_for_backward(value)
            return value
        neg_s = sq.sqrt_().mul_(-_MATERN_SCALE[kind])  # −s
        decay = neg_s.exp()
        if kind == 2.5:
            value = neg_s.pow(2).div_(3.0).sub_(neg_s).add_(1.0).mul_(decay)  # (1 + s + s²/3) e^{−s}
        else:
            value = neg_s.neg().add_(1.0).mul_(decay)  # (1 + s) e^{−s}
        ctx.save_for_backward(neg_s, decay)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        if ctx.kind == "rbf":
            (value,) = ctx.saved_tensors
            return value.mul(grad).mul_(-0.5), None
        neg_s, decay = ctx.saved_tensors
        if ctx.kind == 2.5:
            slope = neg_s.mul(5.0 / 6.0).sub_(5.0 / 6.0).mul_(decay)  # −(5/6)(1 + s) e^{−s}
        else:
            slope = decay.mul(-1.5)
        return slope.mul_(grad), None


def _profile_kind(kernel: Kernel) -> str | float | None:
    if kernel.active_dims is not None:
        return None
    if type(kernel) is RBFKernel:
        return "rbf"
    if type(kernel) is MaternKernel and kernel.nu in _MATERN_SCALE:
        return float(kernel.nu)
    return None


def _scaled_sq_dist(X1: Tensor, X2: Tensor, lengthscale: Tensor) -> Tensor:
    """‖(x1 − x2)/ℓ‖² for all pairs, (*b, N1, N2), unclamped; centred on X1's mean (detached:
    r² does not depend on it)."""
    A, B = X1 / lengthscale, X2 / lengthscale
    centre = A.mean(-2, keepdim=True).detach()
    A, B = A - centre, B - centre
    cross = A @ (-2.0 * B).mT
    return cross + A.pow(2).sum(-1, keepdim=True) + B.pow(2).sum(-1).unsqueeze(-2)


def cross_covariance(kernel: Kernel, X1: Tensor, X2: Tensor) -> Tensor:
    """Dense k(X1, X2), (*b, N1, N2), for X1 (*b, N1, D) and X2 (*b, N2, D).

    Fast path for RBF and Matérn-3/2, -5/2 kernels (optionally inside a `ScaleKernel`) without
    ``active_dims``; any other kernel is evaluated by gpytorch (`kernel(X1, X2).to_dense()`).
    Differentiable once (in the inputs and the hyperparameters).
    """
    outputscale, base = None, kernel
    if type(kernel) is ScaleKernel and kernel.active_dims is None:
        outputscale, base = kernel.outputscale, kernel.base_kernel
    kind = _profile_kind(base)
    if kind is None:
        return kernel(X1, X2).to_dense()
    value = _StationaryProfile.apply(_scaled_sq_dist(X1, X2, base.lengthscale), kind)
    if outputscale is not None:
        value = value * outputscale.unsqueeze(-1).unsqueeze(-1)
    return value


__all__ = ["cross_covariance"]
