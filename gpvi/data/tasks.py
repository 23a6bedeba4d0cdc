"""Many tasks as one padded batch: what multi-task models compute on.

    batch = pad_tasks(*task_lists(tasks))        # tasks: [(X_i, y_i), ...] or a MultiTaskData
    batch.X (M, N_max, d), batch.y (M, N_max), batch.mask, batch.index (into batch.grid)

Task i is observed at its own N_i inputs; the union grid holds every distinct input of every task
(N points), and ``index`` locates each task's inputs on it, so that per-task blocks can be
scattered into grid-sized matrices with `index_add_`. Inputs are rounded to 6 significant digits
before they are compared, so that equal inputs of different tasks merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

ROUND_DIGITS = 6


def task_lists(tasks: Any) -> tuple[list[Tensor], list[Tensor]]:
    """A list of (X_i, y_i) pairs, or any object with ``inputs``/``outputs`` lists -> two checked lists.

    X_i may be `N_i` (one input column) or `N_i x d`; y_i `N_i` or `N_i x 1`. Each task must be
    non-empty, finite and floating point, and all tasks must share d.
    """
    if hasattr(tasks, "inputs") and hasattr(tasks, "outputs"):
        inputs, outputs = list(tasks.inputs), list(tasks.outputs)
    else:
        if not isinstance(tasks, (list, tuple)) or not tasks:
            raise TypeError("`tasks` must be a non-empty list of (X_i, y_i) pairs or a MultiTaskData.")
        inputs, outputs = [t[0] for t in tasks], [t[1] for t in tasks]
    checked_X, checked_y = [], []
    for i, (X, y) in enumerate(zip(inputs, outputs, strict=True)):
        if not isinstance(X, Tensor) or not isinstance(y, Tensor):
            raise TypeError(f"task {i}: inputs and outputs must be tensors.")
        X = X.unsqueeze(-1) if X.dim() == 1 else X
        y = y.reshape(-1) if y.dim() == 2 and y.shape[-1] == 1 else y
        if X.dim() != 2 or y.dim() != 1 or X.shape[0] != y.shape[0]:
            raise ValueError(f"task {i}: expected X `N_i x d` and y `N_i`, got {tuple(X.shape)} and {tuple(y.shape)}.")
        if X.shape[0] == 0:
            raise ValueError(f"task {i} has no points.")
        if not (torch.isfinite(X).all() and torch.isfinite(y).all()):
            raise ValueError(f"task {i} contains NaN or inf.")
        if not X.is_floating_point() or not y.is_floating_point():
            raise TypeError(f"task {i}: inputs and outputs must be floating point.")
        checked_X.append(X)
        checked_y.append(y.to(X))
    d = checked_X[0].shape[-1]
    if any(X.shape[-1] != d for X in checked_X):
        raise ValueError("all tasks must have inputs with the same number of columns d.")
    return checked_X, checked_y


def round_inputs(X: Tensor) -> Tensor:
    """Inputs rounded to 6 significant digits, so that equal inputs of different tasks merge."""
    scale = 10.0 ** (ROUND_DIGITS - 1 - torch.floor(torch.log10(X.abs().clamp_min(1e-300))))
    return torch.where(X == 0, X, torch.round(X * scale) / scale)


@dataclass
class TaskBatch:
    """Tasks padded to (M, N_max): inputs X (M, N_max, d), y (M, N_max), mask, index into the grid."""

    X: Tensor
    y: Tensor
    mask: Tensor  # (M, N_max) bool
    index: Tensor  # (M, N_max) long, 0 in the padding
    grid: Tensor  # (N, d) union grid

    @property
    def num_tasks(self) -> int:
        """M, the number of tasks."""
        return self.X.shape[0]

    @property
    def outer_mask(self) -> Tensor:
        """(M, N_max, N_max): 1 where both the row and the column are observed, 0 in the padding."""
        m = self.mask.to(self.X.dtype)
        return m.unsqueeze(-1) * m.unsqueeze(-2)

    def scatter(self, weights: Tensor, blocks: Tensor) -> Tensor:
        """Σ_i w_ki P_iᵀ B_i P_i for weights (K, M) and padded blocks (M, n, n) -> (K, N, N)."""
        N = self.grid.shape[0]
        idx = self.index
        flat = (idx.unsqueeze(-1) * N + idx.unsqueeze(-2)).reshape(-1)
        values = (weights.unsqueeze(-1).unsqueeze(-1) * (blocks * self.outer_mask)).reshape(weights.shape[0], -1)
        out = torch.zeros(weights.shape[0], N * N, dtype=blocks.dtype, device=blocks.device)
        return out.index_add_(1, flat, values).reshape(-1, N, N)

    def scatter_vec(self, weights: Tensor, vecs: Tensor) -> Tensor:
        """Σ_i w_ki P_iᵀ v_(k)i for weights (K, M) and padded vectors (M, n) or (K, M, n) -> (K, N)."""
        N = self.grid.shape[0]
        values = (weights.unsqueeze(-1) * (vecs * self.mask)).reshape(weights.shape[0], -1)
        out = torch.zeros(weights.shape[0], N, dtype=vecs.dtype, device=vecs.device)
        return out.index_add_(1, self.index.reshape(-1), values)


def pad_tasks(inputs: list[Tensor], outputs: list[Tensor], grid: Tensor | None = None) -> TaskBatch:
    """Pad the tasks and locate their inputs on the union grid (built from them when not given)."""
    rounded = [round_inputs(X) for X in inputs]
    for i, X in enumerate(rounded):
        if torch.unique(X, dim=0).shape[0] != X.shape[0]:
            raise ValueError(f"task {i} has duplicated inputs (after rounding to {ROUND_DIGITS} significant digits).")
    allX = torch.cat(rounded)
    if grid is None:
        grid, inverse = torch.unique(allX, dim=0, return_inverse=True)
    else:
        both, inverse_all = torch.unique(torch.cat([round_inputs(grid), allX]), dim=0, return_inverse=True)
        if both.shape[0] != grid.shape[0]:
            raise ValueError("`grid` must contain every task input.")
        order = torch.empty(grid.shape[0], dtype=torch.long, device=grid.device)
        order[inverse_all[: grid.shape[0]]] = torch.arange(grid.shape[0], device=grid.device)
        inverse = order[inverse_all[grid.shape[0] :]]
    sizes = [X.shape[0] for X in inputs]
    M, n_max, d = len(inputs), max(sizes), inputs[0].shape[-1]
    like = inputs[0]
    X = torch.zeros(M, n_max, d, dtype=like.dtype, device=like.device)
    y = torch.zeros(M, n_max, dtype=like.dtype, device=like.device)
    mask = torch.zeros(M, n_max, dtype=torch.bool, device=like.device)
    index = torch.zeros(M, n_max, dtype=torch.long, device=like.device)
    for i, (idx, n) in enumerate(zip(inverse.split(sizes), sizes, strict=True)):
        X[i, :n], y[i, :n], mask[i, :n], index[i, :n] = grid[idx], outputs[i], True, idx
    return TaskBatch(X, y, mask, index, grid)


__all__ = ["ROUND_DIGITS", "TaskBatch", "pad_tasks", "round_inputs", "task_lists"]
