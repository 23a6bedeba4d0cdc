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

import torch
from botorch.models.utils.gpytorch_modules import (
    get_covar_module_with_dim_scaled_prior,
    get_gaussian_likelihood_with_lognormal_prior,
)
from gpytorch.constraints import GreaterThan, Interval, LessThan
from gpytorch.kernels import Kernel
from gpytorch.likelihoods import GaussianLikelihood
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


__all__ = ["singletaskgp_modules", "transformed_constraints"]
