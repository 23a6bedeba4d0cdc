"""Multi-task functional data: many noisy curves, each observed on its own set of inputs.

:class:`MultiTaskData` holds one `N_i x d` input tensor and one `N_i` output vector per task
(task = curve = individual), optionally with the true cluster label of each task and the true
cluster mean curves on a simulation grid. Two sources:

* :func:`simulate`: the MagmaClust simulation design (Leroy et al., JMLR 2023): tasks drawn from a
  mixture of GPs whose cluster mean processes are themselves GP draws around random lines.
* :func:`fertility`: the World Bank total fertility rate, one curve per country, 1960-2013, with
  missing years (irregular grids). The csv is found from the ``root`` argument, the
  ``GPVI_DATA_DIR`` environment variable (the shared data folder that contains ``fertility/``, or
  the ``fertility`` folder itself), and finally ``../shared/data/fertility`` relative to the
  repository root.

Example::

    from gpvi.data import multitask
    data = multitask.simulate(num_tasks=60, num_clusters=3, seed=0)
    train, test = data.split_tasks(test_fraction=0.4, seed=0)
    observed, held_out = test.split_points(20)  # first 20 points observed, the rest forecast
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gpvi.data.tasks import TaskBatch, pad_tasks
from gpvi.data.uci import ENV_VAR

__all__ = ["FERTILITY_AGGREGATES", "MultiTaskData", "default_fertility_root", "fertility", "simulate"]

_FERTILITY_FILE = "fertility.csv"

# World Bank aggregate rows (regions, income groups, lending groups, ...) by country code. Of these,
# the shipped fertility.csv (statsmodels' copy, 219 rows) holds only CAA ("Sub-Saharan Africa (IFC
# classification)"), LCN ("Latin America & Caribbean (all income levels)"), OED ("OECD members"),
# OSS ("Other small states") and PSS ("Pacific island small states"); the rest are the standard WDI
# aggregate codes, listed so that a newer or fuller copy of the series is cleaned the same way.
FERTILITY_AGGREGATES: frozenset[str] = frozenset(
    {
        # present in the shipped file
        "CAA", "LCN", "OED", "OSS", "PSS",
        # world, income and lending groups
        "WLD", "HIC", "NOC", "OEC", "LIC", "LMC", "LMY", "MIC", "UMC", "INX",
        "IBD", "IBT", "IDA", "IDB", "IDX", "HPC", "LDC", "FCS",
        "EAR", "LTE", "PRE", "PST",
        # regions
        "ARB", "CEB", "EAP", "EAS", "ECA", "ECS", "EMU", "EUU", "LAC", "MEA", "MNA", "NAC",
        "SAS", "SSA", "SSF", "TEA", "TEC", "TLA", "TMN", "TSA", "TSS",
        # small-states groups
        "CSS", "SST",
    }
)  # fmt: skip


# ---------------------------------------------------------------------------- container


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(eq=False, repr=False)
class MultiTaskData:
    """A collection of ``M`` tasks (curves), task ``i`` observed at ``N_i`` inputs.

    Attributes:
        inputs: ``M`` tensors, each `N_i x d` (floating point; float64 from the loaders here).
        outputs: ``M`` tensors, each `N_i`, same dtype as the matching input.
        labels: `M` long, the true cluster index of each task (simulations), or None.
        names: ``M`` task names (e.g. countries), or None.
        grid: `G x d` simulation grid, or None.
        mean_curves: `K x G` true cluster mean processes evaluated on ``grid``, or None.

    Every task must be non-empty, finite, free of duplicated input rows, and share ``d``.
    The one exception: the held-out half returned by :meth:`split_points` is built with the
    private flag ``_allow_empty=True``, which lets a task have ``N_i = 0`` (inputs `0 x d`) when
    all of its points were kept as observed. Do not pass that flag yourself.
    """

    inputs: list[Tensor]
    outputs: list[Tensor]
    labels: Tensor | None = None
    names: list[str] | None = None
    grid: Tensor | None = None
    mean_curves: Tensor | None = None
    _allow_empty: bool = field(default=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, (list, tuple)) or not isinstance(self.outputs, (list, tuple)):
            raise TypeError(
                "`inputs` and `outputs` must be lists of tensors (one `N_i x d` / `N_i` pair per task), "
                f"got {type(self.inputs).__name__} and {type(self.outputs).__name__}."
            )
        self.inputs, self.outputs = list(self.inputs), list(self.outputs)
        if len(self.inputs) != len(self.outputs):
            raise ValueError(
                f"`inputs` has {len(self.inputs)} tasks but `outputs` has {len(self.outputs)}; they must match."
            )
        if len(self.inputs) == 0:
            raise ValueError("`inputs` is empty: a MultiTaskData needs at least one task.")
        dim = None
        for i, (x, y) in enumerate(zip(self.inputs, self.outputs, strict=True)):
            if not isinstance(x, Tensor) or not isinstance(y, Tensor):
                raise TypeError(
                    f"Task {i}: `inputs[{i}]` and `outputs[{i}]` must be torch.Tensors, "
                    f"got {type(x).__name__} and {type(y).__name__}."
                )
            if not x.is_floating_point() or not y.is_floating_point():
                raise TypeError(
                    f"Task {i}: `inputs[{i}]` and `outputs[{i}]` must be floating-point tensors "
                    f"(float64 recommended), got {x.dtype} and {y.dtype}."
                )
            if x.dtype != y.dtype:
                raise TypeError(f"Task {i}: `inputs[{i}]` is {x.dtype} but `outputs[{i}]` is {y.dtype}.")
            if x.dim() != 2:
                raise ValueError(
                    f"Task {i}: `inputs[{i}]` must be 2-D of shape `N_i x d`, got shape {tuple(x.shape)} "
                    "(use `x.unsqueeze(-1)` for 1-D inputs)."
                )
            if y.dim() != 1:
                raise ValueError(f"Task {i}: `outputs[{i}]` must be 1-D of shape `N_i`, got shape {tuple(y.shape)}.")
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"Task {i}: `inputs[{i}]` has {x.shape[0]} rows but `outputs[{i}]` has {y.shape[0]} entries."
                )
            if x.shape[0] == 0 and not self._allow_empty:
                raise ValueError(f"Task {i} is empty: `inputs[{i}]` has no rows; drop the task first.")
            if dim is None:
                dim = x.shape[1]
            elif x.shape[1] != dim:
                raise ValueError(f"Task {i}: `inputs[{i}]` has d={x.shape[1]} input columns but task 0 has d={dim}.")
            if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
                raise ValueError(f"Task {i} contains NaN or inf values in `inputs[{i}]` or `outputs[{i}]`.")
            if x.shape[0] > 1 and torch.unique(x, dim=0).shape[0] < x.shape[0]:
                raise ValueError(
                    f"Task {i}: `inputs[{i}]` has duplicated input rows; average or drop repeated inputs first."
                )
        if dim == 0:
            raise ValueError("`inputs` have d=0 columns; each must be `N_i x d` with d >= 1.")
        M = len(self.inputs)
        if self.labels is not None:
            if not isinstance(self.labels, Tensor) or self.labels.dtype != torch.long:
                raise TypeError(f"`labels` must be a long tensor of shape `M`, got {self.labels!r}.")
            if self.labels.shape != (M,):
                raise ValueError(f"`labels` must have shape ({M},) (one per task), got {tuple(self.labels.shape)}.")
            if M and int(self.labels.min()) < 0:
                raise ValueError("`labels` must be non-negative cluster indices.")
        if self.names is not None:
            self.names = [str(n) for n in self.names]
            if len(self.names) != M:
                raise ValueError(f"`names` has {len(self.names)} entries but there are {M} tasks.")
        if self.grid is not None:
            if not isinstance(self.grid, Tensor) or not self.grid.is_floating_point() or self.grid.dim() != 2:
                raise ValueError("`grid` must be a 2-D floating tensor of shape `G x d`.")
            if self.grid.shape[1] != dim:
                raise ValueError(f"`grid` has d={self.grid.shape[1]} columns but the inputs have d={dim}.")
        if self.mean_curves is not None:
            if self.grid is None:
                raise ValueError("`mean_curves` (`K x G`) needs `grid` (`G x d`) to be given too.")
            if not isinstance(self.mean_curves, Tensor) or self.mean_curves.dim() != 2:
                raise ValueError("`mean_curves` must be a 2-D tensor of shape `K x G`.")
            if self.mean_curves.shape[1] != self.grid.shape[0]:
                raise ValueError(
                    f"`mean_curves` has {self.mean_curves.shape[1]} columns but `grid` has "
                    f"{self.grid.shape[0]} rows; shape must be `K x G`."
                )
            if self.labels is not None and int(self.labels.max()) >= self.mean_curves.shape[0]:
                raise ValueError(
                    f"`labels` go up to {int(self.labels.max())} but `mean_curves` has only "
                    f"{self.mean_curves.shape[0]} clusters."
                )

    # ------------------------------------------------------------------ basic properties

    @property
    def num_tasks(self) -> int:
        """Number of tasks ``M``."""
        return len(self.inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def dim(self) -> int:
        """Number of input dimensions ``d``."""
        return self.inputs[0].shape[1]

    @property
    def num_points(self) -> list[int]:
        """``[N_1, ..., N_M]``."""
        return [x.shape[0] for x in self.inputs]

    def __repr__(self) -> str:
        n = self.num_points
        k = None if self.mean_curves is None else self.mean_curves.shape[0]
        return (
            f"MultiTaskData(num_tasks={self.num_tasks}, d={self.dim}, points={sum(n)} "
            f"(min {min(n)}, max {max(n)} per task), labels={self.labels is not None}, clusters={k}, "
            f"dtype={self.inputs[0].dtype})"
        )

    # ------------------------------------------------------------------ long format

    def padded(self, grid: Tensor | None = None) -> TaskBatch:
        """The tasks as one padded batch on their union grid (`gpvi.data.tasks.pad_tasks`)."""
        return pad_tasks(self.inputs, self.outputs, grid)

    def to_long(self) -> tuple[Tensor, Tensor, Tensor]:
        """Stack all tasks.

        Returns:
            ``(X, y, task_ids)``: `(sum N_i) x d` inputs, `sum N_i` outputs and `sum N_i` long
            task indices in ``0..M-1`` (rows of task ``i`` are contiguous, in task order).
        """
        X = torch.cat(self.inputs, dim=0)
        y = torch.cat(self.outputs, dim=0)
        counts = torch.tensor(self.num_points, dtype=torch.long, device=X.device)
        task_ids = torch.repeat_interleave(torch.arange(self.num_tasks, device=X.device), counts)
        return X, y, task_ids

    @classmethod
    def from_long(cls, X: Tensor, y: Tensor, task_ids: Tensor, names: Sequence[str] | None = None) -> MultiTaskData:
        """Group long-format rows by task id.

        Args:
            X: `n x d` inputs.
            y: `n` outputs.
            task_ids: `n` integer task ids (any values); tasks are ordered by first appearance, and
                rows keep their relative order within a task.
            names: Optional names, one per distinct task id, in first-appearance order.

        Returns:
            A :class:`MultiTaskData` with one task per distinct id.
        """
        if not isinstance(X, Tensor) or X.dim() != 2:
            raise ValueError(f"`X` must be a 2-D tensor of shape `n x d`, got {getattr(X, 'shape', X)!r}.")
        if not isinstance(y, Tensor) or y.dim() != 1:
            raise ValueError(f"`y` must be a 1-D tensor of shape `n`, got {getattr(y, 'shape', y)!r}.")
        if not isinstance(task_ids, Tensor) or task_ids.dim() != 1:
            raise ValueError("`task_ids` must be a 1-D integer tensor of shape `n`.")
        if task_ids.is_floating_point() or task_ids.is_complex() or task_ids.dtype == torch.bool:
            raise TypeError(f"`task_ids` must be an integer tensor, got dtype {task_ids.dtype}.")
        n = X.shape[0]
        if y.shape[0] != n or task_ids.shape[0] != n:
            raise ValueError(
                f"`X` has {n} rows, `y` has {y.shape[0]} and `task_ids` has {task_ids.shape[0]}; they must match."
            )
        if n == 0:
            raise ValueError("`X` is empty: got 0 rows.")
        ids = task_ids.to(device=X.device, dtype=torch.long)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        pos = torch.arange(n, device=X.device)
        first = torch.full((uniq.shape[0],), n, dtype=torch.long, device=X.device)
        first = first.scatter_reduce(0, inverse, pos, reduce="amin")
        rank = torch.empty_like(first)
        rank[torch.argsort(first)] = torch.arange(uniq.shape[0], device=X.device)
        task_rank = rank[inverse]  # task index (first-appearance order) of every row
        perm = torch.argsort(task_rank, stable=True)
        counts = torch.bincount(task_rank, minlength=uniq.shape[0]).tolist()
        inputs = list(torch.split(X[perm], counts))
        outputs = list(torch.split(y[perm], counts))
        return cls(inputs, outputs, names=None if names is None else list(names))

    # ------------------------------------------------------------------ splits

    def subset(self, indices: Sequence[int] | Tensor) -> MultiTaskData:
        """The tasks at ``indices`` (in that order), keeping labels, names, grid and mean curves."""
        if isinstance(indices, Tensor):
            if indices.is_floating_point() or indices.dim() != 1:
                raise TypeError("`indices` must be a 1-D integer tensor or a sequence of ints.")
            idx = [int(i) for i in indices.tolist()]
        else:
            idx = list(indices)
            if not all(_is_int(i) for i in idx):
                raise TypeError(f"`indices` must be ints, got {indices!r}.")
            idx = [int(i) for i in idx]
        if not idx:
            raise ValueError("`indices` is empty; a subset needs at least one task.")
        M = self.num_tasks
        bad = [i for i in idx if not 0 <= i < M]
        if bad:
            raise ValueError(f"`indices` must be in 0..{M - 1}, got {bad[:5]}.")
        return MultiTaskData(
            [self.inputs[i] for i in idx],
            [self.outputs[i] for i in idx],
            labels=None if self.labels is None else self.labels[torch.tensor(idx, device=self.labels.device)],
            names=None if self.names is None else [self.names[i] for i in idx],
            grid=self.grid,
            mean_curves=self.mean_curves,
            _allow_empty=self._allow_empty,
        )

    def split_tasks(self, test_fraction: float = 0.4, seed: int = 0) -> tuple[MultiTaskData, MultiTaskData]:
        """Randomly split the tasks into train and test tasks (seeded, private generator).

        Args:
            test_fraction: Fraction of tasks in the test part, in ``(0, 1)``; the count is rounded
                and kept in ``1..M-1``.
            seed: Seed of the private ``torch.Generator``.

        Returns:
            ``(train, test)``; each keeps the original task order.
        """
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
            raise TypeError(f"`test_fraction` must be a float in (0, 1), got {test_fraction!r}.")
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction!r}.")
        if not _is_int(seed):
            raise TypeError(f"`seed` must be an int, got {seed!r}.")
        M = self.num_tasks
        if M < 2:
            raise ValueError(f"`split_tasks` needs at least 2 tasks, got {M}.")
        n_test = min(max(int(math.floor(M * float(test_fraction) + 0.5)), 1), M - 1)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        perm = torch.randperm(M, generator=gen)
        test_idx = sorted(perm[:n_test].tolist())
        train_idx = sorted(perm[n_test:].tolist())
        return self.subset(train_idx), self.subset(test_idx)

    def split_points(self, num_observed: int | float) -> tuple[MultiTaskData, MultiTaskData]:
        """Forecasting split: observe the first points of every task (by first input), hold out the rest.

        Args:
            num_observed: An int ``>= 1``: the number of points kept per task; or a float in
                ``(0, 1]``: the fraction of each task's points kept (rounded, at least 1).

        Returns:
            ``(observed, held_out)``, both with points sorted by the first input coordinate. A task
            with no more than ``num_observed`` points is observed entirely and has an empty
            held-out part (`0 x d`); only ``held_out`` may contain such empty tasks.
        """
        if isinstance(num_observed, bool) or not isinstance(num_observed, (int, np.integer, float)):
            raise TypeError(f"`num_observed` must be an int >= 1 or a float in (0, 1], got {num_observed!r}.")
        if _is_int(num_observed):
            if num_observed < 1:
                raise ValueError(f"`num_observed` must be >= 1 when an int, got {num_observed}.")
            keep = [min(int(num_observed), n) for n in self.num_points]
        else:
            frac = float(num_observed)
            if not 0.0 < frac <= 1.0:
                raise ValueError(f"`num_observed` must be in (0, 1] when a float, got {num_observed}.")
            keep = [min(max(int(math.floor(frac * n + 0.5)), 1), n) for n in self.num_points]
        obs_x, obs_y, out_x, out_y = [], [], [], []
        for x, y, k in zip(self.inputs, self.outputs, keep, strict=True):
            order = torch.argsort(x[:, 0], stable=True)
            xs, ys = x[order], y[order]
            obs_x.append(xs[:k])
            obs_y.append(ys[:k])
            out_x.append(xs[k:])
            out_y.append(ys[k:])
        common = dict(labels=self.labels, names=self.names, grid=self.grid, mean_curves=self.mean_curves)
        observed = MultiTaskData(obs_x, obs_y, **common, _allow_empty=self._allow_empty)
        held_out = MultiTaskData(out_x, out_y, **common, _allow_empty=True)
        return observed, held_out


# ---------------------------------------------------------------------------- simulation


def _se_kernel(x1: Tensor, x2: Tensor, variance: Tensor, lengthscale_sq: Tensor) -> Tensor:
    """``v exp(-|x - x'|^2 / (2 l^2))`` for `... x n x d` and `... x m x d` inputs; v, l^2 of shape `...`."""
    sq = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).pow(2).sum(-1)
    return variance[..., None, None] * torch.exp(-sq / (2.0 * lengthscale_sq[..., None, None]))


