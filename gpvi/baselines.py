"""Reference baselines built from plain gpytorch, for demos, benchmarks and studies.

`GPyTorchSVGP` is the textbook gpytorch SVGP (Hensman et al. 2015): an `ApproximateGP` with a
whitened `VariationalStrategy` and a full-rank `CholeskyVariationalDistribution`, trained by Adam
on every parameter against `VariationalELBO` with `fit_gpytorch_svgp`. Nothing here uses gpvi's
own inference code, so it is an independent point of comparison for `gpvi.SVGP` + `gpvi.fit`.

    model, likelihood = GPyTorchSVGP.from_data(train_X, num_inducing=256)
    result = fit_gpytorch_svgp(model, likelihood, train_X, train_Y, steps=2000, batch_size=1024)
    mean, var = predict_gpytorch_svgp(model, likelihood, test_X)   # observation noise included

`fit_gpytorch_svgp` returns a `gpvi.FitResult` whose history has the same keys as `gpvi.fit`'s
(step, elbo, expected_log_lik, kl, time; ELBO terms are totals over the data set, not per datum),
so the two can be tabulated and plotted side by side.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from botorch.models.approximate_gp import ApproximateGPyTorchModel
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import Kernel, MaternKernel, RBFKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import ConstantMean, Mean
from gpytorch.mlls import VariationalELBO
from gpytorch.models import ApproximateGP
from gpytorch.variational import CholeskyVariationalDistribution, NaturalVariationalDistribution, VariationalStrategy
from torch import Tensor

from gpvi._validation import check_tensor
from gpvi.features.selection import select_inducing_points
from gpvi.fit.batches import minibatches
from gpvi.models.priors import default_kernel as gpvi_default_kernel
from gpvi.models.priors import singletaskgp_modules
from gpvi.progress import FitResult, StepLoop

__all__ = [
    "GPyTorchSVGP",
    "GPyTorchSVGPModel",
    "StreamingSGPR",
    "default_kernel",
    "fit_gpytorch_svgp",
    "predict_gpytorch_svgp",
]


def default_kernel(train_X: Tensor, *, gaussian: bool = True) -> Kernel:
    """The kernel `gpvi.SVGP` builds from these inputs (`gpvi.models.priors.default_kernel`:
    SingleTaskGP's RBF with its dimension-scaled lengthscale prior; in a `ScaleKernel` for a
    non-Gaussian likelihood), so a comparison with gpvi isolates the inference."""
    return gpvi_default_kernel(train_X, gaussian=gaussian)


class GPyTorchSVGP(ApproximateGP):
    """gpytorch's standard SVGP: whitened `VariationalStrategy` + `CholeskyVariationalDistribution`.

    Args:
        inducing_points: `M x d` initial inducing inputs Z (learned during training).
        kernel: Covariance module; default ``ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=d))``
            with gpytorch's default hyperparameters.
        mean_module: Prior mean; default `ConstantMean`.
        learn_inducing_locations: Train Z along with the other parameters (default True).
        natural: Use gpytorch's `NaturalVariationalDistribution` (for its `gpytorch.optim.NGD`
            natural-gradient optimiser; see `fit_gpytorch_svgp_ngd`) instead of the Cholesky one.

    The model's ``forward`` is the prior; calling the model gives q(f). Pair it with a
    `GaussianLikelihood` (see `from_data`) and fit it with `fit_gpytorch_svgp`.
    """

    def __init__(
        self,
        inducing_points: Tensor,
        kernel: Kernel | None = None,
        mean_module: Mean | None = None,
        *,
        learn_inducing_locations: bool = True,
        natural: bool = False,
    ) -> None:
        if inducing_points.dim() != 2:
            raise ValueError(f"`inducing_points` must be `M x d`, got shape {tuple(inducing_points.shape)}.")
        M, d = inducing_points.shape
        q = (NaturalVariationalDistribution if natural else CholeskyVariationalDistribution)(M).to(inducing_points)
        strategy = VariationalStrategy(self, inducing_points, q, learn_inducing_locations=learn_inducing_locations)
        super().__init__(strategy)
        self.mean_module = ConstantMean() if mean_module is None else mean_module
        if kernel is None:
            kernel = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=d))
        self.covar_module = kernel
        self.to(inducing_points)

    def forward(self, x: Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))

    @classmethod
    def from_data(
        cls,
        train_X: Tensor,
        num_inducing: int = 128,
        inducing: str | Tensor = "kmeans",
        *,
        seed: int = 0,
        natural: bool = False,
    ) -> tuple[GPyTorchSVGP, GaussianLikelihood]:
        """A model and likelihood initialised exactly as ``gpvi.SVGP(train_X, ..., seed=seed)``.

        Same kernel, priors and initial lengthscales (`default_kernel`), same initial Z (gpvi's
        `select_inducing_points` with the same ``inducing`` method and seed), and SingleTaskGP's
        `GaussianLikelihood` (log-normal noise prior, noise ≥ 1e-4), as gpvi's default.
        """
        kernel = default_kernel(train_X)
        Z = select_inducing_points(train_X, num_inducing, inducing, kernel, seed=seed)
        _, likelihood = singletaskgp_modules(train_X.shape[-1], dtype=train_X.dtype)
        return cls(Z, kernel=kernel, natural=natural), likelihood.to(train_X)


def fit_gpytorch_svgp(
    model: ApproximateGP,
    likelihood: GaussianLikelihood,
    X: Tensor,
    y: Tensor,
    steps: int = 1000,
    batch_size: int | None = 1024,
    lr: float = 0.01,
    progress: bool | None = None,
    *,
    seed: int = 0,
) -> FitResult:
    """Train a gpytorch SVGP with Adam on the minibatch `VariationalELBO` (the standard recipe).

    Every parameter of the model and likelihood (q, Z, kernel, mean, noise) is updated by one Adam
    step per minibatch. Minibatches are drawn as shuffled epochs (the last partial batch of an
    epoch is dropped), as in `gpvi.fit`. No early stopping: exactly ``steps`` steps are taken
    unless the loss becomes non-finite.

    Args:
        model: A gpytorch `ApproximateGP` (e.g. `GPyTorchSVGP`).
        likelihood: Its likelihood.
        X: `n x d` training inputs.
        y: `n` or `n x 1` training targets.
        steps: Number of Adam steps (each on one minibatch).
        batch_size: Minibatch size B (capped at n); None: all data.
        lr: Adam's learning rate.
        progress: Show a tqdm bar; default `gpvi.progress.show_progress` (terminal or Jupyter, not pytest).
        seed: Seed of the minibatch order.

    Returns:
        A `gpvi.FitResult`; history entries hold the step, the minibatch estimate of the total
        ELBO, its expected log-likelihood and KL parts (totals over the n data, not per datum), and
        the elapsed time. Model and likelihood are left in eval mode.
    """
    if y.dim() == 2 and y.shape[-1] == 1:
        y = y.squeeze(-1)
    if y.dim() != 1 or X.dim() != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"Expected X `n x d` and y `n` (or `n x 1`), got {tuple(X.shape)} and {tuple(y.shape)}.")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be a non-negative int, got {steps!r}.")
    N = X.shape[0]
    B = N if batch_size is None else min(int(batch_size), N)
    if B < 1:
        raise ValueError(f"`batch_size` must be positive, got {batch_size!r}.")

    mll = VariationalELBO(likelihood, model, num_data=N, combine_terms=False)
    params = list({id(p): p for p in [*model.parameters(), *likelihood.parameters()]}.values())
    adam = torch.optim.Adam(params, lr=lr)
    loop = StepLoop(steps, desc="gpytorch SVGP", progress=progress)
    reason = "max_steps"
    model.train()
    likelihood.train()
    batches = minibatches(X, y, B, seed=seed)
    try:
        with loop:
            for _ in loop.steps():
                batch = next(batches)
                ell, kl, log_prior = mll(model(batch.X), batch.Y)[:3]
                loss = -(ell - kl + log_prior)
                adam.zero_grad(set_to_none=True)
                loss.backward()
                adam.step()
                parts = {"elbo": -float(loss.detach()) * N, "expected_log_lik": float(ell.detach()) * N}
                parts["kl"] = float(kl.detach()) * N
                reason = loop.record(parts["elbo"], parts) or reason
                if reason != "max_steps":
                    break
    finally:
        model.eval()
        likelihood.eval()
    return loop.result(reason)


@torch.no_grad()
def predict_gpytorch_svgp(
    model: ApproximateGP,
    likelihood: GaussianLikelihood | None,
    X: Tensor,
    *,
    batch_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """Predictive mean and marginal variance at `n x d` inputs, in chunks of ``batch_size`` rows.

    With a likelihood the variance includes its observation noise; with ``likelihood=None`` it is
    the latent q(f) variance. Returns two `n` tensors.
    """
    model.eval()
    if likelihood is not None:
        likelihood.eval()
    means, variances = [], []
    for i in range(0, X.shape[0], batch_size):
        f = model(X[i : i + batch_size])
        mean, var = f.mean, f.variance
        if likelihood is not None:
            var = var + likelihood.noise.squeeze(-1)
        means.append(mean)
        variances.append(var)
    return torch.cat(means), torch.cat(variances)


class GPyTorchSVGPModel(ApproximateGPyTorchModel):
    """gpytorch's SVGP (`GPyTorchSVGP` + `GaussianLikelihood`) as a BoTorch model that fits itself.

    The regression studies' peer "gpytorch-svgp" (`gpvi.models.registry`): built from data like
    ``GPyTorchSVGP.from_data``, trained by `fit` (Adam on the `VariationalELBO`,
    `fit_gpytorch_svgp`), predicted through BoTorch's `posterior` (``observation_noise=True`` adds
    the likelihood's noise, as `predict_gpytorch_svgp` does).
    """

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        num_inducing: int = 128,
        inducing: str | Tensor = "kmeans",
        *,
        seed: int = 0,
    ) -> None:
        base, likelihood = GPyTorchSVGP.from_data(train_X, num_inducing, inducing, seed=seed)
        super().__init__(model=base, likelihood=likelihood, num_outputs=1)
        self.train_X, self.train_Y = train_X, train_Y

    def fit(
        self,
        *,
        max_steps: int = 1000,
        batch_size: int | None = 1024,
        lr: float = 0.01,
        seed: int = 0,
        progress: bool | None = None,
    ) -> FitResult:
        """Adam on the minibatch `VariationalELBO` (`fit_gpytorch_svgp`)."""
        return fit_gpytorch_svgp(
            self.model, self.likelihood, self.train_X, self.train_Y, max_steps, batch_size, lr, progress, seed=seed
        )

    def posterior(self, X: Tensor, *args: Any, **kwargs: Any) -> Any:
        self.model.eval()
        self.likelihood.eval()
        return super().posterior(X, *args, **kwargs)


# ----------------------------------------------------------------------------------------------
# Streaming sparse GP regression: Bui, Nguyen & Turner (2017), collapsed VFE ("OSGPR-VFE").
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WhitenedQ:
    """q(b) = N(m_b, S_b) after an update, whitened by the prior of b under that update's θ.

    With ``L Lᵀ = K_bb + jitter·I`` (θ at the end of the update) and ``b = L u``, the posterior is
    q(u) = N(B⁻¹c, B⁻¹), ``B = I + G``. So ``m_b = L B⁻¹ c``, ``S_b = L B⁻¹ Lᵀ`` and, in precision
    form, ``S_b⁻¹ = L⁻ᵀ B L⁻¹``, ``S_b⁻¹ − (K_bb + jI)⁻¹ = L⁻ᵀ G L⁻¹`` (PSD by construction) and
    ``S_b⁻¹ m_b = L⁻ᵀ c``. The next update reads the old approximation only through these factors.
    """

    Z: Tensor  # (M, d) inducing inputs
    ids: Tensor  # (M,) int64 identity of each inducing variable (shared jitter "nugget", see StreamingSGPR)
    L: Tensor  # (M, M) lower Cholesky factor of K_bb + jitter·I under θ of this update (K'_aa of the next)
    G: Tensor  # (M, M) B − I: whitened precision contributed by all data seen so far (PSD)
    c: Tensor  # (M,) whitened natural parameter
    LB: Tensor  # (M, M) lower Cholesky factor of B
    const: Tensor  # () ½ log|B| − ½ cᵀB⁻¹c = ½ log|K'_aa| − ½ log|S_a| − ½ m_aᵀS_a⁻¹m_a for the next update


def _cholesky(A: Tensor, what: str) -> Tensor:
    """Lower Cholesky factor of a symmetric PD matrix; on failure retry with growing diagonal jitter."""
    L, info = torch.linalg.cholesky_ex(A)
    if not bool(info.any()):
        return L
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    scale = A.diagonal().abs().mean().clamp_min(1.0).item()
    for k in range(1, 7):
        extra = scale * 10.0 ** (k - 10)
        L, info = torch.linalg.cholesky_ex(A + extra * eye)
        if not bool(info.any()):
            warnings.warn(f"StreamingSGPR: {what} was not numerically PD; added {extra:.1e} to its diagonal.")
            return L
    raise torch.linalg.LinAlgError(f"StreamingSGPR: Cholesky factorisation of {what} failed.")


def _osgpr_vfe(
    kernel: Kernel,
    noise: Tensor,
    Zb: Tensor,
    ids_b: Tensor,
    X: Tensor,
    y: Tensor,
    old: _WhitenedQ | None,
    jitter: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Collapsed online bound F(θ, Z_b) of Bui et al. (2017) and the whitened optimal q(b).

    Shapes: X (n, d), y (n,), Z_b (M_b, d); the old state has M_a inducing inputs. Returns
    ``(F, L_b, G, c, L_B)`` with ``F`` a scalar and the others as in `_WhitenedQ`. With ``old=None``
    the a-terms vanish and F is Titsias' (2009) collapsed SGPR bound.

    Formula (σ² = noise, K_bb includes the jitter, Φ_f = L_b⁻¹K_bf, Ψ = L_b⁻¹K_ba,
    W = L'⁻¹Ψᵀ with L' the old factor of K'_aa, G', c', const' the old state)::

        B = I + σ⁻² Φ_f Φ_fᵀ + Wᵀ G' W            c = σ⁻² Φ_f y + Wᵀ c'
        V = L'⁻¹ (K_aa − Ψᵀ Ψ) L'⁻ᵀ               (= L'⁻¹(K_aa − Q_aa)L'⁻ᵀ, under the new θ)
        F = −n/2 log(2πσ²) − ½σ⁻² yᵀy − ½ log|B| + ½ cᵀB⁻¹c
            − ½σ⁻² (tr K_ff − tr Φ_fᵀΦ_f) − ½ tr(G' V) + const'

    Cost: O(n M_b² + M_a² M_b + M_a M_b² + M_a³ + M_b³) time, O(n M_b + M_a M_b) memory; no
    explicit inverse is formed, only Cholesky factors and triangular solves.
    """
    n = X.shape[0]
    eye_b = torch.eye(Zb.shape[0], dtype=X.dtype, device=X.device)
    solve = torch.linalg.solve_triangular
    Lb = _cholesky(kernel(Zb).to_dense() + jitter * eye_b, "K_bb")
    Phi = solve(Lb, kernel(Zb, X).to_dense(), upper=False)  # (M_b, n)
    kff = kernel(X, diag=True)
    PhiPhi = Phi @ Phi.mT
    G = PhiPhi / noise
    c = Phi @ y / noise
    bound = -0.5 * n * torch.log(2 * math.pi * noise) - 0.5 * (y @ y) / noise
    bound = bound - 0.5 * (kff.sum() - PhiPhi.diagonal().sum()) / noise
    if old is not None:
        nugget = jitter * (old.ids[:, None] == ids_b[None, :]).to(X.dtype)
        Psi = solve(Lb, kernel(Zb, old.Z).to_dense() + nugget.mT, upper=False)  # (M_b, M_a) = L_b⁻¹ K_ba
        W = solve(old.L, Psi.mT, upper=False)  # (M_a, M_b) = L'⁻¹ K_ab L_b⁻ᵀ
        GW = old.G @ W
        P = W.mT @ GW
        G = G + 0.5 * (P + P.mT)
        c = c + W.mT @ old.c
        eye_a = torch.eye(old.Z.shape[0], dtype=X.dtype, device=X.device)
        A = solve(old.L, kernel(old.Z).to_dense() + jitter * eye_a, upper=False)
        V = solve(old.L, A.mT, upper=False) - W @ W.mT  # L'⁻¹ (K_aa − Q_aa) L'⁻ᵀ
        bound = bound - 0.5 * (old.G * V).sum() + old.const
    LB = _cholesky(torch.eye(G.shape[0], dtype=X.dtype, device=X.device) + G, "B = I + G")
    v = solve(LB, c.unsqueeze(-1), upper=False).squeeze(-1)
    bound = bound - LB.diagonal().log().sum() + 0.5 * (v @ v)
    return bound, Lb, G, c, LB


