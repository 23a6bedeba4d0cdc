"""Small real classification sets that ship with scikit-learn (no network), a seeded split, and the
class-incremental split of the digits into tasks (`split_digits`, for continual learning)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from gpvi._validation import check_same_dtype, check_tensor

__all__ = ["ContinualTask", "breast_cancer", "digits", "split_digits", "train_test_split"]


class ContinualTask(NamedTuple):
    """One task of a continual-learning sequence (`gpvi.loops.ContinualLearner`): a tuple, so
    ``X, y, task_id, X_test, y_test = task`` unpacks it.

    Attributes:
        X: `n x d` training inputs.
        y: `n x 1` training targets (class labels as floats for a classifier).
        task_id: A name or number of the task (None: its position in the sequence).
        X_test: `t x d` test inputs of the task (None: given to the learner separately).
        y_test: `t x 1` test targets.
    """

    X: Tensor
    y: Tensor
    task_id: object = None
    X_test: Tensor | None = None
    y_test: Tensor | None = None


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


def split_digits(
    num_tasks: int = 5,
    classes_per_task: int = 2,
    test_fraction: float = 0.2,
    seed: int = 0,
    scale: bool = True,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> list[ContinualTask]:
    """The digits (`digits`) split into class-incremental tasks: task t holds the digits
    ``t·c, …, t·c + c − 1`` (c = ``classes_per_task``), labels kept as the digits themselves.

    Split digits is the small stand-in of split MNIST (Chang et al. 2023, the method note's §2.6:
    five tasks {0,1}, {2,3}, …, {8,9}, each split 80/20 into train and test, one softmax over all
    classes seen). Within each task the rows are shuffled by a private generator seeded by ``seed``
    (tasks in order), the first ``round(n·test_fraction)`` rows are the test set and the rest the
    training set, so the split is a function of ``seed`` alone.

    Args:
        num_tasks: Number of tasks T (``T · classes_per_task ≤ 10``).
        classes_per_task: Digits per task.
        test_fraction: Fraction of each task's rows in its test set, in ``(0, 1)``.
        seed: Seed of the shuffles (the global RNG is not touched).
        scale: Inputs are pixel intensities / 16, in ``[0, 1]`` (True), or the raw ``0..16`` counts.
        dtype: Floating dtype of the returned tensors.
        device: Device of the returned tensors.

    Returns:
        T tasks (`ContinualTask`) ``(X, y, task_id, X_test, y_test)``: `n_t x 64` inputs, `n_t x 1` labels
        (floats in ``0..T·c − 1``), ``task_id`` t, and the task's `m_t x 64` / `m_t x 1` test set.
    """
    for name, value in (("num_tasks", num_tasks), ("classes_per_task", classes_per_task)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if num_tasks * classes_per_task > 10:
        raise ValueError(
            f"`num_tasks` x `classes_per_task` must be at most 10 (the digits), got {num_tasks} x {classes_per_task}."
        )
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an int, got {seed!r}.")
    X, Y = digits(dtype=torch.float64)
    if not scale:
        X = X * 16.0
    labels = Y[:, 0].long()
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    tasks = []
    for t in range(num_tasks):
        classes = torch.arange(t * classes_per_task, (t + 1) * classes_per_task)
        rows = torch.nonzero(torch.isin(labels, classes)).squeeze(-1)
        rows = rows[torch.randperm(rows.numel(), generator=generator)]
        n_test = min(max(int(round(rows.numel() * float(test_fraction))), 1), rows.numel() - 1)
        test, train = rows[:n_test], rows[n_test:]
        tasks.append(
            ContinualTask(
                X[train].to(device=device, dtype=dtype),
                Y[train].to(device=device, dtype=dtype),
                t,
                X[test].to(device=device, dtype=dtype),
                Y[test].to(device=device, dtype=dtype),
            )
        )
    return tasks


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
