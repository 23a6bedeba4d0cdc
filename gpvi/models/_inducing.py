"""Choosing initial inducing inputs from data: k-means centres or greedy variance reduction."""

from __future__ import annotations

import numpy as np
import torch
from botorch.models.utils.inducing_point_allocators import GreedyVarianceReduction
from gpytorch.kernels import Kernel
from scipy.cluster.vq import kmeans2
from torch import Tensor

MAX_KMEANS_POINTS = 20_000


def select_inducing_points(
    X: Tensor, num_inducing: int, method: str | Tensor, kernel: Kernel, *, seed: int = 0
) -> Tensor:
    """Initial inducing inputs Z (M, D) for data X (N, D).

    Args:
        method: "kmeans" (k-means++ then Lloyd, on at most 20k rows), "greedy" (BoTorch's
            `GreedyVarianceReduction`, Burt et al. 2020, under ``kernel``), or an (M, D) tensor.
        num_inducing: M; when M >= N the data themselves are returned (Z = X).
    """
    if isinstance(method, Tensor):
        if method.dim() != 2 or method.shape[-1] != X.shape[-1]:
            raise ValueError(
                f"`inducing` must be an `M x d` tensor with d = {X.shape[-1]}, got shape {tuple(method.shape)}."
            )
        return method.to(X)
    if not isinstance(num_inducing, int) or num_inducing < 1:
        raise ValueError(f"`num_inducing` must be a positive int, got {num_inducing!r}.")
    if num_inducing >= X.shape[0]:
        return X.detach().clone()
    if method == "kmeans":
        return _kmeans(X, num_inducing, seed)
    if method == "greedy":
        return GreedyVarianceReduction().allocate_inducing_points(
            X.detach(), kernel, num_inducing, input_batch_shape=torch.Size()
        )
    raise ValueError(f"`inducing` must be 'kmeans', 'greedy' or an `M x d` tensor, got {method!r}.")


def _kmeans(X: Tensor, k: int, seed: int) -> Tensor:
    rng = np.random.default_rng(seed)
    data = X.detach().cpu().numpy()
    if data.shape[0] > MAX_KMEANS_POINTS:
        data = data[rng.choice(data.shape[0], MAX_KMEANS_POINTS, replace=False)]
    centres, _ = kmeans2(data, k, minit="++", seed=rng, iter=25)
    # Empty clusters can leave duplicated centres; replace them with distinct data rows.
    _, first = np.unique(centres.round(12), axis=0, return_index=True)
    if len(first) < k:
        spare = data[rng.choice(data.shape[0], k - len(first), replace=False)]
        centres = np.concatenate([centres[np.sort(first)], spare])
    return torch.as_tensor(centres, dtype=X.dtype, device=X.device)
