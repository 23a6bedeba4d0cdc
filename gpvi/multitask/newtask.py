"""A new task under a fitted MagmaClust prior: its cluster probabilities and, optionally, its own kernel.

Leroy et al. (2023), JMLR, §4. For a new task with observations y* at t*, and the mean processes
extended to t* (m̂_k(t*), Ĉ_k(t*)):

    τ*_k ∝ π_k N(y*; m̂_k(t*), Ψ*_θ + Ĉ_k(t*))          (exact: the integrated likelihood, not the
                                                        R package's variational lower bound)

and, with task-specific hyperparameters, θ*, σ*² by EM: M-step max Σ_k τ*_k log N(y*; m̂_k, Ψ_θ* + Ĉ_k),
E-step the τ* above.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, ScaleKernel
from torch import Tensor

from gpvi._validation import check_tensor
from gpvi.core.linalg import cholesky, symmetrize, tri_solve
from gpvi.core.optim import guarded_lbfgs


@dataclass
class NewTask:
    """A new task's observations, its (possibly learned) task kernel and noise, and τ*_k (K,)."""

    X: Tensor
    y: Tensor
    kernel: Kernel
    noise: Tensor
    weights: Tensor


def log_normal(chol: Tensor, resid: Tensor, count: Tensor | int) -> tuple[Tensor, Tensor]:
    """(log N(resid; 0, chol cholᵀ), chol⁻¹resid) for resid (*b, n); ``count`` = the unpadded n."""
    white = tri_solve(chol, resid.unsqueeze(-1)).squeeze(-1)
    log_det = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * (count * math.log(2 * math.pi) + log_det + white.pow(2).sum(-1)), white


def integrated_weights(prior: Tensor, y: Tensor, mean: Tensor, chol: Tensor) -> Tensor:
    """τ*_k ∝ π_k N(y; mean_k, chol_k chol_kᵀ), (K,)."""
    log_n, _ = log_normal(chol, y - mean, y.numel())
    return torch.softmax(prior.clamp_min(1e-300).log() + log_n, dim=-1)


def new_task_em(
    kernel: Kernel, noise: Tensor, X: Tensor, y: Tensor, mean_o: Tensor, cov_oo: Tensor, prior: Tensor, max_iter: int
) -> tuple[Kernel, Tensor]:
    """EM for a new task's θ*, σ*²: M-step max Σ_k τ*_k log N(y; m̂_k, Ψ_θ* + Ĉ_k), E-step exact τ*.

    Each M-step is an L-BFGS run guarded like `MagmaClust.m_step` (`gpvi.core.guarded_lbfgs`): a step
    that fails (a covariance not positive definite along the line search) or lowers the objective is
    retried with a shorter first step, then undone, and the EM stops there.
    """
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
        log_n, _ = log_normal(chol, y - mean_o, y.numel())
        return (weights * log_n).sum()

    weights = prior
    for _ in range(max_iter):
        before = [p.detach().clone() for p in params]
        improved = guarded_lbfgs(params, functools.partial(objective, weights), max_iter=25)
        with torch.no_grad():
            weights = integrated_weights(prior, y, mean_o, chol_gamma())
        change = sum(float((p.detach() - b).abs().sum()) for p, b in zip(params, before, strict=True))
        if not improved or change < 1e-3:
            break
    for p in kernel.parameters():
        p.requires_grad_(False)
    return kernel, constraint.transform(raw_noise).detach()


def task_hyperparameters(prior: Any) -> tuple[Kernel, Tensor]:
    """The task kernel and noise a new task starts from: the shared ones, or the tasks' medians."""
    if prior.hypothesis[2] == "o":
        return prior.task_kernel, prior.noise
    base = prior.task_kernel.base_kernel
    kernel = ScaleKernel(type(base)(**({"nu": base.nu} if hasattr(base, "nu") else {}))).to(prior.raw_noise)
    with torch.no_grad():
        kernel.outputscale = prior.task_kernel.outputscale.median()
        kernel.base_kernel.lengthscale = base.lengthscale.reshape(-1).median()
    return kernel, prior.noise.median()


