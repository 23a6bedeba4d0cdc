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

Site algebra: for fixed τ, the tasks act on μ_k − m_k as Gaussian sites on the grid,
η_k = Σ_i τ_ik P_iᵀΨ_i⁻¹(y_i − P_i m_k), H_k = S_k = Σ_i τ_ik P_iᵀΨ_i⁻¹P_i (`gpvi.core.GaussianSites`),
so VE (a) is the sites' posterior, the KL is `gpvi.core.kl_whitened` of its whitened form, and the
collapsed M-step objective holds the sites' log-normaliser. Every N×N algebra is whitened,
Ĉ_k = L (I + LᵀS_kL)⁻¹ Lᵀ with C_k = LLᵀ, so the ill-conditioned prior matrix on a dense union grid
is never inverted; tasks are padded to (M, N_max) tensors with an identity block in the padding
(`gpvi.data.tasks`), and their precisions are scattered into the grid with `index_add_`.

The mixture predictive is `gpvi.multitask.mixture`; a new task's EM `gpvi.multitask.newtask`; the
choice of K by VBIC `gpvi.multitask.selection`.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, RBFKernel, ScaleKernel
from torch import Tensor

from gpvi.core.linalg import cholesky, symmetrize, tri_solve
from gpvi.core.objectives import kl_whitened
from gpvi.core.optim import guarded_lbfgs
from gpvi.core.sites import GaussianSites
from gpvi.data.tasks import TaskBatch, pad_tasks, task_lists
from gpvi.multitask.mixture import MixturePrediction
from gpvi.multitask.newtask import NewTask, fit_new_task, log_normal, new_task_predictive, task_hyperparameters
from gpvi.progress import FitResult, RelativeChange, StepLoop

HYPOTHESES = ("Hoo", "Hko", "Hoi", "Hki")
TASKS_FORM = "a non-empty list of (X_i, y_i) pairs (X_i `N_i x d` or `N_i`, y_i `N_i`), or a gpvi.data.MultiTaskData"


def check_tasks(tasks: Any) -> tuple[list[Tensor], list[Tensor]]:
    """The (inputs, outputs) lists of ``tasks``, checked before anything is computed.

    ``tasks`` is a list of (X_i, y_i) pairs or an object with ``inputs`` / ``outputs`` lists
    (`gpvi.data.MultiTaskData`). Bare tensors (a stacked `M x N` tensor, a list of curves, an
    ``(X, y)`` pair of one long table) are refused with the form expected, not read as pairs of
    rows; every task must be non-empty, finite, floating point, with one dtype for all tasks.
    """
    if isinstance(tasks, Tensor):
        raise TypeError(
            f"`tasks` must be {TASKS_FORM}, got a tensor of shape {tuple(tasks.shape)}; for stacked curves "
            "X (M, N, d) and Y (M, N) pass `list(zip(X, Y))`, for a long table use `MagmaClust.from_long`."
        )
    if not (hasattr(tasks, "inputs") and hasattr(tasks, "outputs")):
        if not isinstance(tasks, (list, tuple)) or not tasks:
            raise TypeError(f"`tasks` must be {TASKS_FORM}, got {type(tasks).__name__}.")
        for i, task in enumerate(tasks):
            if isinstance(task, Tensor):
                raise TypeError(
                    f"`tasks[{i}]` is a tensor of shape {tuple(task.shape)}, not an (X_i, y_i) pair: `tasks` must "
                    f"be {TASKS_FORM}; for stacked curves X (M, N, d) and Y (M, N) pass `list(zip(X, Y))`, for a "
                    "long table with task ids use `MagmaClust.from_long`."
                )
            if not isinstance(task, (list, tuple)) or len(task) != 2:
                got = f"a {len(task)}-tuple" if isinstance(task, (list, tuple)) else type(task).__name__
                raise TypeError(f"`tasks[{i}]` must be an (X_i, y_i) pair of tensors, got {got}.")
            if not all(isinstance(t, Tensor) for t in task):
                names = tuple(type(t).__name__ for t in task)
                raise TypeError(f"`tasks[{i}]` must be an (X_i, y_i) pair of tensors, got ({', '.join(names)}).")
        inputs, outputs = [t[0] for t in tasks], [t[1] for t in tasks]
    else:
        inputs, outputs = list(tasks.inputs), list(tasks.outputs)
    if not inputs or len(inputs) != len(outputs):
        raise ValueError(f"`tasks` has {len(inputs)} inputs and {len(outputs)} outputs; give one of each per task.")
    first = inputs[0].dtype if isinstance(inputs[0], Tensor) else None
    for i, (X, y) in enumerate(zip(inputs, outputs, strict=True)):
        if isinstance(X, Tensor) and isinstance(y, Tensor) and not (X.dtype == y.dtype == first):
            first_task = f" (task 0's inputs are {first})" if i else ""
            raise TypeError(
                f"Mixed dtypes in `tasks`: task {i} has inputs {X.dtype} and outputs {y.dtype}{first_task}; "
                "convert every task to one dtype (float64 recommended)."
            )
    return task_lists(list(zip(inputs, outputs, strict=True)))


