"""Choosing inducing inputs from data: k-means centres, or greedy variance reduction (pivoted Cholesky).

    Z = select_inducing_points(X, 64, "kmeans", kernel, seed=0)               # initial Z of a model
    idx = greedy_variance_indices(X, 64, kernel, fixed=Z_keep)                # re-selection keeping Z_keep

Greedy variance reduction (Burt, Rasmussen & van der Wilk 2020, "Convergence of Sparse Variational
Inference in Gaussian Processes Regression", JMLR; the fast MAP-DPP recursion of Chen, Zhang & Zhou
2018) picks, one at a time, the point whose prior variance given the points picked so far is the
largest: with pivots p_1..p_k and the partial Cholesky rows c_j (j ≤ k) of K over the pool,

    d_i ← k(x_i, x_i) − Σ_j c_j[i]²,    p_{k+1} = argmax_i d_i,
    c_{k+1} = (k(x_{p_{k+1}}, ·) − Σ_j c_j[p_{k+1}] c_j) / √d_{p_{k+1}}

and stops early when the largest d_i falls below ``epsilon`` (the pool is spanned). It is BoTorch's
`GreedyVarianceReduction` rewritten for two needs BoTorch's does not meet: kernel rows are
evaluated one pivot at a time, so memory is O(N M) instead of the N×N kernel matrix BoTorch forms
(10 GB for N = 36 000), and ``fixed`` points are pivots taken first, whatever their variance (the
memory method re-selects Z on every update while keeping what it must keep). Without ``fixed`` it
selects the same points as BoTorch's (a test checks it). Cost O(N M²) time, O(N M) memory; a pool
of at most `DENSE_POOL_MAX` points has its N×N kernel matrix built in one call instead (a streaming
update's [Z; memory; batch]: one kernel call per pivot cost ~1 ms of gpytorch overhead each).
"""

from __future__ import annotations

import numpy as np
import torch
from gpytorch.kernels import Kernel
from scipy.cluster.vq import kmeans2
from torch import Tensor

from gpvi._validation import check_tensor

MAX_KMEANS_POINTS = 20_000


def select_inducing_points(
    X: Tensor, num_inducing: int, method: str | Tensor, kernel: Kernel, *, seed: int = 0
) -> Tensor:
    """Initial inducing inputs Z (M, D) for data X (N, D).

    Args:
        X: (N, D) inputs in model space.
        num_inducing: M; when M >= N the data themselves are returned (Z = X), and when M is at least
            the number of distinct rows, those rows (duplicates would make Kuu singular).
        method: "kmeans" (k-means++ then Lloyd, on at most 20k rows), "greedy" (greedy variance
            reduction under ``kernel``, `greedy_variance_indices`), or an (M, D) tensor (returned as is).
        kernel: The kernel for "greedy".
        seed: Seed of k-means.
    """
    if isinstance(method, Tensor):
        check_tensor("inducing", method, shape_hint="`M x d`")
        if method.dim() != 2 or method.shape[-1] != X.shape[-1]:
            raise ValueError(
                f"`inducing` must be an `M x d` tensor with d = {X.shape[-1]}, got shape {tuple(method.shape)}."
            )
        return method.to(X)
    if not isinstance(num_inducing, int) or isinstance(num_inducing, bool) or num_inducing < 1:
        raise ValueError(f"`num_inducing` must be a positive int, got {num_inducing!r}.")
    if method not in ("kmeans", "greedy"):
        raise ValueError(f"`inducing` must be 'kmeans', 'greedy' or an `M x d` tensor, got {method!r}.")
    if num_inducing >= X.shape[0]:
        distinct = torch.unique(X.detach(), dim=0)  # duplicated rows would make Kuu singular
        return X.detach().clone() if distinct.shape[0] == X.shape[0] else distinct
    distinct = torch.unique(X.detach(), dim=0)
    if num_inducing >= distinct.shape[0]:
        return distinct
    if method == "kmeans":
        return kmeans_centres(X, num_inducing, seed=seed)
    if method == "greedy":
        return X.detach()[greedy_variance_indices(X, num_inducing, kernel)]
    raise ValueError(f"`inducing` must be 'kmeans', 'greedy' or an `M x d` tensor, got {method!r}.")


def kmeans_centres(X: Tensor, k: int, *, seed: int = 0) -> Tensor:
    """k distinct k-means centres (k-means++ start, 25 Lloyd iterations; on at most 20 000 random rows)."""
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


#: Pools of at most this many points have their kernel matrix built at once (≤ 32 MB in float64).
DENSE_POOL_MAX = 2000


@torch.no_grad()
def greedy_variance_indices(
    X: Tensor, num: int, kernel: Kernel, *, fixed: Tensor | None = None, epsilon: float = 1e-6
) -> Tensor:
    """Pivots of greedy variance reduction (see the module docstring) over the pool [fixed; X].

    Args:
        X: (N, D) candidate inputs.
        num: How many new points to pick (fewer when the pool is spanned first).
        kernel: The kernel (a batched kernel is read at its first batch member, as BoTorch does).
        fixed: (F, D) points kept whatever their variance, pivots 0..F−1 of the pool.
        epsilon: Stop when the largest conditional variance falls below it.

    Returns:
        Long indices (≤ num) into X of the points picked after the fixed ones, in the order picked.
    """
    F = 0 if fixed is None else fixed.shape[-2]
    pool = X.detach() if fixed is None else torch.cat([fixed.detach().to(X), X.detach()], dim=-2)
    n = pool.shape[-2]
    diag = _first_member(kernel(pool, diag=True), n).clone()
    dense = kernel(pool, pool).to_dense().reshape(-1, n, n)[0] if n <= DENSE_POOL_MAX else None
    rows = torch.zeros(F + num, n, dtype=pool.dtype, device=pool.device)
    picked: list[int] = []
    for k in range(F + num):
        if k < F:
            i = k
        else:
            i = int(torch.argmax(diag))
            if k > 0 and diag[i] < epsilon:
                break
            picked.append(i - F)
        row = dense[i] if dense is not None else _first_member(kernel(pool[i : i + 1], pool).to_dense(), n)
        scale = diag[i].clamp_min(epsilon).sqrt() if k < F else diag[i].sqrt()
        rows[k] = (row - rows[:k, i] @ rows[:k]) / scale
        diag -= rows[k].pow(2)
        diag[i] = -torch.inf
    return torch.as_tensor(picked, dtype=torch.long, device=X.device)


def _first_member(values: Tensor, n: int) -> Tensor:
    """The first batch member of a kernel evaluation, flattened to (n,)."""
    return values.reshape(-1, n)[0]


__all__ = ["DENSE_POOL_MAX", "MAX_KMEANS_POINTS", "greedy_variance_indices", "kmeans_centres", "select_inducing_points"]