def check_observations(prior: Any, X_obs: Any, y_obs: Any) -> tuple[Tensor, Tensor]:
    """A new task's observations as (`n x d`, `n`), checked against ``prior`` (errors name the argument).

    ``X_obs`` is `n x d` (or `n` when d = 1), ``y_obs`` `n` or `n x 1`; both finite, non-empty, of
    the prior's dtype, with the prior's d and the same n.
    """
    X_obs = prior.check_points("X_obs", X_obs, rows="n")
    check_tensor("y_obs", y_obs, ndim=(1, 2), shape_hint="`n` or `n x 1`")
    if y_obs.dim() == 2 and y_obs.shape[-1] != 1:
        raise ValueError(f"`y_obs` must be `n` or `n x 1` (one output), got shape {tuple(y_obs.shape)}.")
    y_obs = y_obs.reshape(-1)
    if X_obs.shape[0] == 0 or y_obs.shape[0] != X_obs.shape[0]:
        raise ValueError(
            f"`X_obs` has {X_obs.shape[0]} rows and `y_obs` {y_obs.shape[0]}: give the same number n >= 1 of both."
        )
    if y_obs.dtype != X_obs.dtype:
        raise TypeError(f"`y_obs` is {y_obs.dtype} but `X_obs` and the model are {X_obs.dtype}; convert it first.")
    return X_obs, y_obs


def fit_new_task(
    prior: Any, X_obs: Tensor, y_obs: Tensor, *, learn_hyperparameters: bool | None = None, max_em_iter: int = 25
) -> NewTask:
    """A new task's τ* (and, with task-specific hyperparameters, its θ*, σ*² by EM) under ``prior``.

    ``prior`` is a fitted `MagmaClust`; ``learn_hyperparameters`` defaults to its hypothesis
    ("Hoi"/"Hki": task-specific); ``max_em_iter`` bounds the EM.
    """
    X_obs, y_obs = check_observations(prior, X_obs, y_obs)
    kernel, noise = task_hyperparameters(prior)
    with torch.no_grad():
        mean_o, cov_oo = prior.extend(X_obs)
    learn = prior.hypothesis[2] == "i" if learn_hyperparameters is None else learn_hyperparameters
    if learn:
        kernel, noise = new_task_em(kernel, noise, X_obs, y_obs, mean_o, cov_oo, prior.mixture_weights, max_em_iter)
    with torch.no_grad():
        eye = torch.eye(X_obs.shape[0], dtype=X_obs.dtype, device=X_obs.device)
        chol = cholesky(cov_oo + kernel(X_obs).to_dense() + noise * eye, what="Γ** of the new task")
        weights = integrated_weights(prior.mixture_weights, y_obs, mean_o, chol)
    return NewTask(X_obs, y_obs, kernel, noise.detach().reshape(()), weights)


def new_task_predictive(prior: Any, task: NewTask | None, X_pred: Tensor) -> tuple[Tensor, Tensor]:
    """Per-cluster latent predictive of a new task at X_pred (*b, P, d): means (*b, K, P), covs (*b, K, P, P).

    μ̂_k = m̂_k(p) + Γ_p* Γ_**⁻¹ (y* − m̂_k(t*)),  Γ̂_k = Γ_pp − Γ_p* Γ_**⁻¹ Γ_*p,  Γ = Ψ* + Ĉ_k on (t*, t^p)
    with the noise only on the observed block (``task`` None: the prior mixture's components).
    Differentiable in X_pred (for acquisition functions).
    """
    if task is None:
        kernel, _ = task_hyperparameters(prior)
        mean, cov = prior.extend_batched(X_pred)
        return mean, cov + kernel(X_pred).to_dense().unsqueeze(-3)
    n, batch = task.X.shape[0], X_pred.shape[:-2]
    pts = torch.cat([task.X.expand(*batch, *task.X.shape), X_pred], -2)
    mean_all, cov_all = prior.extend_batched(pts)
    gamma = cov_all + task.kernel(pts).to_dense().unsqueeze(-3)
    eye = torch.eye(n, dtype=gamma.dtype, device=gamma.device)
    chol = cholesky(gamma[..., :n, :n] + task.noise * eye, what="Γ** of the new task")
    g_po = gamma[..., n:, :n]
    solve = torch.cholesky_solve(g_po.mT, chol)
    resid = (task.y - mean_all[..., :n]).unsqueeze(-1)
    mean = mean_all[..., n:] + (solve.mT @ resid).squeeze(-1)
    cov = gamma[..., n:, n:] - g_po @ solve
    return mean, symmetrize(cov)


__all__ = [
    "NewTask",
    "check_observations",
    "fit_new_task",
    "integrated_weights",
    "log_normal",
    "new_task_em",
    "new_task_predictive",
    "task_hyperparameters",
]
