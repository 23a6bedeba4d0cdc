"""Synthetic data sets with known ground truth: exact GP prior draws and the 2-D "banana" set.

All random numbers come from a private ``torch.Generator`` seeded with ``seed`` (drawn on the CPU
in float64, then moved), so results are reproducible across devices and dtypes and the global RNG
state is never touched.
"""

from __future__ import annotations

import gpvi._warnings_filter  # noqa: F401  (must run before gpytorch is imported)

# isort: split

import math
import warnings
from dataclasses import dataclass

import gpytorch
import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.warnings import NumericalWarning
from torch import Tensor

__all__ = ["GPDraw", "KERNELS", "banana", "gp_draw"]

KERNELS = ("rbf", "matern52")


@dataclass(frozen=True, eq=False, repr=False)
class GPDraw:
    """A draw from an exact GP prior: the ground truth for identity tests.

    Attributes:
        X: `n x d` inputs, uniform on ``[0, 1]^d``.
        Y: `n x 1` noisy observations ``f + sqrt(noise) * eps``.
        f: `n x 1` latent function values at ``X``.
        lengthscale: `1` (shared) or `d` (ARD) lengthscale(s) used.
        outputscale: Kernel output scale (prior variance of ``f``).
        noise: Observation noise VARIANCE.
        kernel: ``"rbf"`` or ``"matern52"``.
    """

    X: Tensor
    Y: Tensor
    f: Tensor
    lengthscale: Tensor
    outputscale: float
    noise: float
    kernel: str

    def __repr__(self) -> str:
        n, d = self.X.shape
        ls = [round(v, 4) for v in self.lengthscale.tolist()]
        return (
            f"GPDraw(n={n}, d={d}, kernel={self.kernel!r}, lengthscale={ls}, "
            f"outputscale={self.outputscale}, noise={self.noise}, dtype={self.X.dtype})"
        )


def _generator(seed: int) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {seed!r}.")
    return torch.Generator(device="cpu").manual_seed(seed)


def _base_kernel(kernel: str, ard_num_dims: int | None) -> gpytorch.kernels.Kernel:
    if kernel == "rbf":
        return gpytorch.kernels.RBFKernel(ard_num_dims=ard_num_dims)
    if kernel == "matern52":
        return gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=ard_num_dims)
    raise ValueError(f"`kernel` must be one of {KERNELS}, got {kernel!r}.")