class StreamingSGPR:
    """Bui, Nguyen & Turner (2017) OSGPR-VFE baseline (collapsed, Gaussian likelihood).

    Streaming sparse GP regression: "Streaming sparse Gaussian process approximations", NeurIPS 2017,
    Section 3 (the collapsed bound for regression). Each call to `update` sees one batch (X, y) only;
    everything learned from earlier batches is carried by the old approximation q_old(a) = N(m_a, S_a)
    at the old inducing inputs Z_a, the old hyperparameters θ_old and K'_aa = K_aa(θ_old).

    Model and bound. The latent f has a zero-mean GP prior with covariance ``kernel`` (a gpytorch
    kernel, default ``ScaleKernel(RBFKernel(ard_num_dims=d))``) and y = f(X) + ε, ε ~ N(0, σ² I),
    σ² = ``noise`` (a variance). The new approximation is q(f) = p(f_≠b | b, θ) q(b) at new inducing
    inputs Z_b, and the online variational bound, on log p(y | y_old) up to the old normaliser, is

        F(θ) = ∫ q(f) log[ p(y|f) p(f|θ) q_old(a) / (p(a|θ_old) q(f)) ] df,

    where q_old(a)/p(a|θ_old) acts as a Gaussian pseudo-likelihood for a: precision
    D_a⁻¹ = S_a⁻¹ − K'_aa⁻¹, natural parameter S_a⁻¹ m_a. With q(b) optimal (closed form, Gaussian)
    this is the paper's collapsed bound

        F(θ) = log N(ŷ | 0, K̂_fb K_bb⁻¹ K̂_bf + Σ̂_y) − ½ σ⁻² tr(K_ff − Q_ff) − ½ tr(D_a⁻¹(K_aa − Q_aa)) + Δ_a,
        ŷ = [y; D_a S_a⁻¹ m_a],  K̂_fb = [K_fb; K_ab],  Σ̂_y = blkdiag(σ² I, D_a),  Q_·· = K_·b K_bb⁻¹ K_b·,
        Δ_a = ½ log|K'_aa| − ½ log|S_a| + ½ log|D_a| + ½ m_aᵀ(S_a⁻¹ D_a S_a⁻¹ − S_a⁻¹) m_a + (M_a/2) log 2π,

    (K_ff, K_fb, K_ab, K_aa, K_bb under the new θ; K'_aa, S_a, m_a fixed). Δ_a is what makes
    exp(log N(ŷ_a | a, D_a) + Δ_a) equal q_old(a)/p(a|θ_old) exactly; its (M_a/2) log 2π cancels the
    normaliser of the a-block of N(ŷ | ...). It does not depend on θ, so it matters only for the
    reported value. On the first batch there is no a, and F is Titsias' (2009) collapsed SGPR bound.

    Stable form used here (equal to the above; D_a is never formed, so a singular D_a⁻¹ is fine).
    After each update q(b) is stored whitened: with L Lᵀ = K_bb + jI, q(u = L⁻¹b) = N(B⁻¹c, B⁻¹),
    B = I + G. At the next update that L is L' (K'_aa = L'L'ᵀ), so D_a⁻¹ = L'⁻ᵀ G' L'⁻¹,
    S_a⁻¹ m_a = L'⁻ᵀ c', ½log|K'_aa| − ½log|S_a| = ½log|B'| and m_aᵀS_a⁻¹m_a = c'ᵀB'⁻¹c'. Writing
    Φ_f = L_b⁻¹K_bf (M_b × n), W = L'⁻¹ K_ab L_b⁻ᵀ (M_a × M_b)::

        B = I + σ⁻² Φ_f Φ_fᵀ + Wᵀ G' W,   c = σ⁻² Φ_f y + Wᵀ c'          (optimal q(u) = N(B⁻¹c, B⁻¹))
        F = −n/2 log(2πσ²) − ½σ⁻² yᵀy − ½ log|B| + ½ cᵀB⁻¹c − ½σ⁻² (tr K_ff − ‖Φ_f‖²_F)
            − ½ tr(G' · L'⁻¹(K_aa − Q_aa)L'⁻ᵀ) + ½ log|B'| − ½ c'ᵀB'⁻¹c'.

    G = B − I accumulates σ⁻²Φ_fΦ_fᵀ terms and stays PSD. Cost per bound evaluation:
    O(n M_b² + M_a² M_b + M_a M_b² + M_a³ + M_b³) time, O(n M_b) memory; the carried state is O(M²).

    Jitter convention. Each inducing variable is u = f(z) + ε with an independent "nugget"
    ε ~ N(0, jitter); a variable kept from Z_a into Z_b is the *same* variable (same nugget), so
    cov(a_i, b_k) = k(z_i, z_k) + jitter·[i and k are the same kept variable]. Data f(X) carry no
    nugget. This makes K_bb + jI and K'_aa + jI consistent priors, and keeps Bui's update exact when
    Z_b = Z_a and θ = θ_old (then the stream reproduces batch SGPR on all data).

    Inducing inputs (the reference protocol). First batch: M = ``num_inducing`` inputs of the batch
    drawn at random without replacement (all of them if fewer). Later batches: n_new = round(f·M)
    inputs drawn at random from the new batch (f = ``new_inducing_fraction``; at most the batch
    size) and min(M_a, M − n_new) of the old Z_a kept at random, then more new inputs if that is
    short of M (70 % old, 30 % new by default, as in the reference code). With f = 0 and a first
    batch of at least M points, Z never changes.

    Hyperparameters. θ (kernel hyperparameters, through gpytorch's constraints, and the noise,
    constrained > 1e-6) — and Z_b with ``learn_inducing`` — are optimised by L-BFGS
    (``torch.optim.LBFGS``, strong Wolfe line search, ``max_iter`` iterations) on F / n; q(b) is
    then set to its optimum. Kernel priors, if any, are ignored (type-II maximum likelihood).

    Args:
        num_inducing: Target number M of inducing inputs.
        kernel: A gpytorch kernel; default ``ScaleKernel(RBFKernel(ard_num_dims=d))`` with gpytorch's
            initial hyperparameters. It is moved to the inputs' device and dtype on the first update.
        noise: Initial Gaussian noise variance σ².
        jitter: Diagonal jitter of the inducing prior covariances (1e-6 suits float64).
        new_inducing_fraction: Fraction f of inducing inputs replaced by new-batch inputs per update.
        max_iter: L-BFGS iterations per update (0: no optimisation).
        learn_hyperparameters: Optimise the kernel hyperparameters and the noise.
        learn_inducing: Optimise the new inducing inputs Z_b too.
        seed: Seed of the random inducing-input choices.

    Attributes:
        Z: (M, d) current inducing inputs (None before the first update).
        kernel: The gpytorch kernel (its hyperparameters are θ after the last update).
        noise: Noise variance σ² as a 0-d tensor (settable).

    Inputs are used as given (standardise them beforehand), in their own dtype and device (float64
    recommended); later batches must match the first one's dtype, device and d. `predict` uses q(b)
    as set by the last `update` with the current kernel; `bound` re-evaluates F on the last batch at
    the current θ. The last batch is kept for `bound` (O(n d) memory).

    Example::

        model = StreamingSGPR(num_inducing=50)
        for X, y in batches:
            model.update(X, y)
        mean, var = model.predict_y(X_test)
    """

    def __init__(
        self,
        num_inducing: int = 100,
        *,
        kernel: Kernel | None = None,
        noise: float = 0.1,
        jitter: float = 1e-6,
        new_inducing_fraction: float = 0.3,
        max_iter: int = 100,
        learn_hyperparameters: bool = True,
        learn_inducing: bool = False,
        seed: int = 0,
    ) -> None:
        if int(num_inducing) != num_inducing or num_inducing < 1:
            raise ValueError(f"`num_inducing` must be a positive integer, got {num_inducing!r}.")
        if not 0.0 <= new_inducing_fraction <= 1.0:
            raise ValueError(f"`new_inducing_fraction` must lie in [0, 1], got {new_inducing_fraction!r}.")
        if not (math.isfinite(noise) and noise > 1e-6):
            raise ValueError(f"`noise` must be a variance > 1e-6, got {noise!r}.")
        if not (math.isfinite(jitter) and jitter >= 0):
            raise ValueError(f"`jitter` must be >= 0, got {jitter!r}.")
        if int(max_iter) != max_iter or max_iter < 0:
            raise ValueError(f"`max_iter` must be a non-negative integer, got {max_iter!r}.")
        if kernel is not None and not isinstance(kernel, Kernel):
            raise TypeError(f"`kernel` must be a gpytorch Kernel, got {type(kernel).__name__}.")
        self.num_inducing = int(num_inducing)
        self.kernel: Kernel | None = kernel
        self.jitter = float(jitter)
        self.new_inducing_fraction = float(new_inducing_fraction)
        self.max_iter = int(max_iter)
        self.learn_hyperparameters = bool(learn_hyperparameters)
        self.learn_inducing = bool(learn_inducing)
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self._noise_constraint = GreaterThan(1e-6)
        self._raw_noise = self._noise_constraint.inverse_transform(torch.tensor(float(noise), dtype=torch.float64))
        self._q: _WhitenedQ | None = None  # q(b) after the last update
        self._old: _WhitenedQ | None = None  # q_old(a) that the last update started from
        self._last: tuple[Tensor, Tensor] | None = None  # the last batch (X, y)
        self._next_id = 0
        self.num_updates = 0

    # -- public attributes -----------------------------------------------------------------------

    @property
    def Z(self) -> Tensor | None:
        """(M, d) current inducing inputs (None before the first update)."""
        return None if self._q is None else self._q.Z

    @property
    def noise(self) -> Tensor:
        """Gaussian noise variance σ² (0-d tensor)."""
        return self._noise_constraint.transform(self._raw_noise).detach()

    @noise.setter
    def noise(self, value: float | Tensor) -> None:
        value = torch.as_tensor(value, dtype=self._raw_noise.dtype, device=self._raw_noise.device)
        if not (torch.isfinite(value) and value > 1e-6):
            raise ValueError(f"`noise` must be a variance > 1e-6, got {value.item()!r}.")
        self._raw_noise = self._noise_constraint.inverse_transform(value).detach()

    @property
    def q_mean(self) -> Tensor:
        """(M,) mean m_b of q(b) after the last update (m_b = L B⁻¹ c)."""
        q = self._require_q()
        mu = torch.cholesky_solve(q.c.unsqueeze(-1), q.LB).squeeze(-1)
        return q.L @ mu

    @property
    def q_covar(self) -> Tensor:
        """(M, M) covariance S_b of q(b) after the last update (S_b = L B⁻¹ Lᵀ)."""
        q = self._require_q()
        R = torch.linalg.solve_triangular(q.LB, q.L.mT, upper=False)
        return R.mT @ R

    # -- inputs ----------------------------------------------------------------------------------

    def _require_q(self) -> _WhitenedQ:
        if self._q is None:
            raise RuntimeError("StreamingSGPR has seen no data yet; call `update(X, y)` first.")
        return self._q

    def _check_X(self, X: object, name: str = "X") -> Tensor:
        X = check_tensor(name, X, ndim=2, shape_hint="`n x d`")
        if self._q is not None:
            Z = self._q.Z
            if X.shape[-1] != Z.shape[-1]:
                raise ValueError(f"`{name}` has {X.shape[-1]} columns, but the model was built with d = {Z.shape[-1]}.")
            if X.dtype != Z.dtype:
                raise TypeError(f"`{name}` has dtype {X.dtype}, but the model's first batch was {Z.dtype}.")
            if X.device != Z.device:
                raise ValueError(f"`{name}` is on {X.device}, but the model lives on {Z.device}.")
        return X

    def _check_y(self, y: object, X: Tensor) -> Tensor:
        y = check_tensor("y", y, ndim=(1, 2), shape_hint="`n` or `n x 1`")
        if y.dim() == 2 and y.shape[-1] != 1:
            raise ValueError(f"`y` must be `n` or `n x 1` (one output), got shape {tuple(y.shape)}.")
        y = y.reshape(-1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"`y` has {y.shape[0]} rows but `X` has {X.shape[0]}; they must match.")
        if y.dtype != X.dtype or y.device != X.device:
            raise TypeError(f"`y` ({y.dtype}, {y.device}) must match `X` ({X.dtype}, {X.device}).")
        return y

    # -- inducing inputs -------------------------------------------------------------------------

    def _randperm(self, n: int, device: torch.device) -> Tensor:
        return torch.randperm(n, generator=self._generator).to(device)

    def _new_inducing(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Z_b and its variable ids, by the reference protocol (see the class docstring)."""
        n = X.shape[0]
        if self._q is None:
            idx = self._randperm(n, X.device)[: min(self.num_inducing, n)]
            Z, ids = X[idx], torch.arange(idx.numel(), device=X.device)
        else:
            Za, ids_a = self._q.Z, self._q.ids
            Ma = Za.shape[0]
            M = self.num_inducing
            n_new = min(int(round(self.new_inducing_fraction * M)), n)
            n_keep = min(Ma, M - n_new)
            n_new = min(M - n_keep, n)  # fill up to M when Z_a or the batch is short
            keep = self._randperm(Ma, X.device)[:n_keep].sort().values
            new = self._randperm(n, X.device)[:n_new]
            new_ids = torch.arange(self._next_id, self._next_id + n_new, device=X.device)
            Z, ids = torch.cat([Za[keep], X[new]]), torch.cat([ids_a[keep], new_ids])
        self._next_id = max(self._next_id, int(ids.max()) + 1)
        return Z.clone(), ids

    # -- fitting ---------------------------------------------------------------------------------

    def update(self, X: Tensor, y: Tensor) -> StreamingSGPR:
        """Absorb one batch: choose Z_b, optimise θ (and Z_b) on the online bound, set q(b).

        Args:
            X: (n, d) inputs of the new batch.
            y: (n,) or (n, 1) targets.

        Returns:
            self.
        """
        X = self._check_X(X)
        y = self._check_y(y, X)
        if self.kernel is None:
            self.kernel = ScaleKernel(RBFKernel(ard_num_dims=X.shape[-1]))
        if self._q is None:
            self.kernel = self.kernel.to(device=X.device, dtype=X.dtype)
            self._noise_constraint = self._noise_constraint.to(device=X.device, dtype=X.dtype)
            self._raw_noise = self._raw_noise.to(device=X.device, dtype=X.dtype)
        old = self._q
        Zb, ids_b = self._new_inducing(X)

        params: list[Tensor] = []
        raw_noise = self._raw_noise.detach().clone()
        if self.learn_hyperparameters:
            raw_noise.requires_grad_(True)
            params += [raw_noise, *self.kernel.parameters()]
        if self.learn_inducing:
            Zb = Zb.detach().clone().requires_grad_(True)
            params.append(Zb)
        if params and self.max_iter > 0:
            start = [p.detach().clone() for p in params]
            optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe")
            n = X.shape[0]

            def closure() -> Tensor:
                optimizer.zero_grad()
                noise = self._noise_constraint.transform(raw_noise)
                loss = -_osgpr_vfe(self.kernel, noise, Zb, ids_b, X, y, old, self.jitter)[0] / n
                loss.backward()
                return loss

            self.kernel.train()
            try:
                optimizer.step(closure)
                ok = all(bool(torch.isfinite(p).all()) for p in params)
            except (RuntimeError, torch.linalg.LinAlgError) as err:
                warnings.warn(f"StreamingSGPR: L-BFGS stopped ({err}); restoring the starting point.")
                ok = False
            with torch.no_grad():
                if ok:
                    noise = self._noise_constraint.transform(raw_noise)
                    ok = bool(torch.isfinite(_osgpr_vfe(self.kernel, noise, Zb, ids_b, X, y, old, self.jitter)[0]))
                if not ok:
                    for p, p0 in zip(params, start, strict=True):
                        p.copy_(p0)
            for p in [*params, *self.kernel.parameters()]:
                p.grad = None
        self.kernel.eval()

        self._raw_noise = raw_noise.detach()
        Zb = Zb.detach()
        with torch.no_grad():
            _, Lb, G, c, LB = _osgpr_vfe(self.kernel, self.noise, Zb, ids_b, X, y, old, self.jitter)
            v = torch.linalg.solve_triangular(LB, c.unsqueeze(-1), upper=False).squeeze(-1)
            const = LB.diagonal().log().sum() - 0.5 * (v @ v)
        self._old = old
        self._q = _WhitenedQ(Z=Zb, ids=ids_b, L=Lb, G=G, c=c, LB=LB, const=const)
        self._last = (X, y)
        self.num_updates += 1
        return self

    @torch.no_grad()
    def bound(self) -> Tensor:
        """The online bound F (0-d tensor) of the last batch at the current θ and Z.

        On the first batch this is Titsias' collapsed SGPR bound; later, Bui et al.'s collapsed
        online bound including Δ_a (see the class docstring): a lower bound on
        log p(y_t | y_1..t−1) under the chain of approximations.
        """
        q = self._require_q()
        X, y = self._last
        return _osgpr_vfe(self.kernel, self.noise, q.Z, q.ids, X, y, self._old, self.jitter)[0]

    # -- prediction ------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Latent predictive mean and variance of f at (n, d) inputs, each (n,).

        With Φ_* = L⁻¹K_b* and q(u) = N(B⁻¹c, B⁻¹): mean Φ_*ᵀB⁻¹c,
        variance k_** − ‖Φ_*‖² + ‖L_B⁻¹Φ_*‖² (columnwise). O(n M²) time.
        """
        q = self._require_q()
        X = self._check_X(X)
        solve = torch.linalg.solve_triangular
        Phi = solve(q.L, self.kernel(q.Z, X).to_dense(), upper=False)  # (M, n)
        mu = torch.cholesky_solve(q.c.unsqueeze(-1), q.LB).squeeze(-1)
        mean = Phi.mT @ mu
        var = self.kernel(X, diag=True) - Phi.square().sum(0) + solve(q.LB, Phi, upper=False).square().sum(0)
        return mean, var.clamp_min(0.0)

    def predict_y(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Predictive mean and variance of y at (n, d) inputs (latent variance + σ²), each (n,)."""
        mean, var = self.predict(X)
        return mean, var + self.noise
