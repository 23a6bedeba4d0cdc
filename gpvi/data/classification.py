"""Small real classification sets that ship with scikit-learn (no network) and a seeded split."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gpvi._validation import check_same_dtype, check_tensor

__all__ = ["breast_cancer", "digits", "train_test_split"]


def _to_tensor(a: np.ndarray, dtype: torch.dtype, device: torch.device | str | None) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64)).to(device=device, dtype=dtype)


def breast_cancer(
    *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """The Wisconsin diagnostic breast cancer set (569 rows, 30 features).

    Returns:
        ``(X, Y)``: ``X`` `569 x 30` standardised over the whole set (mean 0, population std 1
        per column) and ``Y`` `569 x 1` in ``{0., 1.}`` (sklearn's coding: 0 = malignant,
        1 = benign).
    """
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    std = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return _to_tensor(X, dtype, device), _to_tensor(y.reshape(-1, 1), dtype, device)


def digits(
    *,
    one_vs_rest: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """The 8x8 handwritten digits set (1797 rows, 64 pixel features in ``[0, 1]``).

    Args:
        one_vs_rest: If given (``0..9``), labels become ``1.`` for that digit and ``0.`` otherwise.
        dtype: Floating dtype of the returned tensors.
        device: Device of the returned tensors.

    Returns:
        ``(X, Y)``: ``X`` `1797 x 64` (pixel intensities / 16) and ``Y`` `1797 x 1`, the digit
        labels ``0.``..``9.`` as floats, or ``{0., 1.}`` with ``one_vs_rest``.
    """
    from sklearn.datasets import load_digits

    if one_vs_rest is not None and (
        isinstance(one_vs_rest, bool) or not isinstance(one_vs_rest, (int, np.integer)) or not 0 <= one_vs_rest <= 9
    ):
        raise ValueError(f"`one_vs_rest` must be None or a digit in 0..9, got {one_vs_rest!r}.")
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    if one_vs_rest is not None:
        y = (y == one_vs_rest).astype(np.float64)
    return _to_tensor(X, dtype, device), _to_tensor(y.reshape(-1, 1), dtype, device)


def train_test_split(
    X: Tensor, Y: Tensor, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Randomly split rows into train and test sets with a seeded (private) permutation.

    Args:
        X: `n x d` inputs.
        Y: `n x m` targets or labels (floating point).
        test_fraction: Fraction of rows in the test set, in ``(0, 1)``; the test size is rounded
            and kept in ``1..n-1``.
        seed: Seed of the private ``torch.Generator`` (the global RNG is not touched).

    Returns:
        ``(train_X, train_Y, test_X, test_Y)`` with `(n - t) x d`, `(n - t) x m`, `t x d`, `t x m`.
    """
    X = check_tensor("X", X, ndim=2, min_rows=2, shape_hint="`n x d`")
    Y = check_tensor("Y", Y, ndim=2, min_rows=2, shape_hint="`n x m`")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"`X` has {X.shape[0]} rows but `Y` has {Y.shape[0]}; they must match.")
    check_same_dtype(X=X, Y=Y)
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {seed!r}.")
    n = X.shape[0]
    n_test = min(max(int(round(n * float(test_fraction))), 1), n - 1)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    perm = torch.randperm(n, generator=gen).to(X.device)
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    return X[train_idx], Y[train_idx.to(Y.device)], X[test_idx], Y[test_idx.to(Y.device)]