def check_num_clusters(num_clusters: Any, num_tasks: int, name: str = "num_clusters") -> None:
    """A `ValueError` naming the argument ``name`` unless it is an int K with 1 <= K <= the number of tasks."""
    if isinstance(num_clusters, bool) or not isinstance(num_clusters, int) or num_clusters < 1:
        what = "be a positive int" if name == "num_clusters" else "hold positive ints K"
        raise ValueError(f"`{name}` must {what}, got {num_clusters!r}.")
    if num_clusters > num_tasks:
        raise ValueError(f"`{name}` has K = {num_clusters}, larger than the number of tasks ({num_tasks}).")


# -- model ------------------------------------------------------------------------------------------
@dataclass
class HyperPosterior:
    """q(μ_k) on the union grid: mean (K, N), covariance (K, N, N) and its root R (Ĉ = RRᵀ)."""

    mean: Tensor
    cov: Tensor
    root: Tensor


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

    #: `gpvi.fit(model)` runs the model's own variational EM (`fit`).
    default_recipe: ClassVar[str] = "vem"

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
        inputs, outputs = check_tasks(tasks)
        M = len(inputs)
        check_num_clusters(num_clusters, M)
        if hypothesis not in HYPOTHESES:
            raise ValueError(f"`hypothesis` must be one of {HYPOTHESES}, got {hypothesis!r}.")
        if prior_mean != "learned" and (
            isinstance(prior_mean, bool) or not isinstance(prior_mean, (int, float)) or not math.isfinite(prior_mean)
        ):
            raise ValueError(f"`prior_mean` must be 'learned' or a finite number, got {prior_mean!r}.")
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter < math.inf:
            raise ValueError(f"`jitter` must be a finite number >= 0, got {jitter!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {seed!r}.")
        self.num_clusters, self.hypothesis, self.jitter, self.seed = num_clusters, hypothesis, jitter, seed
        self.learn_mean = prior_mean == "learned"
        self.data: TaskBatch = pad_tasks(inputs, outputs)
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
        self.history: FitResult | None = None

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

    @torch.no_grad()
    def e_step_mean_processes(self) -> HyperPosterior:
        """VE (a): q(μ_k) ∝ p(μ_k) t_k(μ_k), the posterior of the tasks' sites on the grid (see the module docstring).

        Sites on μ_k − m_k: η = b − S m, H = S, with S = Σ_i τ_ik P_iᵀΨ_i⁻¹P_i and b = Σ_i τ_ik P_iᵀΨ_i⁻¹y_i;
        computed whitened, Ĉ = L(I + LᵀSL)⁻¹Lᵀ = RRᵀ and m̂ = m + Ĉ(b − S m).
        """
        psi = self.task_covariances()
        chol_psi = cholesky(psi, what="task covariance Ψ_i")
        psi_inv = torch.cholesky_inverse(chol_psi)
        psi_inv_y = torch.cholesky_solve(self.data.y.unsqueeze(-1), chol_psi).squeeze(-1)
        tau = self.responsibilities.T  # (K, M)
        S = self.data.scatter(tau, psi_inv)
        b = self.data.scatter_vec(tau, psi_inv_y)
        L = self._chol_prior()
        m = self.prior_means.unsqueeze(-1).expand(-1, S.shape[-1])
        sites = GaussianSites(b - (S @ m.unsqueeze(-1)).squeeze(-1), S)
        mean_v, tril_v = sites.whiten(L).whitened_posterior()
        root = L @ tril_v  # Ĉ = root rootᵀ
        mean = m + (L @ mean_v.unsqueeze(-1)).squeeze(-1)
        self.hyperpost = HyperPosterior(mean, root @ root.mT, root)
        return self.hyperpost

    def _chol_prior(self) -> Tensor:
        """L with LLᵀ = C_k on the grid, expanded to (K, N, N)."""
        L = cholesky(self.grid_covariance(), what="mean-process prior covariance C_k")
        return L.expand(self.num_clusters, *L.shape[-2:])

    def _task_terms(self, post: HyperPosterior, chol_psi: Tensor) -> tuple[Tensor, Tensor]:
        """(log N(y_i; P_i m̂_k, Ψ_i), ½ tr(Ψ_i⁻¹ P_i Ĉ_k P_iᵀ)), both (M, K)."""
        idx, mask = self.data.index, self.data.mask.to(post.mean.dtype)
        resid = (self.data.y.unsqueeze(0) - post.mean[:, idx]) * mask  # (K, M, n)
        log_lik, _ = log_normal(chol_psi, resid, mask.sum(-1))  # (K, M); the padding contributes 0
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
        """KL[q(μ_k) ‖ p(μ_k)] = `kl_whitened`(L⁻¹(m̂ − m), L⁻¹R) at the current C_k = LLᵀ, (K,).

        R is triangular (the E-step's root), so L⁻¹R is too: the KL's log-determinant is its diagonal.
        """
        L = self._chol_prior()
        diff = tri_solve(L, (post.mean - self.prior_means.unsqueeze(-1)).unsqueeze(-1)).squeeze(-1)
        return kl_whitened(diff, tri_solve(L, post.root))

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
        log_lik, white = log_normal(chol_psi, resid, mask.sum(-1))  # (K, M)
        psi_inv_r = tri_solve(chol_psi.mT, white.unsqueeze(-1), upper=True).squeeze(-1)
        psi_inv = torch.cholesky_inverse(chol_psi)
        sites = GaussianSites(self.data.scatter_vec(tau.T, psi_inv_r), self.data.scatter(tau.T, psi_inv))
        evidence = sites.log_normalizer(self._chol_prior())  # (K,)
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
        if guarded_lbfgs(params, target, scale=scale, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-10):
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

    def vem_iteration(self, m_step_iter: int = 50, m_step: str = "collapsed") -> float:
        """One iteration of the variational EM: VM, VE (a), VE (b); returns the ELBO after it."""
        self.m_step(m_step_iter, m_step)
        self.e_step_mean_processes()
        self.e_step_responsibilities()
        with torch.no_grad():
            return float(self.elbo())

    def fit(
        self,
        max_iter: int = 50,
        *,
        tol: float = 1e-6,
        m_step_iter: int = 50,
        m_step: str = "collapsed",
        progress: bool | None = None,
    ) -> FitResult:
        """Variational EM from the k-means τ, one `vem_iteration` per step on the shared step loop.

        Starting with the M-step at the k-means τ plays the role of the R package's skipped first
        τ update (hyperparameters are fitted before τ moves). ``m_step="expected"`` uses the papers'
        M-step (q frozen; see `m_step`), which needs many more iterations. Stops ("converged") when
        |ΔELBO| / |ELBO| <= ``tol``, or after ``max_iter`` iterations ("max_steps"); the history's
        ELBO column is non-decreasing (asserted in the tests). Also kept as ``self.history``.

        ``progress``: a bar over the EM iterations with the ELBO ("Magma" / "MagmaClust K=3"): True,
        False, or None for `gpvi.progress.show_progress`'s rule (a terminal or Jupyter, never under
        pytest; ``GPVI_PROGRESS=0``/``1`` decides where the caller does not).
        """
        for name, value in (("max_iter", max_iter), ("m_step_iter", m_step_iter)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative int, got {value!r}.")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise ValueError(f"`tol` must be a number >= 0, got {tol!r}.")
        if m_step not in ("collapsed", "expected"):
            raise ValueError(f"`m_step` must be 'collapsed' or 'expected', got {m_step!r}.")
        self.initialize_responsibilities()
        loop = StepLoop(
            max_iter,
            desc="Magma" if isinstance(self, Magma) else f"MagmaClust K={self.num_clusters}",
            progress=progress,
            early_stopping=RelativeChange(tol),
        )
        reason = "max_steps"
        with loop:
            for _ in loop.steps():
                value = self.vem_iteration(m_step_iter, m_step)
                stop = loop.record(value, {"elbo": value})
                if stop is not None:
                    reason = stop
                    break
        self.history = loop.result(reason)
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
    @property
    def input_dim(self) -> int:
        """d, the number of input columns of the training tasks."""
        return self.data.grid.shape[-1]

    def check_points(self, name: str, X: Any, *, rows: str = "P") -> Tensor:
        """``X`` as `P x d` (``rows`` names P in messages), with errors naming the argument ``name``.

        A 1-D ``X`` is one input column (only when d = 1). It must be a finite floating-point
        tensor of the model's dtype with d columns; it may be empty (P = 0).
        """
        d = self.input_dim
        shape = f"`{rows} x d`"
        if not isinstance(X, Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor of shape {shape} (d = {d}), got {type(X).__name__}.")
        if X.dim() == 1 and d == 1:
            X = X.unsqueeze(-1)
        if not X.is_floating_point():
            raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {X.dtype}.")
        if X.dim() != 2 or X.shape[-1] != d:
            one_d = " (a 1-D tensor is read as one column only when d = 1)" if X.dim() == 1 else ""
            raise ValueError(
                f"`{name}` must be {shape} with d = {d} (the training tasks' input dimension), "
                f"got shape {tuple(X.shape)}{one_d}."
            )
        if not torch.isfinite(X).all():
            raise ValueError(f"`{name}` contains NaN or inf entries.")
        dtype = self.data.X.dtype
        if X.dtype != dtype:
            raise TypeError(f"`{name}` is {X.dtype} but the model is {dtype}; convert it with `{name}.to({dtype})`.")
        return X

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
        return self.extend_batched(self.check_points("points", points))

    def new_task(
        self, X_obs: Tensor, y_obs: Tensor, *, learn_hyperparameters: bool | None = None, max_em_iter: int = 25
    ) -> NewTask:
        """Everything about a new task that does not depend on where it is predicted (`newtask.fit_new_task`).

        Exact cluster probabilities τ*_k ∝ π_k N(y*; m̂_k(t*), Ψ* + Ĉ_k(t*)); with task-specific
        hyperparameters ("Hoi"/"Hki") the new task's θ*, σ*² are learned by EM.
        """
        return fit_new_task(self, X_obs, y_obs, learn_hyperparameters=learn_hyperparameters, max_em_iter=max_em_iter)

    def predictive(self, task: NewTask | None, X_pred: Tensor) -> tuple[Tensor, Tensor]:
        """Per-cluster latent predictive of a new task at X_pred (*b, P, d) (`newtask.new_task_predictive`)."""
        return new_task_predictive(self, task, X_pred)

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
        X_pred = self.check_points("X_pred", X_pred)
        if (X_obs is None) != (y_obs is None):
            missing, given = ("X_obs", "y_obs") if X_obs is None else ("y_obs", "X_obs")
            raise ValueError(f"`{missing}` is None but `{given}` is not: give both observations, or neither.")
        if X_obs is None or X_obs.numel() == 0:
            _, noise = task_hyperparameters(self)
            with torch.no_grad():
                mean, cov = self.predictive(None, X_pred)
            return MixturePrediction(self.mixture_weights.clone(), mean, cov, noise.detach().reshape(()))
        task = self.new_task(X_obs, y_obs, learn_hyperparameters=learn_hyperparameters, max_em_iter=max_em_iter)
        with torch.no_grad():
            mean, cov = self.predictive(task, X_pred)
        return MixturePrediction(task.weights, mean, cov, task.noise)

    def cluster_probabilities(self, X_obs: Tensor, y_obs: Tensor) -> Tensor:
        """Exact membership probabilities τ*_k of a new task (K,)."""
        X_obs = self.check_points("X_obs", X_obs, rows="n")
        return self.predict(X_obs, y_obs, X_obs[:1]).weights

    @property
    def labels(self) -> Tensor:
        """MAP cluster of each training task (M,)."""
        return self.responsibilities.argmax(-1)


def _batched(kernel: Kernel | None, batch: torch.Size) -> ScaleKernel:
    """A ScaleKernel(RBF) (or a deep copy of ``kernel``) with the given batch shape."""
    if kernel is None:
        return ScaleKernel(RBFKernel(batch_shape=batch), batch_shape=batch)
    if not isinstance(kernel, ScaleKernel) or not hasattr(kernel.base_kernel, "lengthscale"):
        raise TypeError("kernels must be a gpytorch ScaleKernel around a kernel with a lengthscale.")
    base = copy.deepcopy(kernel.base_kernel)
    new = type(base)(batch_shape=batch, **({"nu": base.nu} if hasattr(base, "nu") else {}))
    return ScaleKernel(new, batch_shape=batch)


class Magma(MagmaClust):
    """Magma (Leroy et al. 2022): one common mean process for all tasks; MagmaClust with K = 1.

    The E-step is exact, so `elbo()` is the exact log marginal likelihood of the tasks given the
    hyperparameters. Hypotheses "Ho" (task hyperparameters shared) or "Hi" (per task).
    """

    def __init__(self, tasks: Any, *, hypothesis: str = "Ho", **options: Any) -> None:
        if hypothesis not in ("Ho", "Hi"):
            raise ValueError(f"Magma's `hypothesis` must be 'Ho' or 'Hi', got {hypothesis!r}.")
        super().__init__(tasks, 1, hypothesis="Ho" + hypothesis[1], **options)


__all__ = ["HyperPosterior", "Magma", "MagmaClust"]
