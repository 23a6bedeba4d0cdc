"""A MagmaClust prior for a new task as a BoTorch model: a Gaussian-mixture posterior sampled cluster first.

    prior = MagmaClust(past_tasks, 3); prior.fit()              # learned from related tasks
    model = MagmaClustTaskModel(prior, train_X, train_Y)        # the new task's few observations
    model.posterior(X)                                           # MixturePosterior: mean, variance, rsample

The posterior at q points is Σ_k τ*_k N(μ̂_k, Γ̂_k) (see `MagmaClust.predictive`). MC acquisition
functions draw from it with base samples of shape (*b, q + 1, 1): the first normal picks the
cluster (k = F⁻¹(Φ(z)) under τ*), the other q drive that cluster's Gaussian, so with fixed base
samples the draws are deterministic and differentiable in X (BoTorch's `IIDNormalSampler` or
`SobolQMCNormalSampler` supply them). Analytic acquisitions see the moment-matched mean and variance.
"""

from __future__ import annotations

from typing import Any

import torch
from botorch.acquisition.objective import ScalarizedPosteriorTransform
from botorch.models.model import Model
from botorch.posteriors import Posterior
from botorch.sampling.get_sampler import GetSampler
from botorch.sampling.normal import SobolQMCNormalSampler
from torch import Tensor

from gpvi.core.linalg import cholesky
from gpvi.multitask.magma import MagmaClust
from gpvi.multitask.newtask import task_hyperparameters


