"""Magma and MagmaClust: multi-task GPs whose tasks share (clustered) mean processes, fit by variational EM.

Leroy, Latouche, Guedj & Gey (2022), "MAGMA: inference and prediction using multi-task Gaussian
processes with common mean", Machine Learning; (2023), "Cluster-Specific Predictions with
Multi-Task Gaussian Processes", JMLR (MagmaClust).

Model. Task i (i = 1..M) is observed at its own inputs t_i (N_i points, any grid); t is the union
grid (N points) and P_i selects t_i from t. With Z_i ~ Multinomial(1, π),

    μ_k ~ GP(m_k, C_γk),   f_i ~ GP(0, Σ_θi),   y_i | Z_ik = 1 ~ N(μ_k(t_i), Ψ_i),   Ψ_i = Σ_θi(t_i, t_i) + σ_i² I.

Variational EM with q(μ, Z) = Π_k N(μ_k(t); m̂_k, Ĉ_k) Π_i Mult(Z_i; τ_i):

    VE (a)  Ĉ_k = (C_k⁻¹ + Σ_i τ_ik P_iᵀΨ_i⁻¹P_i)⁻¹,   m̂_k = Ĉ_k (C_k⁻¹ m_k + Σ_i τ_ik P_iᵀΨ_i⁻¹ y_i)
    VE (b)  log τ_ik = log π_k + log N(y_i; P_i m̂_k, Ψ_i) − ½ tr(Ψ_i⁻¹ P_i Ĉ_k P_iᵀ) + const
    VM      π_k = mean_i τ_ik;  Θ = (γ, θ, σ², m_k): max of the ELBO with q(μ) profiled out in closed form
            (`MagmaClust.collapsed_elbo`; the paper's M-step maximises the same ELBO with q(μ) frozen)
    ELBO    Σ_k −KL[q(μ_k) ‖ p(μ_k)] + Σ_ik τ_ik [log N(y_i; P_i m̂_k, Ψ_i) − ½ tr(Ψ_i⁻¹P_iĈ_kP_iᵀ) + log π_k − log τ_ik]

(the ELBO with every constant, so that the VBIC of different K compares correctly). With K = 1
(Magma) the E-step is exact and the ELBO is the exact log marginal likelihood of the tasks.

Numerics: every N×N algebra is whitened, Ĉ_k = L (I + LᵀS_kL)⁻¹ Lᵀ with C_k = LLᵀ, so the ill-conditioned
prior matrix on a dense union grid is never inverted; tasks are padded to (M, N_max) tensors with an
identity block in the padding, and their precisions are scattered into the grid with `index_add_`.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, RBFKernel, ScaleKernel
from torch import Tensor

from gpvi.core.linalg import NotPSDError, cholesky, symmetrize, tri_solve

HYPOTHESES = ("Hoo", "Hko", "Hoi", "Hki")
ROUND_DIGITS = 6


# -- data -------------------------------------------------------------------------------------------
def _as_tasks(tasks: Any) -> tuple[list[Tensor], list[Tensor]]:
    """A list of (X_i, y_i) pairs, or any object with ``inputs``/``outputs`` lists -> two lists."""
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


def _round(X: Tensor) -> Tensor:
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
        return self.X.shape[0]

    @property
    def outer_mask(self) -> Tensor:
        m = self.mask.to(self.X.dtype)
        return m.unsqueeze(-1) * m.unsqueeze(-2)


def make_task_batch(inputs: list[Tensor], outputs: list[Tensor], grid: Tensor | None = None) -> TaskBatch:
    """Pad the tasks and locate their inputs on the union grid (built from them when not given)."""
    rounded = [_round(X) for X in inputs]
    for i, X in enumerate(rounded):
        if torch.unique(X, dim=0).shape[0] != X.shape[0]:
            raise ValueError(f"task {i} has duplicated inputs (after rounding to {ROUND_DIGITS} significant digits).")
    allX = torch.cat(rounded)
    if grid is None:
        grid, inverse = torch.unique(allX, dim=0, return_inverse=True)
    else:
        both, inverse_all = torch.unique(torch.cat([_round(grid), allX]), dim=0, return_inverse=True)
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


# -- model ------------------------------------------------------------------------------------------
@dataclass
class HyperPosterior:
    """q(μ_k) on the union grid: mean (K, N), covariance (K, N, N) and its root R (Ĉ = RRᵀ)."""

    mean: Tensor
    cov: Tensor
    root: Tensor


@dataclass
class NewTask:
    """A new task's observations, its (possibly learned) task kernel and noise, and τ*_k (K,)."""

    X: Tensor
    y: Tensor
    kernel: Kernel
    noise: Tensor
    weights: Tensor


@dataclass
class FitHistory:
    """ELBO after every VEM iteration, wall time and why it stopped."""

    elbo: list[float] = field(default_factory=list)
    wall_time: float = 0.0
    stop_reason: str = ""


