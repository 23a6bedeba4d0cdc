"""Pathwise (Matheron) sample paths for gpvi's whitened strategy, registered with BoTorch.

Wilson et al. (2020, 2021), "Efficiently Sampling Functions from Gaussian Process Posteriors" and
"Pathwise Conditioning of Gaussian Processes". For an SVGP with u = μ(Z) + L v, v ~ q(v):

    (f | u)(·) = f_prior(·) + k(·, Z) K⁻¹ (u − f_prior(Z))

The M×M factor comes from the strategy's keyed cache (or is recomputed), so a batched `posterior`
call before drawing paths cannot leave a stale, wrongly shaped factor behind (the failure of
gpytorch's `_cholesky_factor` cache described in the design notes).
"""

from __future__ import annotations

from typing import Any

import torch
from botorch.sampling.pathwise.features import KernelEvaluationMap
from botorch.sampling.pathwise.paths import GeneralizedLinearPath
from botorch.sampling.pathwise.update_strategies import GaussianUpdate
from gpytorch.models import ApproximateGP
from torch import Tensor

from gpvi.variational.svgp import WhitenedSVGPStrategy


@GaussianUpdate.register(ApproximateGP, WhitenedSVGPStrategy)
def _gaussian_update_whitened_svgp(
    model: ApproximateGP,
    strategy: WhitenedSVGPStrategy,
    *,
    sample_values: Tensor,
    target_values: Tensor | None = None,
    noise_covariance: Any = None,
    input_transform: Any = None,
    **_: Any,
) -> GeneralizedLinearPath:
    if noise_covariance is not None:
        raise NotImplementedError("Noisy pathwise updates are not supported for SVGP.")
    Z = strategy.inducing_points
    terms = strategy.whitened_terms()
    L = terms.chol_Kuu.to(sample_values.dtype)
    if target_values is None:
        mean, tril = strategy.whitened_q(terms.chol_Kuu)
        batch_ndim = len(model.covar_module.batch_shape)
        sample_shape = sample_values.shape[: sample_values.ndim - batch_ndim - 1]
        eps = torch.randn(*sample_shape, *mean.shape, dtype=mean.dtype, device=mean.device)
        v = mean + (tril @ eps.unsqueeze(-1)).squeeze(-1)
        target_values = strategy.features.prior_mean(model.mean_module) + (L @ v.unsqueeze(-1)).squeeze(-1)
    weight = torch.cholesky_solve((target_values - sample_values).unsqueeze(-1), L).squeeze(-1)
    feature_map = KernelEvaluationMap(kernel=model.covar_module, points=Z, input_transform=input_transform)
    return GeneralizedLinearPath(feature_map=feature_map, weight=weight)
