"""The mixture predictive of a new task under a MagmaClust prior: Σ_k w_k N(μ_k, Σ_k) over P points.

Leroy et al. (2023), JMLR, §4: a new task's cluster membership is uncertain, so its predictive is
a Gaussian mixture, one component per cluster, weighted by the task's cluster probabilities τ*_k.
Moments are exact (the mean Σ w_k μ_k; the variance Σ w_k (σ²_k + (μ_k − mean)²)); quantiles by
bisection on the mixture CDF; draws cluster first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gpvi.core.linalg import cholesky


@dataclass
class MixturePrediction:
    """Σ_k w_k N(means_k, covs_k) over P prediction points: latent curves, plus ``noise`` for observations.

    Attributes:
        weights: (K,) cluster probabilities of the task.
        means: (K, P) per-cluster predictive means; covs: (K, P, P) latent covariances.
        noise: the task's noise variance (added by ``observation_noise=True``).
    """

    weights: Tensor
    means: Tensor
    covs: Tensor
    noise: Tensor

    @property
    def mean(self) -> Tensor:
        """Mixture mean Σ_k w_k μ_k, (P,)."""
        return self.weights @ self.means

    def variance(self, observation_noise: bool = True) -> Tensor:
        """Moment-matched variance Σ_k w_k (σ²_k + (μ_k − mean)²) (+ noise), (P,)."""
        var = self.covs.diagonal(dim1=-2, dim2=-1).clamp_min(0)
        out = self.weights @ (var + (self.means - self.mean).pow(2))
        return out + self.noise if observation_noise else out

    def cdf(self, value: Tensor, observation_noise: bool = True) -> Tensor:
        """Mixture CDF at ``value`` (P,) or (S, P) per point."""
        sd = (self.covs.diagonal(dim1=-2, dim2=-1).clamp_min(0) + (self.noise if observation_noise else 0)).sqrt()
        z = (value.unsqueeze(-2) - self.means) / sd.clamp_min(1e-300)
        return (self.weights.unsqueeze(-1) * torch.special.ndtr(z)).sum(-2)

    def quantile(self, q: float, observation_noise: bool = True, iters: int = 80) -> Tensor:
        """Per-point quantile of the mixture (bisection on the CDF), (P,)."""
        sd = (self.covs.diagonal(dim1=-2, dim2=-1).clamp_min(0) + (self.noise if observation_noise else 0)).sqrt()
        lo = (self.means - 10 * sd).min(0).values
        hi = (self.means + 10 * sd).max(0).values
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid, observation_noise) < q
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def sample(self, num: int, *, observation_noise: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Curves drawn cluster first (k ~ w, then f ~ N(μ_k, Σ_k)): (num, P)."""
        k = torch.multinomial(self.weights, num, replacement=True, generator=generator)
        eye = torch.eye(self.covs.shape[-1], dtype=self.covs.dtype, device=self.covs.device)
        chol = cholesky(
            self.covs + 1e-10 * self.covs.diagonal(dim1=-2, dim2=-1).mean() * eye, what="cluster covariance"
        )
        eps = torch.randn(
            num, self.covs.shape[-1], 1, dtype=self.covs.dtype, device=self.covs.device, generator=generator
        )
        draws = self.means[k] + (chol[k] @ eps).squeeze(-1)
        if observation_noise:
            draws = draws + self.noise.sqrt() * torch.randn(draws.shape, dtype=draws.dtype, generator=generator)
        return draws


__all__ = ["MixturePrediction"]
