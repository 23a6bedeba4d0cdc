"""Minibatches of the training data, each carrying its row indices.

    for batch in minibatches(X, Y, batch_size=1024, seed=0):   # endless shuffled epochs
        model.elbo(batch.X, batch.Y, num_data=N, index=batch.index)

The indices let strategies whose variables are the training latents themselves (a sparse inverse
Cholesky factor over f(X)) pick their rows; the others ignore them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

#: Full-batch training up to this many points; beyond, minibatches of `DEFAULT_BATCH` rows.
FULL_BATCH_MAX = 4096
DEFAULT_BATCH = 1024


@dataclass(frozen=True)
class Batch:
    """Rows ``index`` (B,) of the training data: inputs X (B, d), targets Y in the likelihood's layout (..., B)."""

    index: Tensor
    X: Tensor
    Y: Tensor

    @property
    def size(self) -> int:
        """B, the rows in the batch."""
        return self.index.numel()


def default_batch_size(num_data: int, batch_size: int | None) -> int:
    """B: all data when N <= 4096, else 1024; an explicit size is capped at N (and must be positive)."""
    B = (
        (num_data if num_data <= FULL_BATCH_MAX else DEFAULT_BATCH)
        if batch_size is None
        else min(int(batch_size), num_data)
    )
    if B < 1:
        raise ValueError(f"`batch_size` must be positive, got {batch_size!r}.")
    return B


def minibatches(X: Tensor, Y: Tensor, batch_size: int, *, seed: int = 0) -> Iterator[Batch]:
    """Endless epochs of shuffled batches of ``batch_size`` rows (the last partial batch of an epoch is
    dropped); with ``batch_size`` = N every batch is all the data, in order. Seeded by ``seed``."""
    N = X.shape[-2]
    if batch_size == N:
        full = torch.arange(N, device=X.device)
        while True:
            yield Batch(full, X, Y)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    while True:
        perm = torch.randperm(N, generator=gen).to(X.device)
        for i in range(0, N - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            yield Batch(idx, X[idx], Y[..., idx])


__all__ = ["DEFAULT_BATCH", "FULL_BATCH_MAX", "Batch", "default_batch_size", "minibatches"]