def gp_draw(
    n: int,
    d: int,
    *,
    lengthscale: float | Tensor = 0.3,
    outputscale: float = 1.0,
    noise: float = 0.01,
    kernel: str = "rbf",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> GPDraw:
    """Draw ``n`` noisy observations of one function from an exact zero-mean GP prior.

    ``X ~ U[0, 1]^{n x d}``, ``f ~ N(0, outputscale * k(X, X))`` with ``k`` an RBF or Matern-5/2
    kernel of the given lengthscale(s), and ``Y = f + sqrt(noise) * eps`` with ``eps ~ N(0, I)``.
    The Cholesky factor of the unit-variance kernel matrix is computed in float64 on ``device``
    with ``psd_safe_cholesky`` (which adds diagonal jitter, from 1e-8 upwards, only when the plain
    factorisation fails, as it does for smooth kernels on many points); results are then cast to
    ``dtype``.

    Args:
        n: Number of points.
        d: Input dimension.
        lengthscale: A positive float, or a tensor of `1` or `d` lengthscales (ARD).
        outputscale: Positive prior variance of ``f``.
        noise: Non-negative observation noise VARIANCE (not the standard deviation).
        kernel: ``"rbf"`` or ``"matern52"``.
        seed: Seed of the private generator.
        dtype: Floating dtype of the returned tensors.
        device: Device of the returned tensors.

    Returns:
        A :class:`GPDraw` with ``X`` `n x d`, ``Y`` and ``f`` `n x 1`, and the hyperparameters.
    """
    for arg, val in (("n", n), ("d", d)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"`{arg}` must be a positive int, got {val!r}.")
    if kernel not in KERNELS:
        raise ValueError(f"`kernel` must be one of {KERNELS}, got {kernel!r}.")
    if not float(outputscale) > 0:
        raise ValueError(f"`outputscale` must be positive, got {outputscale!r}.")
    if not float(noise) >= 0:
        raise ValueError(f"`noise` (a variance) must be non-negative, got {noise!r}.")
    if not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a floating dtype, got {dtype}.")
    ls = torch.as_tensor(lengthscale, dtype=torch.float64).detach().cpu().reshape(-1)
    if ls.numel() not in (1, d):
        raise ValueError(f"`lengthscale` must have 1 or d={d} entries, got {ls.numel()}.")
    if not bool((ls > 0).all()) or not bool(torch.isfinite(ls).all()):
        raise ValueError(f"`lengthscale` must be positive and finite, got {lengthscale!r}.")

    gen = _generator(seed)
    X64 = torch.rand(n, d, generator=gen, dtype=torch.float64)
    z = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    eps = torch.randn(n, 1, generator=gen, dtype=torch.float64)

    X64, z, eps = (t.to(device=device) for t in (X64, z, eps))
    ard = d if ls.numel() > 1 else None
    base = _base_kernel(kernel, ard).to(device=X64.device, dtype=torch.float64)
    with torch.no_grad():
        base.lengthscale = ls.to(X64).reshape(1, -1)
        # Factor the unit-variance correlation matrix so the (absolute) jitter is scale-free.
        K = base(X64).to_dense()
        with warnings.catch_warnings():
            # Smooth kernels on many points are numerically singular; jitter is expected here.
            warnings.simplefilter("ignore", NumericalWarning)
            L = psd_safe_cholesky(K)
        f = math.sqrt(float(outputscale)) * (L @ z)
        Y = f + math.sqrt(float(noise)) * eps

    def cast(t: Tensor) -> Tensor:
        return t.to(dtype=dtype)

    return GPDraw(
        X=cast(X64),
        Y=cast(Y),
        f=cast(f),
        lengthscale=cast(ls.to(X64.device)),
        outputscale=float(outputscale),
        noise=float(noise),
        kernel=kernel,
    )


def banana(
    n: int = 400,
    *,
    seed: int = 0,
    noise: float = 0.2,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """A generated stand-in for the classic 2-D "banana" binary classification set.

    The original data file is not available offline, so this draws two interleaving crescent
    (banana-shaped) classes: class 0 along the upper half of the unit circle, class 1 along a
    lower half-circle shifted by ``(1, 0.5)``, each point jittered by isotropic Gaussian noise of
    standard deviation ``noise``. The boundary between the classes is curved (not linearly
    separable). Classes are exactly balanced (``n // 2`` of class 0) and the rows shuffled; the
    inputs are standardised (each column mean 0, population std 1).

    Args:
        n: Number of points (at least 2).
        seed: Seed of the private generator.
        noise: Standard deviation of the Gaussian jitter, in units of the crescent radius.
        dtype: Floating dtype of the returned tensors.
        device: Device of the returned tensors.

    Returns:
        ``(X, Y)``: ``X`` `n x 2` standardised inputs and ``Y`` `n x 1` labels in ``{0., 1.}``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"`n` must be an int >= 2, got {n!r}.")
    if not float(noise) >= 0:
        raise ValueError(f"`noise` must be non-negative, got {noise!r}.")
    gen = _generator(seed)
    n0 = n // 2
    n1 = n - n0
    t0 = math.pi * torch.rand(n0, generator=gen, dtype=torch.float64)
    t1 = math.pi * torch.rand(n1, generator=gen, dtype=torch.float64)
    X0 = torch.stack([torch.cos(t0), torch.sin(t0)], dim=-1)
    X1 = torch.stack([1.0 - torch.cos(t1), 0.5 - torch.sin(t1)], dim=-1)
    X = torch.cat([X0, X1]) + float(noise) * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    Y = torch.cat([torch.zeros(n0, 1, dtype=torch.float64), torch.ones(n1, 1, dtype=torch.float64)])
    perm = torch.randperm(n, generator=gen)
    X, Y = X[perm], Y[perm]
    X = (X - X.mean(0)) / X.std(0, unbiased=False).clamp_min(1e-12)
    return X.to(device=device, dtype=dtype), Y.to(device=device, dtype=dtype)
