"""Dense cross-covariances of stationary kernels with a lean, fused backward pass.

gpytorch evaluates a Matérn kernel as a chain of elementwise operations on the N×M distance matrix
(centring, `sqrt`, `exp`, the polynomial, the outputscale), and autograd keeps every
intermediate and replays the chain backwards: on kin40k (N = 36k, M = 256) half the time of a
collapsed-bound step went there. `cross_covariance` computes the same matrix as one autograd node.
With a = x/ℓ, b = z/ℓ (centred), r² = |a|² + |b|² − 2 a·b (one matrix product) and k = σ² p(r²):

    RBF:          p = exp(−r²/2),                       p'(r²) = −p / 2
    Matérn-3/2:   p = (1 + s) e^{−s},          s = √3 r, p'(r²) = −(3/2) e^{−s}
    Matérn-5/2:   p = (1 + s + s²/3) e^{−s},   s = √5 r, p'(r²) = −(5/6) (1 + s) e^{−s}

(σ² = 1 without a `ScaleKernel`.) p' has no singularity at r = 0. Backwards, from G = ∂L/∂K and
H = G ⊙ σ² p'(r²) (one N×M pass; the N×M tensors kept are K and, for Matérn, e^{−s} (ν = 3/2) or
(1 + s) e^{−s} (ν = 5/2)):

    ∂L/∂σ² = ⟨G, K⟩ / σ²,   ∂L/∂a_n = 2 (Σ_m H_nm a_n − (H b)_n),   ∂L/∂b_m = 2 (Σ_n H_nm b_m − (Hᵀa)_m)

and autograd maps ∂L/∂a, ∂L/∂b (N×D, small) to x, z and ℓ. r² is clamped at 0 against round-off in
the forward pass only. Any other kernel, or one with ``active_dims``, is evaluated by gpytorch, so
the function is always safe to call.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from gpytorch.kernels import Kernel, MaternKernel, RBFKernel, ScaleKernel
from torch import Tensor
from torch.autograd.function import once_differentiable

_MATERN_SCALE = {1.5: math.sqrt(3.0), 2.5: math.sqrt(5.0)}
_SLOPE_FACTOR = {"rbf": -0.5, 1.5: -1.5, 2.5: -5.0 / 6.0}  # p'(r²) = factor · (K/σ², e^{−s}, (1 + s) e^{−s})


class _StationaryCrossCovariance(torch.autograd.Function):
    """K = σ² p(r²) (*b, N1, N2) from scaled inputs A (*b, N1, D), B (*b, N2, D) and σ² (*b) or None."""

    @staticmethod
    def forward(ctx, A: Tensor, B: Tensor, scale: Tensor | None, kind: str | float) -> Tensor:
        K = A @ (-2.0 * B).mT
        K.add_(A.pow(2).sum(-1, keepdim=True)).add_(B.pow(2).sum(-1).unsqueeze(-2)).clamp_min_(0.0)  # r²
        if kind == "rbf":
            slope = None  # p' = −p/2: read from K itself
            K.mul_(-0.5).exp_()
        else:
            neg_s = K.sqrt_().mul_(-_MATERN_SCALE[kind])
            decay = neg_s.exp()
            if kind == 2.5:
                slope = torch.addcmul(decay, neg_s, decay, value=-1.0)  # (1 + s) e^{−s}
                K = torch.addcmul(slope, neg_s.pow_(2), decay, value=1.0 / 3.0, out=neg_s)  # + s² e^{−s}/3
            else:
                slope = decay
                K = neg_s.sub_(1.0).mul_(decay).neg_()  # (1 + s) e^{−s}
        if scale is not None:  # in place unless the outputscale adds batch dimensions
            scale_ = scale[..., None, None]
            K = K.mul_(scale_) if torch.broadcast_shapes(K.shape, scale_.shape) == K.shape else K * scale_
        ctx.kind = kind
        ctx.save_for_backward(A, B, scale, K, slope)
        return K

    @staticmethod
    @once_differentiable
    def backward(ctx, G: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        A, B, scale, K, slope = ctx.saved_tensors
        grad_A = grad_B = grad_scale = None
        if ctx.needs_input_grad[2]:
            inner = torch.vdot(G.reshape(-1), K.reshape(-1)) if K.dim() == 2 else (G * K).sum((-1, -2))
            grad_scale = (inner / scale).sum_to_size(scale.shape)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            factor = 2.0 * _SLOPE_FACTOR[ctx.kind]
            if slope is None:
                H = G * K  # σ² already in K
            else:
                H = G * slope
                factor = factor * scale[..., None, None] if scale is not None else factor
            if ctx.needs_input_grad[0]:
                grad_A = ((H.sum(-1, keepdim=True) * A - H @ B) * factor).sum_to_size(A.shape)
            if ctx.needs_input_grad[1]:
                grad_B = ((H.sum(-2).unsqueeze(-1) * B - H.mT @ A) * factor).sum_to_size(B.shape)
        return grad_A, grad_B, grad_scale, None


def _profile_kind(kernel: Kernel) -> str | float | None:
    if kernel.active_dims is not None:
        return None
    if type(kernel) is RBFKernel:
        return "rbf"
    if type(kernel) is MaternKernel and kernel.nu in _MATERN_SCALE:
        return float(kernel.nu)
    return None


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
    # centred before scaling, against cancellation in r² (inputs far from the origin, in float32 above
    # all: scaling first rounds x/ℓ to the input's own magnitude); r² does not depend on the centre
    centre = X1.mean(-2, keepdim=True).detach()
    A, B = (X1 - centre) / base.lengthscale, (X2 - centre) / base.lengthscale
    return _StationaryCrossCovariance.apply(A, B, outputscale, kind)


def prior_covariance(kernel: Kernel, X: Tensor) -> Any:
    """k(X, X) lazily (gpytorch's), on inputs centred first when the kernel is stationary.

    gpytorch's RBF kernel divides by the lengthscale before it centres, so in float32 inputs far from
    the origin round to garbage (x = −1e6 ± 0.5 gave a predictive covariance with negative
    variances); a stationary kernel does not change under the shift.
    """
    if getattr(kernel, "is_stationary", False) and X.shape[-2] > 0:
        X = X - X.mean(-2, keepdim=True).detach()
    return kernel(X)


__all__ = ["cross_covariance", "prior_covariance"]