def _cholesky(K: Tensor, variance: Tensor) -> Tensor:
    """Batched Cholesky of ``K + 1e-8 v I``, raising the jitter tenfold (up to 1e-4 v) if needed."""
    eye = torch.eye(K.shape[-1], dtype=K.dtype, device=K.device)
    for rel in (1e-8, 1e-7, 1e-6, 1e-5, 1e-4):
        L, info = torch.linalg.cholesky_ex(K + rel * variance[..., None, None] * eye)
        if not bool((info > 0).any()):
            return L
    raise RuntimeError("Cholesky of the simulation kernel failed even with jitter 1e-4 * variance.")


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


def simulate(
    num_tasks: int = 60,
    num_clusters: int = 3,
    num_points: int = 30,
    *,
    common_grid: bool = True,
    shared_mean_hp: bool = True,
    shared_task_hp: bool = True,
    grid: Tensor | None = None,
    noise_sd_range: tuple[float, float] = (0.0, 0.5),
    seed: int = 0,
) -> MultiTaskData:
    """Draw tasks from a mixture of GPs, following the MagmaClust simulations (Leroy et al., JMLR 2023).

    Generative model, with ``G`` the grid (default ``linspace(0, 10, 201)`` as `201 x 1`):

    * labels: task ``i`` gets cluster ``i % K`` (equal proportions), then labels are shuffled;
    * cluster ``k``: prior mean line ``m_k(t) = a^T t + b``, ``a ~ U(-2, 2)^d``, ``b ~ U(20, 30)``;
      SE kernel ``v exp(-|t - t'|^2 / (2 l^2))`` with ``log v ~ U(0, 3)``, ``log l^2 ~ U(0, 1)``
      (one draw for all clusters if ``shared_mean_hp``, else one per cluster); mean process
      ``mu_k ~ GP(m_k, SE)`` drawn on ``G`` (Cholesky with jitter ``1e-8 v``);
    * task ``i``: ``f_i ~ GP(0, SE)`` with ``log v ~ U(0, 2)``, ``log l^2 ~ U(0, 1)`` and noise sd
      ``~ U(noise_sd_range)`` (one draw for all tasks if ``shared_task_hp``, else one per task);
      ``num_points`` distinct grid points (one random subset for all tasks if ``common_grid``, else
      one per task), sorted; ``y_i = mu_k(t_i) + f_i(t_i) + N(0, sd^2)``.

    All randomness comes from a private ``torch.Generator`` seeded with ``seed``.

    Returns:
        A :class:`MultiTaskData` (float64) with ``M`` tasks of `num_points x d` inputs, ``labels``
        (`M`), ``grid`` (`G x d`) and ``mean_curves`` (`K x G`, the drawn ``mu_k`` on the grid).
    """
    for name, value in (("num_tasks", num_tasks), ("num_clusters", num_clusters), ("num_points", num_points)):
        if not _is_int(value):
            raise TypeError(f"`{name}` must be an int, got {value!r}.")
    for name, value in (
        ("common_grid", common_grid),
        ("shared_mean_hp", shared_mean_hp),
        ("shared_task_hp", shared_task_hp),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"`{name}` must be a bool, got {value!r}.")
    if not _is_int(seed):
        raise TypeError(f"`seed` must be an int, got {seed!r}.")
    if num_clusters < 1:
        raise ValueError(f"`num_clusters` must be >= 1, got {num_clusters}.")
    if num_tasks < num_clusters:
        raise ValueError(f"`num_tasks` ({num_tasks}) must be >= `num_clusters` ({num_clusters}).")
    if num_points < 1:
        raise ValueError(f"`num_points` must be >= 1, got {num_points}.")
    if grid is None:
        grid = torch.linspace(0.0, 10.0, 201, dtype=torch.float64).unsqueeze(-1)
    else:
        if not isinstance(grid, Tensor) or not grid.is_floating_point():
            raise TypeError(f"`grid` must be a floating-point tensor of shape `G x d`, got {grid!r}.")
        if grid.dim() != 2 or grid.shape[0] == 0 or grid.shape[1] == 0:
            raise ValueError(f"`grid` must be a non-empty 2-D tensor of shape `G x d`, got {tuple(grid.shape)}.")
        if not torch.isfinite(grid).all():
            raise ValueError("`grid` contains NaN or inf entries.")
        grid = grid.detach().to(device="cpu", dtype=torch.float64)
        if torch.unique(grid, dim=0).shape[0] < grid.shape[0]:
            raise ValueError("`grid` has duplicated rows; its points must be distinct.")
    G, d = grid.shape
    if num_points > G:
        raise ValueError(f"`num_points` ({num_points}) must be <= the number of grid points G={G}.")
    try:
        lo, hi = (float(v) for v in noise_sd_range)
    except (TypeError, ValueError):
        raise TypeError(f"`noise_sd_range` must be a pair of floats (low, high), got {noise_sd_range!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo <= hi):
        raise ValueError(f"`noise_sd_range` must satisfy 0 <= low <= high < inf, got {noise_sd_range!r}.")

    M, K, N = num_tasks, num_clusters, num_points
    gen = torch.Generator(device="cpu").manual_seed(seed)

    # cluster labels, equal proportions, shuffled
    labels = (torch.arange(M) % K)[torch.randperm(M, generator=gen)]

    # cluster mean processes on the grid
    slope = _uniform(gen, (K, d), -2.0, 2.0)
    intercept = _uniform(gen, (K,), 20.0, 30.0)
    n_hp = 1 if shared_mean_hp else K
    mean_var = torch.exp(_uniform(gen, (n_hp,), 0.0, 3.0)).expand(K)
    mean_ls2 = torch.exp(_uniform(gen, (n_hp,), 0.0, 1.0)).expand(K)
    L_mean = _cholesky(_se_kernel(grid, grid, mean_var, mean_ls2), mean_var)  # K x G x G
    z = torch.randn((K, G, 1), generator=gen, dtype=torch.float64)
    mean_curves = grid @ slope.T + intercept  # G x K
    mean_curves = mean_curves.T + (L_mean @ z).squeeze(-1)  # K x G

    # observation points (indices into the grid), sorted
    if common_grid:
        idx = torch.randperm(G, generator=gen)[:N].sort().values.expand(M, N)
    else:
        idx = torch.rand((M, G), generator=gen, dtype=torch.float64).argsort(dim=1)[:, :N].sort(dim=1).values
    t = grid[idx]  # M x N x d

    # task-specific processes and noise
    n_hp = 1 if shared_task_hp else M
    task_var = torch.exp(_uniform(gen, (n_hp,), 0.0, 2.0)).expand(M)
    task_ls2 = torch.exp(_uniform(gen, (n_hp,), 0.0, 1.0)).expand(M)
    noise_sd = _uniform(gen, (n_hp,), lo, hi).expand(M)
    L_task = _cholesky(_se_kernel(t, t, task_var, task_ls2), task_var)  # M x N x N
    f = (L_task @ torch.randn((M, N, 1), generator=gen, dtype=torch.float64)).squeeze(-1)
    eps = torch.randn((M, N), generator=gen, dtype=torch.float64)
    y = mean_curves[labels.unsqueeze(-1), idx] + f + noise_sd.unsqueeze(-1) * eps  # M x N

    return MultiTaskData(
        inputs=[t[i].clone() for i in range(M)],
        outputs=[y[i].clone() for i in range(M)],
        labels=labels,
        grid=grid,
        mean_curves=mean_curves,
    )


# ---------------------------------------------------------------------------- fertility


def default_fertility_root() -> Path:
    """The fallback folder ``<repo root>/../shared/data/fertility`` (the repo root holds ``gpvi/``)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fertility"


def _fertility_candidates(root: str | os.PathLike | None) -> list[Path]:
    """Paths of ``fertility.csv`` to try, in order."""
    if root is not None:
        base = Path(root).expanduser()
        if base.suffix == ".csv":
            return [base]
        return [base / _FERTILITY_FILE, base / "fertility" / _FERTILITY_FILE]
    value = os.environ.get(ENV_VAR)
    if value:
        base = Path(value).expanduser()
        return [base / "fertility" / _FERTILITY_FILE, base / _FERTILITY_FILE]
    return [default_fertility_root() / _FERTILITY_FILE]


def fertility(
    root: str | os.PathLike | None = None, *, drop_aggregates: bool = True, min_points: int = 2
) -> MultiTaskData:
    """World Bank total fertility rate (births per woman), one task per country, 1960-2013.

    Args:
        root: Folder holding ``fertility.csv`` (or its parent holding ``fertility/``, or the csv
            path itself); defaults to ``$GPVI_DATA_DIR`` or ``../shared/data/fertility`` relative
            to the repository root.
        drop_aggregates: Drop World Bank aggregate rows (regions, income and small-states groups;
            codes in ``gpvi.data.multitask.FERTILITY_AGGREGATES``).
        min_points: Drop countries with fewer than this many observed years.

    Returns:
        A :class:`MultiTaskData` with, per country, inputs `N_i x 1` (the years with data, float64)
        and outputs `N_i` (fertility rates); ``names`` are the country names, in file order.

    Raises:
        FileNotFoundError: ``fertility.csv`` was not found; the message lists the paths tried.
    """
    if not isinstance(drop_aggregates, bool):
        raise TypeError(f"`drop_aggregates` must be a bool, got {drop_aggregates!r}.")
    if not _is_int(min_points):
        raise TypeError(f"`min_points` must be an int, got {min_points!r}.")
    if min_points < 1:
        raise ValueError(f"`min_points` must be >= 1, got {min_points}.")
    candidates = _fertility_candidates(root)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        tried = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            f"fertility.csv not found; tried: {tried}. Pass `root=` pointing at the folder that holds it, "
            f"or set the {ENV_VAR} environment variable (to the shared data folder containing `fertility/`, "
            "or to the fertility folder itself)."
        )

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or len(rows[0]) < 3 or rows[0][:2] != ["Country Name", "Country Code"]:
        raise ValueError(f"{path}: expected a header `Country Name,Country Code,<year>,...`.")
    years = np.array([float(c) for c in rows[0][2:]], dtype=np.float64)
    body = [r for r in rows[1:] if r]
    if any(len(r) != len(rows[0]) for r in body):
        raise ValueError(f"{path}: every row must have {len(rows[0])} cells like the header.")
    names = [r[0] for r in body]
    codes = [r[1] for r in body]
    values = np.array([[float(c) if c.strip() else np.nan for c in r[2:]] for r in body], dtype=np.float64)

    observed = np.isfinite(values)  # countries x years
    keep = observed.sum(axis=1) >= min_points
    if drop_aggregates:
        keep &= ~np.isin(np.array(codes), sorted(FERTILITY_AGGREGATES))
    year_t = torch.as_tensor(years)
    val_t = torch.as_tensor(values)
    obs_t = torch.as_tensor(observed)
    inputs, outputs, kept_names = [], [], []
    for c in np.flatnonzero(keep):
        mask = obs_t[c]
        inputs.append(year_t[mask].unsqueeze(-1))
        outputs.append(val_t[c, mask])
        kept_names.append(names[c])
    if not inputs:
        raise ValueError(f"{path}: no country has at least `min_points`={min_points} observed years.")
    return MultiTaskData(inputs, outputs, names=kept_names)
