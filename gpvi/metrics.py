"""Predictive metrics shared by the demo, the studies and the notebooks."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def rmse_nlpd(mean: Tensor, var: Tensor, y: Tensor) -> tuple[float, float]:
    """(RMSE, mean Gaussian NLPD) of predictive means / variances `n` against targets `y` (`n` or `n x 1`).

    NLPD = mean over points of ½ log(2π v) + (y − μ)² / (2v), with v clamped at 1e-12.
    """
    y = y.reshape(-1).to(mean)
    mean, var = mean.reshape(-1), var.reshape(-1).clamp_min(1e-12)
    if not (mean.shape == var.shape == y.shape):
        raise ValueError(f"`mean`, `var` and `y` must have the same length, got {mean.shape}, {var.shape}, {y.shape}.")
    rmse = (mean - y).pow(2).mean().sqrt()
    nlpd = 0.5 * (torch.log(2 * math.pi * var) + (y - mean).pow(2) / var).mean()
    return float(rmse), float(nlpd)


@torch.no_grad()
def predict(model, X: Tensor, chunk: int = 1024, observation_noise: bool = True) -> tuple[Tensor, Tensor]:
    """Predictive mean and variance (`n` each) of a single-output BoTorch model, in chunks of rows."""
    means, variances = [], []
    for i in range(0, X.shape[0], chunk):
        post = model.posterior(X[i : i + chunk], observation_noise=observation_noise)
        means.append(post.mean.squeeze(-1))
        variances.append(post.variance.squeeze(-1))
    return torch.cat(means), torch.cat(variances)


__all__ = ["predict", "rmse_nlpd"]