class MagmaClust(torch.nn.Module):
    """MagmaClust: K clusters of tasks, each cluster with a GP mean process; Magma when K = 1.

    Example:
        >>> model = MagmaClust(data, num_clusters=3)           # list of (X_i, y_i) or MultiTaskData
        >>> model.fit()
        >>> model.responsibilities.argmax(-1)                   # MAP cluster of each task
        >>> pred = model.predict(X_new, y_new, X_grid)          # a new task's mixture predictive

    Args:
        tasks: A list of (X_i `N_i x d` or `N_i`, y_i `N_i`) pairs, or a `gpvi.data.MultiTaskData`.
        num_clusters: K (at most the number of tasks).
        hypothesis: Which hyperparameters are shared: "Hoo" (mean-process kernel γ shared by the
            clusters, task kernel θ and noise shared by the tasks), "Hko" (γ_k per cluster), "Hoi"
            (θ_i, σ_i² per task), "Hki" (both specific).
        prior_mean: "learned" (a constant m_k per cluster, its GLS optimum at every M-step) or a
            float (fixed constant for every cluster).
        mean_kernel, task_kernel: gpytorch kernels (default `ScaleKernel(RBFKernel())`); they are
            rebuilt with the batch shape the hypothesis needs, so pass them unbatched.
        jitter: Relative diagonal jitter on the N×N prior covariances (times their mean variance).
        seed: Seed of the k-means initialisation.
    """

    def __init__(
        self,
        tasks: Any,
        num_clusters: int = 3,
        *,
        hypothesis: str = "Hoo",
        prior_mean: str | float = "learned",
        mean_kernel: Kernel | None = None,
        task_kernel: Kernel | None = None,
        jitter: float = 1e-8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        inputs, outputs = _as_tasks(tasks)
        M = len(inputs)
        if not isinstance(num_clusters, int) or num_clusters < 1:
            raise ValueError(f"`num_clusters` must be a positive int, got {num_clusters!r}.")
        if num_clusters > M:
            raise ValueError(f"`num_clusters` = {num_clusters} is larger than the number of tasks ({M}).")
        if hypothesis not in HYPOTHESES:
            raise ValueError(f"`hypothesis` must be one of {HYPOTHESES}, got {hypothesis!r}.")
        if prior_mean != "learned" and not isinstance(prior_mean, (int, float)):
            raise ValueError(f"`prior_mean` must be 'learned' or a number, got {prior_mean!r}.")
        self.num_clusters, self.hypothesis, self.jitter, self.seed = num_clusters, hypothesis, jitter, seed
        self.learn_mean = prior_mean == "learned"
        self.data = make_task_batch(inputs, outputs)
        like = inputs[0]
        K = num_clusters
        k_batch = torch.Size([K]) if hypothesis[1] == "k" else torch.Size()
        i_batch = torch.Size([M]) if hypothesis[2] == "i" else torch.Size()
        self.mean_kernel = _batched(mean_kernel, k_batch).to(like)
        self.task_kernel = _batched(task_kernel, i_batch).to(like)
        self.register_parameter(
            "raw_noise", torch.nn.Parameter(torch.zeros(i_batch, dtype=like.dtype, device=like.device))
        )
        self.noise_constraint = GreaterThan(1e-6)
        y_all = torch.cat(outputs)
        init_mean = float(y_all.mean()) if self.learn_mean else float(prior_mean)
        means = torch.full((K,), init_mean, dtype=like.dtype, device=like.device)
        if self.learn_mean:
            self.register_parameter("prior_means", torch.nn.Parameter(means))
        else:
            self.register_buffer("prior_means", means)
        self.register_buffer("mixture_weights", torch.full((K,), 1.0 / K, dtype=like.dtype, device=like.device))
        self.register_buffer("responsibilities", torch.full((M, K), 1.0 / K, dtype=like.dtype, device=like.device))
        self._init_hyperparameters(inputs, outputs)
        self.hyperpost: HyperPosterior | None = None
        self._chol_grid: tuple[HyperPosterior, Tensor] | None = None
        self.history = FitHistory()

    @classmethod
    def from_long(cls, X: Tensor, y: Tensor, task_ids: Tensor, num_clusters: int = 3, **options: Any) -> MagmaClust:
        """Build from a long table: inputs X (n x d or n), outputs y (n), a task id per row (n)."""
        from gpvi.data.multitask import MultiTaskData

        X = X.unsqueeze(-1) if X.dim() == 1 else X
        return cls(MultiTaskData.from_long(X, y, task_ids), num_clusters, **options)

    # -- parameters ---------------------------------------------------------------------------------
    @property
    def noise(self) -> Tensor:
        """σ² (shared: scalar; "Hoi"/"Hki": one per task)."""
        return self.noise_constraint.transform(self.raw_noise)

    @noise.setter
    def noise(self, value: float | Tensor) -> None:
        value = torch.as_tensor(value, dtype=self.raw_noise.dtype).expand_as(self.raw_noise)
        with torch.no_grad():
            self.raw_noise.copy_(self.noise_constraint.inverse_transform(value))

    def _init_hyperparameters(self, inputs: list[Tensor], outputs: list[Tensor]) -> None:
        """Data-driven start: lengthscale = range/10, mean variance = var of task means, task variance
        = mean within-task variance / 2, noise = that / 5 (as the R package's preconditioning bounds)."""
        grid = self.data.grid
        span = float((grid.max(0).values - grid.min(0).values).norm().clamp_min(1e-3))
        means = torch.stack([y.mean() for y in outputs])
        within = torch.stack([y.var(unbiased=False) if y.numel() > 1 else y.new_tensor(0.0) for y in outputs]).mean()
        total = torch.cat(outputs).var(unbiased=False).clamp_min(1e-6)
        between = means.var(unbiased=False) if len(outputs) > 1 else total
        with torch.no_grad():
            self.mean_kernel.base_kernel.lengthscale = span / 10
            self.mean_kernel.outputscale = float(between.clamp_min(0.1 * total))
            self.task_kernel.base_kernel.lengthscale = span / 10
            self.task_kernel.outputscale = float((within / 2).clamp_min(0.01 * total))
        self.noise = float((within / 10).clamp_min(1e-3 * total))

    # -- the pieces of every step ----------------------------------------------------------------------
    def task_covariances(self, X: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Ψ_i = Σ_θi(t_i, t_i) + σ_i² I, padded with an identity block: (M, N_max, N_max)."""
        X = self.data.X if X is None else X
        mask = self.data.mask if mask is None else mask
        m = mask.to(X.dtype)
        outer = m.unsqueeze(-1) * m.unsqueeze(-2)
        K = self.task_kernel(X).to_dense()
        noise = self.noise
        noise = noise.unsqueeze(-1) if noise.dim() else noise
        eye = torch.eye(X.shape[-2], dtype=X.dtype, device=X.device)
        return K * outer + eye * (noise.unsqueeze(-1) * m.unsqueeze(-1) + (1 - m).unsqueeze(-1))

    def grid_covariance(self, grid: Tensor | None = None) -> Tensor:
        """C_k on the grid with relative jitter: (K or 1, N, N)."""
        grid = self.data.grid if grid is None else grid
        C = self.mean_kernel(grid).to_dense()
        C = C if C.dim() == 3 else C.unsqueeze(0)
        scale = C.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True).unsqueeze(-1)
        return C + self.jitter * scale * torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)

    def _scatter(self, weights: Tensor, blocks: Tensor) -> Tensor:
        """Σ_i w_ki P_iᵀ B_i P_i for weights (K, M) and padded blocks (M, n, n) -> (K, N, N)."""
        N = self.data.grid.shape[0]
        idx = self.data.index
        flat = (idx.unsqueeze(-1) * N + idx.unsqueeze(-2)).reshape(-1)
        values = (weights.unsqueeze(-1).unsqueeze(-1) * (blocks * self.data.outer_mask)).reshape(weights.shape[0], -1)
        out = torch.zeros(weights.shape[0], N * N, dtype=blocks.dtype, device=blocks.device)
        return out.index_add_(1, flat, values).reshape(-1, N, N)

    def _scatter_vec(self, weights: Tensor, vecs: Tensor) -> Tensor:
        """Σ_i w_ki P_iᵀ v_(k)i for weights (K, M) and padded vectors (M, n) or (K, M, n) -> (K, N)."""
        N = self.data.grid.shape[0]
        values = (weights.unsqueeze(-1) * (vecs * self.data.mask)).reshape(weights.shape[0], -1)
        out = torch.zeros(weights.shape[0], N, dtype=vecs.dtype, device=vecs.device)
        return out.index_add_(1, self.data.index.reshape(-1), values)

    @torch.no_grad()
    def e_step_mean_processes(self) -> HyperPosterior:
        """VE (a): q(μ_k) on the union grid (whitened: Ĉ = L(I + LᵀSL)⁻¹Lᵀ, m̂ = m + Ĉ(b − S m))."""
        psi = self.task_covariances()
        chol_psi = cholesky(psi, what="task covariance Ψ_i")
        psi_inv = torch.cholesky_inverse(chol_psi)
        psi_inv_y = torch.cholesky_solve(self.data.y.unsqueeze(-1), chol_psi).squeeze(-1)
        tau = self.responsibilities.T  # (K, M)
        S = self._scatter(tau, psi_inv)
        b = self._scatter_vec(tau, psi_inv_y)
        L = cholesky(self.grid_covariance(), what="mean-process prior covariance C_k")
        L = L.expand(self.num_clusters, *L.shape[-2:])
        inner = L.mT @ S @ L
        eye = torch.eye(inner.shape[-1], dtype=inner.dtype, device=inner.device)
        chol_B = cholesky(inner + eye, what="I + LᵀSL")
        root = L @ tri_solve(chol_B.mT, eye.expand_as(chol_B), upper=True)  # Ĉ = root rootᵀ
        cov = root @ root.mT
        m = self.prior_means.unsqueeze(-1).expand(-1, S.shape[-1])
        mean = m + (cov @ (b - (S @ m.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)).squeeze(-1)
        self.hyperpost = HyperPosterior(mean, cov, root)
        return self.hyperpost

    def _task_terms(self, post: HyperPosterior, chol_psi: Tensor) -> tuple[Tensor, Tensor]:
        """(log N(y_i; P_i m̂_k, Ψ_i), ½ tr(Ψ_i⁻¹ P_i Ĉ_k P_iᵀ)), both (M, K)."""
        idx, mask = self.data.index, self.data.mask.to(post.mean.dtype)
        resid = (self.data.y.unsqueeze(0) - post.mean[:, idx]) * mask  # (K, M, n)
        log_lik, _ = _log_normal(chol_psi, resid, mask.sum(-1))  # (K, M); the padding contributes 0
        rows = post.root[:, idx]  # (K, M, n, N): P_i R_k
        rows = rows * mask.unsqueeze(-1)
        trace = 0.5 * tri_solve(chol_psi, rows).pow(2).sum((-1, -2))  # ½ tr(Ψ⁻¹ P Ĉ Pᵀ)
        return log_lik.T, trace.T

    @torch.no_grad()
    def e_step_responsibilities(self) -> Tensor:
        """VE (b): τ_ik ∝ π_k exp(log N(y_i; P_i m̂_k, Ψ_i) − ½ tr(Ψ_i⁻¹P_iĈ_kP_iᵀ))."""
        chol_psi = cholesky(self.task_covariances(), what="task covariance Ψ_i")
        log_lik, trace = self._task_terms(self.hyperpost, chol_psi)
        logits = self.mixture_weights.clamp_min(1e-300).log() + log_lik - trace
        self.responsibilities = torch.softmax(logits, dim=-1)
        return self.responsibilities

    def elbo(self) -> Tensor:
        """The full ELBO (every constant kept) at the current q and hyperparameters (scalar)."""
        post = self.hyperpost if self.hyperpost is not None else self.e_step_mean_processes()
        chol_psi = cholesky(self.task_covariances(), what="task covariance Ψ_i")
        log_lik, trace = self._task_terms(post, chol_psi)
        tau = self.responsibilities
        label = torch.where(tau > 0, tau * (self.mixture_weights.clamp_min(1e-300).log() - tau.log()), tau * 0)
        data_term = (tau * (log_lik - trace)).sum() + label.sum()
        return data_term - self._kl_mean_processes(post).sum()

    def _kl_mean_processes(self, post: HyperPosterior) -> Tensor:
        """KL[q(μ_k) ‖ p(μ_k)] = ½ [‖L⁻¹(m̂ − m)‖² + tr(C⁻¹Ĉ) − N + log|C| − log|Ĉ|], (K,)."""
        L = cholesky(self.grid_covariance(), what="mean-process prior covariance C_k")
        L = L.expand(self.num_clusters, *L.shape[-2:])
        N = L.shape[-1]
        diff = tri_solve(L, (post.mean - self.prior_means.unsqueeze(-1)).unsqueeze(-1)).squeeze(-1)
        white_root = tri_solve(L, post.root)
        log_det_C = 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        log_det_hat = torch.linalg.slogdet(white_root)[1] * 2 + log_det_C
        return 0.5 * (diff.pow(2).sum(-1) + white_root.pow(2).sum((-1, -2)) - N + log_det_C - log_det_hat)

    # -- M-step ---------------------------------------------------------------------------------------
    def collapsed_elbo(self) -> Tensor:
        """The ELBO maximised over q(μ) in closed form, for the current τ: a function of Θ only.

        For fixed τ the optimal q(μ_k) is the tempered posterior p(μ_k) Π_i N(y_i; P_iμ_k, Ψ_i)^τ_ik,
        and the ELBO at it is (derived here; with K = 1 it is Magma's exact log marginal likelihood):

            Σ_k [ Σ_i τ_ik log N(y_i; m_k, Ψ_i) − ½ log|B_k| + ½ c_kᵀ B_k⁻¹ c_k ] + Σ_ik τ_ik (log π_k − log τ_ik)
            B_k = I + Lᵀ S_k L,  S_k = Σ_i τ_ik P_iᵀΨ_i⁻¹P_i,  c_k = Lᵀ Σ_i τ_ik P_iᵀΨ_i⁻¹(y_i − m_k),  C_k = LLᵀ

        Maximising it over Θ is the M-step of a generalised EM that moves (q(μ), Θ) jointly, so
        it needs far fewer iterations than maximising the expected-statistics objectives with
        q(μ) frozen (the R package's M-step); the ELBO stays non-decreasing.
        """
        tau = self.responsibilities
        chol_psi = cholesky(self.task_covariances(), what="task covariance Ψ_i")
        mask = self.data.mask.to(chol_psi.dtype)
        resid = (self.data.y.unsqueeze(0) - self.prior_means.reshape(-1, 1, 1)) * mask  # (K, M, n)
        log_lik, white = _log_normal(chol_psi, resid, mask.sum(-1))  # (K, M)
        psi_inv_r = tri_solve(chol_psi.mT, white.unsqueeze(-1), upper=True).squeeze(-1)
        psi_inv = torch.cholesky_inverse(chol_psi)
        S = self._scatter(tau.T, psi_inv)
        b = self._scatter_vec(tau.T, psi_inv_r)
        L = cholesky(self.grid_covariance(), what="mean-process prior covariance C_k")
        L = L.expand(self.num_clusters, *L.shape[-2:])
        eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device)
        chol_B = cholesky(L.mT @ S @ L + eye, what="I + LᵀSL")
        c = tri_solve(chol_B, (L.mT @ b.unsqueeze(-1)))
        evidence = -chol_B.diagonal(dim1=-2, dim2=-1).log().sum(-1) + 0.5 * c.pow(2).sum((-1, -2))  # (K,)
        label = torch.where(tau > 0, tau * (self.mixture_weights.clamp_min(1e-300).log() - tau.log()), tau * 0)
        return (tau * log_lik.T).sum() + evidence.sum() + label.sum()

    def m_step(self, max_iter: int = 50, objective: str = "collapsed") -> None:
        """VM: π = mean_i τ_i in closed form, then Θ (kernels, noise, prior means) by L-BFGS.

        ``objective="collapsed"`` (default) maximises `collapsed_elbo` (q(μ) profiled out);
        ``"expected"`` maximises the ELBO with q(μ) and τ frozen, i.e. the papers' expected-statistics
        objectives Σ_k [log N(m̂_k; m_k, C_γ) − ½ tr(C_γ⁻¹Ĉ_k)] + Σ_ik τ_ik [log N(y_i; P_i m̂_k, Ψ_i)
        − ½ tr(Ψ_i⁻¹ P_i Ĉ_k P_iᵀ)] (the R package's M-step, for parity).

        Guarded: if the line search wanders where a covariance is not positive definite, or the
        bound ends lower than it started, the step is retried with a 10x shorter first step and
        otherwise undone (so the ELBO never decreases).
        """
        if objective not in ("collapsed", "expected"):
            raise ValueError(f"`objective` must be 'collapsed' or 'expected', got {objective!r}.")
        self.mixture_weights = self.responsibilities.mean(0)
        if objective == "expected" and self.hyperpost is None:
            self.e_step_mean_processes()
        target = self.collapsed_elbo if objective == "collapsed" else self.elbo
        params = [p for p in self.parameters() if p.requires_grad]
        scale = float(self.data.mask.sum())
        if _guarded_lbfgs(params, target, scale=scale, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-10):
            return
        warnings.warn("MagmaClust M-step made no progress (line search failed); hyperparameters kept.", stacklevel=2)

    # -- training loop ---------------------------------------------------------------------------------
    def initialize_responsibilities(self) -> Tensor:
        """One-hot τ from k-means on each task's (min, mean, max) outputs (the R package's start)."""
        K = self.num_clusters
        if K == 1:
            self.responsibilities = torch.ones_like(self.responsibilities)
        else:
            from sklearn.cluster import KMeans

            y, mask = self.data.y, self.data.mask
            big = torch.finfo(y.dtype).max
            summary = torch.stack(
                [
                    torch.where(mask, y, big).min(-1).values,
                    (y * mask).sum(-1) / mask.sum(-1),
                    torch.where(mask, y, -big).max(-1).values,
                ],
                -1,
            )
            labels = KMeans(n_clusters=K, n_init=20, random_state=self.seed).fit_predict(summary.cpu().numpy())
            labels = torch.as_tensor(labels, dtype=torch.long, device=y.device)
            self.responsibilities = torch.nn.functional.one_hot(labels, K).to(y.dtype)
        self.mixture_weights = self.responsibilities.mean(0)
        return self.responsibilities

    def fit(
        self,
        max_iter: int = 50,
        *,
        tol: float = 1e-6,
        m_step_iter: int = 50,
        m_step: str = "collapsed",
        progress: bool | None = None,
    ) -> FitHistory:
        """Variational EM from the k-means τ: VM (on `collapsed_elbo`), VE(a), VE(b); the ELBO after each.

        Starting with the M-step at the k-means τ plays the role of the R package's skipped first
        τ update (hyperparameters are fitted before τ moves). ``m_step="expected"`` uses the papers'
        M-step (q frozen; see `m_step`), which needs many more iterations. Stops when |ΔELBO| / |ELBO| < ``tol``
        or after ``max_iter`` iterations; `history.elbo` is non-decreasing (asserted in the tests).
        """
        from gpvi.fit import _progress_bar, _show_progress

        start = time.perf_counter()
        self.history = FitHistory()
        self.initialize_responsibilities()
        bar = _progress_bar(max_iter, _show_progress(progress), desc=f"MagmaClust K={self.num_clusters}")
        reason = "max_iter"
        try:
            for _ in range(max_iter):
                self.m_step(m_step_iter, m_step)
                self.e_step_mean_processes()
                self.e_step_responsibilities()
                with torch.no_grad():
                    value = float(self.elbo())
                self.history.elbo.append(value)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(elbo=f"{value:.4g}")
                if not math.isfinite(value):
                    reason = "non-finite"
                    break
                if len(self.history.elbo) > 1 and abs(value - self.history.elbo[-2]) <= tol * abs(value):
                    reason = "converged"
                    break
        finally:
            if bar is not None:
                bar.close()
        self.history.wall_time, self.history.stop_reason = time.perf_counter() - start, reason
        return self.history

    # -- model selection -------------------------------------------------------------------------------
    def num_hyperparameters(self) -> int:
        """card(HP) of the VBIC: α_k + α_i + (K − 1) (+ K prior means when learned)."""
        gamma = sum(p.numel() for p in self.mean_kernel.parameters())
        theta = sum(p.numel() for p in self.task_kernel.parameters()) + self.raw_noise.numel()
        means = self.num_clusters if self.learn_mean else 0
        return gamma + theta + (self.num_clusters - 1) + means

    def vbic(self) -> float:
        """VBIC(K) = ELBO − card(HP)/2 · log M (M = number of tasks)."""
        with torch.no_grad():
            return float(self.elbo()) - 0.5 * self.num_hyperparameters() * math.log(self.data.num_tasks)

    # -- prediction ------------------------------------------------------------------------------------
    def extend_batched(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """q(μ_k) at new inputs by prior conditioning on the union grid (method note §3.1, derived there).

        With A = C(n, t) C(t, t)⁻¹:  m̂(n) = m(n) + A(m̂ − m(t)),  Ĉ(n, n) = C(n, n) − A C(t, n) + A Ĉ Aᵀ,
        so the N×N prior is never refactorised. Differentiable in ``points`` (*b, P, d); returns
        mean (*b, K, P) and covariance (*b, K, P, P).
        """
        post = self.hyperpost if self.hyperpost is not None else self.e_step_mean_processes()
        grid, K = self.data.grid, self.num_clusters
        batch = points.shape[:-2]
        if self._chol_grid is None or self._chol_grid[0] is not post:
            with torch.no_grad():
                self._chol_grid = (post, cholesky(self.grid_covariance(), what="C_k"))
        L = self._chol_grid[1]
        pts = points.unsqueeze(-3)  # (*b, 1, P, d)
        C_tn = self.mean_kernel(grid.expand(*batch, 1, *grid.shape), pts).to_dense()  # (*b, K|1, N, P)
        C_nn = self.mean_kernel(pts).to_dense()
        V = tri_solve(L, C_tn)
        A_T = tri_solve(L.mT, V, upper=True)  # C⁻¹ C(t, n)
        m = self.prior_means.detach().unsqueeze(-1)
        mean = m + (A_T.mT @ (post.mean - m).unsqueeze(-1)).squeeze(-1)
        AR = A_T.mT @ post.root
        cov = C_nn - V.mT @ V + AR @ AR.mT
        shape = (*batch, K, points.shape[-2])
        return mean.expand(shape), symmetrize(cov).expand(*shape, points.shape[-2])

    @torch.no_grad()
    def extend(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """`extend_batched` for `P x d` points without gradients: mean (K, P), covariance (K, P, P)."""
        return self.extend_batched(points)

    def _task_hyper_for_new(self) -> tuple[Kernel, Tensor]:
        """The task kernel and noise a new task starts from: the shared ones, or the tasks' medians."""
        if self.hypothesis[2] == "o":
            return self.task_kernel, self.noise
        base = self.task_kernel.base_kernel
        kernel = ScaleKernel(type(base)(**({"nu": base.nu} if hasattr(base, "nu") else {}))).to(self.raw_noise)
        with torch.no_grad():
            kernel.outputscale = self.task_kernel.outputscale.median()
            kernel.base_kernel.lengthscale = base.lengthscale.reshape(-1).median()
        return kernel, self.noise.median()

    def new_task(
        self, X_obs: Tensor, y_obs: Tensor, *, learn_hyperparameters: bool | None = None, max_em_iter: int = 25
    ) -> NewTask:
        """Everything about a new task that does not depend on where it is predicted.

        Exact cluster probabilities τ*_k ∝ π_k N(y*; m̂_k(t*), Ψ* + Ĉ_k(t*)) (the integrated
        likelihood, not the R package's variational lower bound). With task-specific hyperparameters
        ("Hoi"/"Hki") the new task's θ*, σ*² are learned by EM (``max_em_iter`` iterations at most).
        """
        X_obs = X_obs.unsqueeze(-1) if X_obs.dim() == 1 else X_obs
        y_obs = y_obs.reshape(-1)
        _as_tasks([(X_obs, y_obs)])
        kernel, noise = self._task_hyper_for_new()
        with torch.no_grad():
            mean_o, cov_oo = self.extend(X_obs)
        learn = self.hypothesis[2] == "i" if learn_hyperparameters is None else learn_hyperparameters
        if learn:
            kernel, noise = _new_task_em(kernel, noise, X_obs, y_obs, mean_o, cov_oo, self.mixture_weights, max_em_iter)
        with torch.no_grad():
            eye = torch.eye(X_obs.shape[0], dtype=X_obs.dtype, device=X_obs.device)
            chol = cholesky(cov_oo + kernel(X_obs).to_dense() + noise * eye, what="Γ** of the new task")
            weights = _integrated_weights(self.mixture_weights, y_obs, mean_o, chol)
        return NewTask(X_obs, y_obs, kernel, noise.detach().reshape(()), weights)

    def predictive(self, task: NewTask | None, X_pred: Tensor) -> tuple[Tensor, Tensor]:
        """Per-cluster latent predictive of a new task at X_pred (*b, P, d): means (*b, K, P), covs (*b, K, P, P).

        μ̂_k = m̂_k(p) + Γ_p* Γ_**⁻¹ (y* − m̂_k(t*)),  Γ̂_k = Γ_pp − Γ_p* Γ_**⁻¹ Γ_*p,  Γ = Ψ* + Ĉ_k on (t*, t^p)
        with the noise only on the observed block. Differentiable in X_pred (for acquisition functions).
        """
        if task is None:
            kernel, _ = self._task_hyper_for_new()
            mean, cov = self.extend_batched(X_pred)
            return mean, cov + kernel(X_pred).to_dense().unsqueeze(-3)
        n, batch = task.X.shape[0], X_pred.shape[:-2]
        pts = torch.cat([task.X.expand(*batch, *task.X.shape), X_pred], -2)
        mean_all, cov_all = self.extend_batched(pts)
        gamma = cov_all + task.kernel(pts).to_dense().unsqueeze(-3)
        eye = torch.eye(n, dtype=gamma.dtype, device=gamma.device)
        chol = cholesky(gamma[..., :n, :n] + task.noise * eye, what="Γ** of the new task")
        g_po = gamma[..., n:, :n]
        solve = torch.cholesky_solve(g_po.mT, chol)
        resid = (task.y - mean_all[..., :n]).unsqueeze(-1)
        mean = mean_all[..., n:] + (solve.mT @ resid).squeeze(-1)
        cov = gamma[..., n:, n:] - g_po @ solve
        return mean, symmetrize(cov)

    def predict(
        self,
        X_obs: Tensor | None,
        y_obs: Tensor | None,
        X_pred: Tensor,
        *,
        learn_hyperparameters: bool | None = None,
        max_em_iter: int = 25,
    ) -> MixturePrediction:
        """Mixture predictive of a new task at ``X_pred`` (`P x d` or `P`) given its observations.

        See `new_task` and `predictive` for the formulas. With no observations it returns the
        mixture of the mean processes (plus the task process) weighted by π.
        """
        X_pred = X_pred.unsqueeze(-1) if X_pred.dim() == 1 else X_pred
        if X_obs is None or y_obs is None or X_obs.numel() == 0:
            _, noise = self._task_hyper_for_new()
            with torch.no_grad():
                mean, cov = self.predictive(None, X_pred)
            return MixturePrediction(self.mixture_weights.clone(), mean, cov, noise.detach().reshape(()))
        task = self.new_task(X_obs, y_obs, learn_hyperparameters=learn_hyperparameters, max_em_iter=max_em_iter)
        with torch.no_grad():
            mean, cov = self.predictive(task, X_pred)
        return MixturePrediction(task.weights, mean, cov, task.noise)

    def cluster_probabilities(self, X_obs: Tensor, y_obs: Tensor) -> Tensor:
        """Exact membership probabilities τ*_k of a new task (K,)."""
        return self.predict(X_obs, y_obs, X_obs[:1] if X_obs.dim() == 2 else X_obs[:1].unsqueeze(-1)).weights

    @property
    def labels(self) -> Tensor:
        """MAP cluster of each training task (M,)."""
        return self.responsibilities.argmax(-1)


def _batched(kernel: Kernel | None, batch: torch.Size) -> ScaleKernel:
    """A ScaleKernel(RBF) (or a deep copy of ``kernel``) with the given batch shape."""
    import copy

    if kernel is None:
        return ScaleKernel(RBFKernel(batch_shape=batch), batch_shape=batch)
    if not isinstance(kernel, ScaleKernel) or not hasattr(kernel.base_kernel, "lengthscale"):
        raise TypeError("kernels must be a gpytorch ScaleKernel around a kernel with a lengthscale.")
    base = copy.deepcopy(kernel.base_kernel)
    new = type(base)(batch_shape=batch, **({"nu": base.nu} if hasattr(base, "nu") else {}))
    return ScaleKernel(new, batch_shape=batch)


def _guarded_lbfgs(
    params: list[Tensor], objective: Callable[[], Tensor], *, scale: float = 1.0, **options: Any
) -> bool:
    """Maximise ``objective()`` over ``params`` by L-BFGS (strong Wolfe line search), guarded.

    A run whose line search fails (a covariance not positive definite on the way) or that ends
    below its start is retried with a 10x shorter first step, then undone. Returns True when the
    parameters were kept (the objective did not decrease).
    """
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        start = float(objective())
    for lr in (1.0, 0.1):
        lbfgs = torch.optim.LBFGS(params, lr=lr, line_search_fn="strong_wolfe", **options)

        def closure(lbfgs=lbfgs) -> Tensor:
            lbfgs.zero_grad(set_to_none=True)
            loss = -objective() / scale
            loss.backward()
            return loss

        try:
            lbfgs.step(closure)
            with torch.no_grad():
                end = float(objective())
            if math.isfinite(end) and end >= start:
                return True
        except (NotPSDError, RuntimeError, ValueError):
            pass
        with torch.no_grad():  # undo the failed run
            for p, value in zip(params, saved, strict=True):
                p.copy_(value)
    return False


def _log_normal(chol: Tensor, resid: Tensor, count: Tensor | int) -> tuple[Tensor, Tensor]:
    """(log N(resid; 0, chol cholᵀ), chol⁻¹resid) for resid (*b, n); ``count`` = the unpadded n."""
    white = tri_solve(chol, resid.unsqueeze(-1)).squeeze(-1)
    log_det = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * (count * math.log(2 * math.pi) + log_det + white.pow(2).sum(-1)), white


def _integrated_weights(prior: Tensor, y: Tensor, mean: Tensor, chol: Tensor) -> Tensor:
    """τ*_k ∝ π_k N(y; mean_k, chol_k chol_kᵀ), (K,)."""
    log_n, _ = _log_normal(chol, y - mean, y.numel())
    return torch.softmax(prior.clamp_min(1e-300).log() + log_n, dim=-1)


def _new_task_em(kernel, noise, X, y, mean_o, cov_oo, prior, max_iter: int):
    """EM for a new task's θ*, σ*²: M-step max Σ_k τ*_k log N(y; m̂_k, Ψ_θ* + Ĉ_k), E-step exact τ*.

    Each M-step is an L-BFGS run guarded like `MagmaClust.m_step`: a step that fails (a covariance
    not positive definite along the line search) or lowers the objective is retried with a shorter
    first step, then undone, and the EM stops there.
    """
    import copy

    kernel = copy.deepcopy(kernel)
    for p in kernel.parameters():
        p.requires_grad_(True)
    constraint = GreaterThan(1e-6)
    raw_noise = torch.nn.Parameter(constraint.inverse_transform(noise.detach().clone().reshape(())))
    params = [*kernel.parameters(), raw_noise]
    eye = torch.eye(X.shape[0], dtype=X.dtype, device=X.device)

    def chol_gamma() -> Tensor:
        return cholesky(kernel(X).to_dense() + constraint.transform(raw_noise) * eye + cov_oo, what="Γ**")

    def objective(weights: Tensor) -> Tensor:
        chol = chol_gamma()
        log_n, _ = _log_normal(chol, y - mean_o, y.numel())
        return (weights * log_n).sum()

    weights = prior
    for _ in range(max_iter):
        before = [p.detach().clone() for p in params]
        improved = _guarded_lbfgs(params, functools.partial(objective, weights), max_iter=25)
        with torch.no_grad():
            weights = _integrated_weights(prior, y, mean_o, chol_gamma())
        change = sum(float((p.detach() - b).abs().sum()) for p, b in zip(params, before, strict=True))
        if not improved or change < 1e-3:
            break
    for p in kernel.parameters():
        p.requires_grad_(False)
    return kernel, constraint.transform(raw_noise).detach()


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


class Magma(MagmaClust):
    """Magma (Leroy et al. 2022): one common mean process for all tasks; MagmaClust with K = 1.

    The E-step is exact, so `elbo()` is the exact log marginal likelihood of the tasks given the
    hyperparameters. Hypotheses "Ho" (task hyperparameters shared) or "Hi" (per task).
    """

    def __init__(self, tasks: Any, *, hypothesis: str = "Ho", **options: Any) -> None:
        if hypothesis not in ("Ho", "Hi"):
            raise ValueError(f"Magma's `hypothesis` must be 'Ho' or 'Hi', got {hypothesis!r}.")
        super().__init__(tasks, 1, hypothesis="Ho" + hypothesis[1], **options)


def select_num_clusters(
    tasks: Any, candidates: range | list[int] = range(1, 7), **options: Any
) -> tuple[int, dict[int, float], dict[int, MagmaClust]]:
    """Fit MagmaClust for each K (Magma for K = 1) and pick the K with the largest VBIC.

    Returns (best K, {K: VBIC}, {K: fitted model}). ``options`` go to the constructor, except
    ``max_iter`` which goes to `fit`.
    """
    max_iter = options.pop("max_iter", 50)
    models, scores = {}, {}
    for K in candidates:
        model = MagmaClust(tasks, K, **options)
        model.fit(max_iter=max_iter, progress=False)
        models[K], scores[K] = model, model.vbic()
    best = max(scores, key=scores.get)
    return best, scores, models


__all__ = ["HyperPosterior", "Magma", "MagmaClust", "MixturePrediction", "NewTask", "select_num_clusters"]
