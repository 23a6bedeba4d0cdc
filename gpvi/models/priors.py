"""BoTorch's default GP priors, made safe for unconstrained optimisers.

BoTorch's `SingleTaskGP` uses an RBF kernel with a dimension-scaled log-normal lengthscale prior
and a log-normal noise prior (Hvarfner, Hellsten & Nardi 2024, "Vanilla Bayesian Optimization
Performs Great in High Dimensions", ICML):

    ℓ_i ~ LogNormal(√2 + ½ log d, √3),   σ² ~ LogNormal(−4, 1),   ℓ_i ≥ 0.025,  σ² ≥ 1e-4.

BoTorch builds the bounds as constraints *without a transform* (the raw parameter is the value) and
relies on scipy's L-BFGS-B to respect them. Adam or torch's L-BFGS would step straight through them
(a negative noise, a failed Cholesky), so `singletaskgp_modules` rebuilds the same constraints with
gpytorch's default softplus transform, keeping every value and prior.
"""

from __future__ import annotations

import math

import torch
from botorch.models.utils.gpytorch_modules import (
    SQRT2,
    SQRT3,
    get_covar_module_with_dim_scaled_prior,
    get_gaussian_likelihood_with_lognormal_prior,
)
from gpytorch.constraints import GreaterThan, Interval, LessThan
from gpytorch.kernels import Kernel, RBFKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior
from gpytorch.utils.transforms import inv_softplus
from torch import Tensor
from torch.nn import Module


def singletaskgp_modules(
    d: int, batch_shape: torch.Size | None = None, dtype: torch.dtype = torch.float64
) -> tuple[Kernel, GaussianLikelihood]:
    """SingleTaskGP's default kernel (RBF, ARD, dim-scaled prior) and likelihood, softplus-constrained.

    Args:
        d: Input dimension (the kernel is ARD over all of them).
        batch_shape: Batch shape of the kernel and likelihood (one per output; default none).
        dtype: Floating dtype of the parameters.
    """
    kernel = get_covar_module_with_dim_scaled_prior(ard_num_dims=d, batch_shape=batch_shape)
    likelihood = get_gaussian_likelihood_with_lognormal_prior(batch_shape=batch_shape)
    return transformed_constraints(kernel.to(dtype)), transformed_constraints(likelihood.to(dtype))


#: SingleTaskGP's lower bound on the lengthscales (inputs in the unit cube).
LENGTHSCALE_FLOOR = 0.025
#: The per-column standard deviation of inputs spread uniformly over [0, 1]: the scale BoTorch's
#: lengthscale prior is set for.
UNIT_CUBE_SPREAD = 12**-0.5


def default_kernel(X: Tensor, *, gaussian: bool = True, batch_shape: torch.Size | None = None) -> Kernel:
    """The kernel a gpvi model builds from its (model-space) training inputs ``X`` when given none.

    With a Gaussian likelihood: SingleTaskGP's own (`singletaskgp_modules`: RBF, ARD, the
    dimension-scaled LogNormal(√2 + ½ log d, √3) lengthscale prior, ℓ ≥ 0.025, starting at the
    prior's mode, no outputscale, as the targets are standardised). With any other likelihood the
    targets cannot be standardised, so the same kernel is wrapped in a `ScaleKernel` (outputscale 1
    to start, BoTorch's Gamma(2, 0.15) outputscale prior): the latent amplitude of a classifier or a
    count model has to be learned, and the prior keeps it finite on separable labels.

    Input columns off the unit cube (which BoTorch warns about) or squeezed into a corner of it
    get the same prior in units of their spread: the prior's location moves by log(s_j) and the
    bound becomes 0.025 s_j, with s_j = std(X_j) / std(U[0, 1]) (`input_scale`), and the raw
    parameter maps through s_j · softplus (`ScaledGreaterThan`), so optimisers see an O(1) parameter. This is
    SingleTaskGP's kernel on those columns rescaled to the unit cube's spread, so inputs 1e-6 or
    1e6 wide fit as well as unit ones; unit-cube inputs get SingleTaskGP's kernel exactly.

    Args:
        X: `n x d` model-space training inputs (after any input transform).
        gaussian: Whether the likelihood is Gaussian.
        batch_shape: The kernel's batch shape (one per output or latent GP).
    """
    d = X.shape[-1]
    kernel, _ = singletaskgp_modules(d, batch_shape=batch_shape, dtype=X.dtype)
    if X.shape[-2] > 1:
        factor = input_scale(X)
    if X.shape[-2] > 1 and bool((factor != 1).any()):
        prior = LogNormalPrior(loc=SQRT2 + 0.5 * math.log(d) + factor.log(), scale=torch.full_like(factor, SQRT3))
        kernel = RBFKernel(
            ard_num_dims=d,
            batch_shape=batch_shape,
            lengthscale_prior=prior,
            lengthscale_constraint=ScaledGreaterThan(LENGTHSCALE_FLOOR * factor, factor),
        ).to(X)
        kernel.lengthscale = prior.mode.expand_as(kernel.lengthscale)
    kernel = kernel.to(device=X.device)
    if gaussian:
        return kernel
    batch = batch_shape if batch_shape is not None else torch.Size()
    scaled = ScaleKernel(kernel, batch_shape=batch, outputscale_prior=GammaPrior(2.0, 0.15)).to(X)
    scaled.outputscale = 1.0
    return scaled