class MixturePosterior(Posterior):
    """Σ_k w_k N(means_k, covs_k) on q points, batched: weights (K,), means (*b, K, q), covs (*b, K, q, q)."""

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor) -> None:
        self.weights, self.means, self.covs = weights, means, covs

    @property
    def device(self) -> torch.device:
        """The device of the component means."""
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the component means."""
        return self.means.dtype

    @property
    def mean(self) -> Tensor:
        """Σ_k w_k μ_k, `(*b) x q x 1`."""
        return (self.weights.unsqueeze(-1) * self.means).sum(-2).unsqueeze(-1)

    @property
    def variance(self) -> Tensor:
        """Moment-matched Σ_k w_k (σ²_k + (μ_k − mean)²), `(*b) x q x 1`."""
        var = self.covs.diagonal(dim1=-2, dim2=-1)
        spread = (self.means - self.mean.squeeze(-1).unsqueeze(-2)).pow(2)
        return (self.weights.unsqueeze(-1) * (var + spread)).sum(-2).unsqueeze(-1)

    def affine(self, offset: float | Tensor, weight: Tensor) -> MixturePosterior:
        """The law of offset + weight · f: Σ_k w_k N(offset + weight μ_k, weight² Σ_k) (weight: (1,) or scalar)."""
        weight = torch.as_tensor(weight, dtype=self.dtype, device=self.device).reshape(())
        return MixturePosterior(self.weights, offset + weight * self.means, weight.square() * self.covs)

    @property
    def base_sample_shape(self) -> torch.Size:
        """`(*b) x (q + 1) x 1`: one normal draw picks the cluster, q more draw the Gaussian."""
        return torch.Size([*self.means.shape[:-2], self.means.shape[-1] + 1, 1])

    @property
    def batch_range(self) -> tuple[int, int]:
        """The t-batch dimensions of the base samples (all but the last two)."""
        return (0, -2)

    def _extended_shape(self, sample_shape: torch.Size = torch.Size()) -> torch.Size:  # noqa: B008
        return torch.Size([*sample_shape, *self.means.shape[:-2], self.means.shape[-1], 1])

    def rsample_from_base_samples(self, sample_shape: torch.Size, base_samples: Tensor) -> Tensor:
        """Draws (*s, *b, q, 1): cluster from Φ(base[..., 0, 0]) under the weights, Gaussian from the rest."""
        K, q = self.means.shape[-2], self.means.shape[-1]
        cdf = self.weights.cumsum(0)
        u = torch.special.ndtr(base_samples[..., 0, 0])
        k = torch.searchsorted(cdf.contiguous(), u.contiguous()).clamp_max(K - 1)  # (*s, *b)
        eye = torch.eye(q, dtype=self.dtype, device=self.device)
        scale = self.covs.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True).unsqueeze(-1).clamp_min(1e-12)
        chol = cholesky(self.covs + 1e-9 * scale * eye, what="cluster predictive covariance")
        shape = k.shape
        means = self.means.expand(*shape, K, q)
        chols = chol.expand(*shape, K, q, q)
        pick = k.unsqueeze(-1).unsqueeze(-1)
        mean = means.gather(-2, pick.expand(*shape, 1, q)).squeeze(-2)
        root = chols.gather(-3, pick.unsqueeze(-1).expand(*shape, 1, q, q)).squeeze(-3)
        return mean.unsqueeze(-1) + root @ base_samples[..., 1:, :]

    def rsample(self, sample_shape: torch.Size | None = None) -> Tensor:
        """Draws `sample_shape x (*b) x q x 1` from fresh standard-normal base samples."""
        sample_shape = torch.Size() if sample_shape is None else torch.Size(sample_shape)
        base = torch.randn(*sample_shape, *self.base_sample_shape, dtype=self.dtype, device=self.device)
        return self.rsample_from_base_samples(sample_shape, base)


@GetSampler.register(MixturePosterior)
def _get_mixture_sampler(posterior: MixturePosterior, sample_shape: torch.Size, *, seed: int | None = None):
    return SobolQMCNormalSampler(sample_shape=sample_shape, seed=seed)


class MagmaClustTaskModel(Model):
    """A new task under a fitted MagmaClust prior, as a single-output BoTorch `Model`.

    Args:
        prior: A fitted `MagmaClust` (or `Magma`) learned from related tasks, in the same input
            and output units as the new task.
        train_X: `n x d` observations of the new task (may be empty: the prior mixture).
        train_Y: `n x 1` outputs.
        learn_hyperparameters: Learn the new task's kernel and noise by EM (default: when the
            prior's task hyperparameters are task-specific).
    """

    num_outputs = 1

    def __init__(self, prior: MagmaClust, train_X: Tensor, train_Y: Tensor, *, learn_hyperparameters=None) -> None:
        super().__init__()
        if not isinstance(prior, MagmaClust):
            raise TypeError(f"`prior` must be a fitted MagmaClust, got {type(prior).__name__}.")
        if not isinstance(train_X, Tensor) or train_X.dim() != 2:
            raise ValueError(f"`train_X` must be an `n x d` tensor, got {getattr(train_X, 'shape', type(train_X))}.")
        prior.check_points("train_X", train_X, rows="n")
        if not isinstance(train_Y, Tensor) or train_Y.shape != (train_X.shape[0], 1):
            raise ValueError(
                f"`train_Y` must be `n x 1` with n = {train_X.shape[0]} (the rows of `train_X`), "
                f"got {getattr(train_Y, 'shape', type(train_Y))}."
            )
        object.__setattr__(self, "prior", prior)  # not a submodule: its parameters are fixed here
        self.train_inputs = (train_X,)
        self.task = (
            prior.new_task(train_X, train_Y[:, 0], learn_hyperparameters=learn_hyperparameters)
            if (train_X.shape[0] > 0)
            else None
        )

    @property
    def batch_shape(self) -> torch.Size:
        """Empty: the model is not batched."""
        return torch.Size()

    @property
    def weights(self) -> Tensor:
        """τ*_k, the new task's cluster probabilities (K,)."""
        return self.task.weights if self.task is not None else self.prior.mixture_weights

    def posterior(
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | Tensor = False,
        posterior_transform: Any = None,
        **kwargs: Any,
    ) -> MixturePosterior:
        """The mixture posterior at `(*b) x q x d` inputs (latent; with noise if ``observation_noise``)."""
        if output_indices not in (None, [0]):
            raise ValueError("MagmaClustTaskModel has a single output.")
        if X.dim() < 2 or X.shape[-1] != self.prior.input_dim:
            raise ValueError(f"`X` must be `(*b) x q x d` with d = {self.prior.input_dim}, got shape {tuple(X.shape)}.")
        means, covs = self.prior.predictive(self.task, X)
        if observation_noise is not False:
            noise = self.task.noise if self.task is not None else task_hyperparameters(self.prior)[1].detach()
            covs = covs + noise * torch.eye(covs.shape[-1], dtype=covs.dtype, device=covs.device)
        posterior = MixturePosterior(self.weights, means, covs)
        if isinstance(posterior_transform, ScalarizedPosteriorTransform):  # e.g. a minimisation's -f
            if posterior_transform.weights.numel() != 1:
                raise ValueError("`posterior_transform` must have one weight: MagmaClustTaskModel has one output.")
            return posterior.affine(posterior_transform.offset, posterior_transform.weights)
        return posterior_transform(posterior) if posterior_transform is not None else posterior


__all__ = ["MagmaClustTaskModel", "MixturePosterior"]