class ScaledGreaterThan(GreaterThan):
    """value = s · softplus(raw) + lower_bound, with the scale s a buffer (it follows ``.to()``).

    The lengthscale constraint of rescaled input columns (`default_kernel`): the raw parameter stays
    O(1) whatever the inputs' scale (softplus alone is linear for ℓ ≫ 1, so an optimiser's steps in
    ℓ ~ 1e4 units were 1e4 times too short; a 1e4-wide copy of a problem ran to another optimum).
    """

    def __init__(self, lower_bound: Tensor, scale: Tensor) -> None:
        super().__init__(lower_bound)
        self.register_buffer("scale", torch.as_tensor(scale).clone())

    def transform(self, tensor: Tensor) -> Tensor:
        return self.scale * torch.nn.functional.softplus(tensor) + self.lower_bound

    def inverse_transform(self, transformed_tensor: Tensor) -> Tensor:
        return inv_softplus((transformed_tensor - self.lower_bound) / self.scale)


def input_scale(X: Tensor) -> Tensor:
    """Per column of `n x d` inputs, the factor s_j by which `default_kernel` rescales the lengthscale prior.

    1 for a column in [0, 1] whose spread is at least a tenth of the unit cube's (what BoTorch's
    prior is set for) and for a constant column; else s_j = std(X_j) / std(U[0, 1]) (a column off
    the unit cube, or squeezed into a corner of it, e.g. [0, 1e-4]).
    """
    std = X.std(-2)
    inside = ((X >= 0) & (X <= 1)).all(-2)
    factor = std / UNIT_CUBE_SPREAD
    keep = (inside & (factor >= 0.1)) | ~(std > 0)
    return torch.where(keep, torch.ones_like(factor), factor)


def transformed_constraints(module: Module) -> Module:
    """Replace every untransformed gpytorch bound in ``module`` by the same bound with softplus.

    The constrained values are unchanged; only the raw parameterisation moves, so that gradient
    steps on the raw parameters can no longer leave the feasible set. Modifies ``module`` in place
    and returns it.
    """
    for sub in module.modules():
        for constraint_name, constraint in list(getattr(sub, "_constraints", {}).items()):
            if constraint.enforced:
                continue
            raw_name = constraint_name.removesuffix("_constraint")
            raw = getattr(sub, raw_name)
            value = raw.data.clone()  # an untransformed constraint: the raw parameter is the value
            safe = _with_softplus(constraint).to(raw)
            sub.register_constraint(raw_name, safe, replace=True)
            with torch.no_grad():
                raw.copy_(safe.inverse_transform(_inside(value, safe)))
    return module


def _with_softplus(constraint: Interval) -> Interval:
    lower, upper = constraint.lower_bound, constraint.upper_bound
    if isinstance(constraint, GreaterThan):
        return GreaterThan(lower)
    if isinstance(constraint, LessThan):
        return LessThan(upper)
    return Interval(lower, upper)


def _inside(value: torch.Tensor, constraint: Interval) -> torch.Tensor:
    """``value`` moved strictly inside the bounds (softplus's inverse is −inf at a bound itself)."""
    width = 1e-9 * (1.0 + value.abs())
    return torch.minimum(torch.maximum(value, constraint.lower_bound + width), constraint.upper_bound - width)


__all__ = [
    "LENGTHSCALE_FLOOR",
    "UNIT_CUBE_SPREAD",
    "default_kernel",
    "input_scale",
    "ScaledGreaterThan",
    "singletaskgp_modules",
    "transformed_constraints",
]
