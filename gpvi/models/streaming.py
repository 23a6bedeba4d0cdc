"""The memory-based sequential update of a dual SVGP: bounded cost per batch, no point counted twice.

Chang, Verma, John, Solin & Khan (2023), "Memory-Based Dual Gaussian Processes for Sequential
Learning", ICML (method note `dual-memory-hyperparameters.md` §2). The model holds

- the *active set*: its training data, the memory 𝓜 (at most ``memory_size`` past points) and the
  newest batch, each with its per-datum sites (α_n, β_n) (`DualSVGP.point_sites`), exact on any
  inducing inputs because the inputs are kept;
- the *frozen factor* t_F(u) = exp(η_Fᵀu − ½uᵀH_Fu): the summed sites of every other point seen,
  on the current inducing variables (`gpvi.variational.dual`);

and q(u − E[u]) ∝ N(0, K) t_F(u) Π_{n ∈ active} t_n(f_n). Each point seen is in exactly one of the
two, so nothing is counted twice (the reference code adds memory sites on top of their frozen
copies). One `stream_update` with a batch D_t:

1. Z' = greedy variance reduction (pivoted Cholesky) over [Z; active inputs; X_t], M points, under
   the current kernel (`gpvi.features.selection.greedy_variance_indices`), fewer where the rest of
   the pool has conditional variance below `RESELECT_FLOOR` times the largest prior variance.
2. t_F moves to Z' by the Nyström map P = (K' + εI)⁻¹ (K(Z', Z) + ε S), S selecting the inducing
   inputs that survive (`nystrom_map`): η_F ← Pη_F, H_F ← PH_FPᵀ. It replaces k(Z', x_n) by
   K(Z', Z)K⁻¹k(Z, x_n), exact for the rows of surviving inputs; the ε S term makes a surviving
   input's row exactly the identity under the jittered prior. Then the active points that are
   not in the memory are folded into t_F, exactly on Z' (their inputs are still at hand). Sites are
   on f − μ₀; for a constant prior mean t_F also keeps Σβ_n w_n and (Σα_n, Σβ_n), so that when the
   refit moves μ₀ by Δ it reads η_F − Δ Σβ_n w_n (`DualSVGPStrategy.frozen`): without this a
   sorted banana stream with no memory, whose mean went from −14 to +20, ended at chance accuracy
   (NLPD 12.9; 0.104 with it, the offline fit's accuracy). Other prior means are not corrected.
3. The new active set is 𝓜 ∪ D_t. Damped CVI (ρ, steps) on it with t_F frozen: the batch's sites
   start at zero, the memory's are *replaced* by their refreshed values (`absorb`).
4. Hyperparameters θ (kernel, likelihood, mean; Z stays where step 1 put it) are refitted by
   guarded L-BFGS with the active sites held and q_θ rebuilt from them (and t_F) at each θ, then
   one more CVI pass runs at the new θ. The past points not held enter the objective in one of
   two ways (``DualSVGP(memory_weight=...)``):

   - "rescaled": their expected log-likelihood is estimated from the memory, each memory
     point weighted num_past/|𝓜| (a minibatch estimate of the past; unbiased for a uniform memory):

         Σ_{D_t} E_q[log p(y_n | f_n)] + (num_past/|𝓜|) Σ_𝓜 E_q[log p(y_i | f_i)] − KL[q_θ ‖ p_θ] + log p(θ).

     With a memory that holds every past point the weight is 1 and this is the batch ELBO. The
     reference code's weight is N_seen/num_mem, num_mem the per-batch *increment* of an unbounded
     memory: it grows with the number of batches.
   - "summary" (default): every point counted once, held points by their likelihood (weight 1) and the
     others by their frozen sites, Σ_{𝓜 ∪ D_t} E_q[log p] + E_q[log t_F(u)] − KL[q_θ ‖ p_θ]; with a
     Gaussian likelihood the terms constant in q are kept too (frozen sites scaled σ₀²/σ², plus
     −½ n_F log 2πσ² − R/(2σ²), `gaussian_frozen_terms`), so that at fixed kernel and Z it is exactly
     the batch collapsed bound on every point seen (a test checks it). Once Z moves, t_F is a
     Nyström projection and its quadratic form no longer matches R exactly.

   Neither is better everywhere (one seed each, M = 100, memory 200, sorted streams): UCI elevators
   test NLPD 0.675 ("summary") vs 0.535 ("rescaled"); a sorted 1-D Bernoulli stream stays within
   0.15 of the batch fit's probabilities with "summary" and drifts by 0.5 with "rescaled".

5. The memory becomes the ``memory_size`` candidates of 𝓜 ∪ D_t kept by `select_memory`
   (Bayesian leverage under the updated q, or uniform reservoir keys); the others stay active
   until the next update folds them into t_F (step 2), exactly on the next Z.

With a Gaussian likelihood and fixed θ and Z, the sites are exact and streaming gives the batch
(Titsias) posterior exactly; with a memory that holds every point, t_F stays empty and each update
is the batch fit. Cost per update: O((M + |𝓜| + B) M²) for the selection and the sites, times
the L-BFGS evaluations of step 4: bounded by ``memory_size`` and the batch size B, whatever the
length of the stream. Memory O((|𝓜| + B + M) M).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from gpytorch.means import ConstantMean
from torch import Tensor

from gpvi.core.linalg import cholesky, eye_like, tri_solve
from gpvi.core.objectives import kl_whitened
from gpvi.core.optim import guarded_lbfgs
from gpvi.core.sites import PointSites
from gpvi.features.points import InducingPoints
from gpvi.features.selection import greedy_variance_indices
from gpvi.sequential.memory import bayesian_leverage, select_memory
from gpvi.variational.dual import DualSites
from gpvi.variational.elbo import site_target

#: Re-selection stops adding inducing inputs whose conditional prior variance is below this fraction of
#: the largest prior variance: a nearly redundant input makes Kuu ill-conditioned, and the Nyström
#: move of a frozen factor holding thousands of sharp sites through it loses their information (a
#: sorted UCI bike stream broke at batch 46, cond(Kuu) 4.8e4 → 6.0e7, with the former floor 1e-6).
RESELECT_FLOOR = 1e-4


@dataclass
class StreamState:
    """What a streaming dual SVGP carries between updates besides its parameters.

    Attributes:
        in_memory: (N_active,) bool, which active points are in the memory.
        keys: (N_active,) uniform keys drawn on arrival (random memory selection).
        num_seen: Points seen so far (initial data included).
        generator: The random generator of the keys (its state is part of the model's state).
        residual_sum: Gaussian likelihood: Σ_F [(y_n − μ₀(x_n))² + k(x_n, x_n) − q_nn] over the summarised
            points, (P,) or () (`gaussian_frozen_terms`); None otherwise.
    """

    in_memory: Tensor
    keys: Tensor
    num_seen: int
    generator: torch.Generator
    residual_sum: Tensor | None = None

    def draw_keys(self, n: int, like: Tensor) -> Tensor:
        """n new uniform keys (from the CPU generator, then moved to ``like``'s device and dtype)."""
        return torch.rand(n, generator=self.generator, dtype=torch.float64).to(like)


@dataclass(frozen=True)
class UpdateSettings:
    """The options of one update (see `DualSVGP.update`)."""

    step: float
    num_steps: int
    hyperparameters: bool
    reselect_inducing: bool
    max_iter: int
    tolerance: float = 1e-6


def nystrom_map(kernel: Any, Z_new: Tensor, Z_old: Tensor, jitter: float) -> Tensor:
    """P (M', M) moving u-space sites from Z_old to Z_new (see the module docstring, step 2).

    P = (K(Z', Z') + εI)⁻¹ (K(Z', Z) + ε S), S_ji = 1 where z'_j equals z_i: the row of an inducing
    input that survives is exactly the identity's, under the jittered prior the model uses.
    Solved by Cholesky (the reference solves with an unjittered K). Cost O(M'³ + M'² M).
    """
    K_new = InducingPoints(Z_new, learn_locations=False).Kuu(kernel)
    L = cholesky(K_new + jitter * eye_like(K_new), jitter=jitter, what="Kuu of the re-selected inducing inputs")
    cross = kernel(Z_new, Z_old).to_dense()
    same = (Z_new.unsqueeze(-2) == Z_old.unsqueeze(-3)).all(-1).to(cross.dtype)
    return torch.cholesky_solve(cross + jitter * same, L)


@torch.no_grad()
def absorb(
    model: Any, X: Tensor, y: Tensor, alpha: Tensor, beta: Tensor, settings: UpdateSettings
) -> tuple[Tensor, Tensor]:
    """Damped CVI on the per-datum sites of (X, y), everything else in q frozen; returns (α, β).

    Each step computes the points' sites at the q they give with the frozen factor
    (`site_target` inside the strategy's `holding`) and moves them by ρ: α ← (1 − ρ)α + ρ α*,
    β likewise (the CVI / natural-gradient step restricted to these points). Stops after
    ``num_steps`` or when no site moves by more than ``tolerance`` (relative).
    """
    strategy = model.strategy
    for _ in range(settings.num_steps):
        with strategy.holding(PointSites(X, alpha, beta), write=False):
            target = site_target(
                strategy,
                model.likelihood,
                X,
                y,
                num_data=X.shape[-2],
                num_latents=model.num_latents,
                num_quadrature=model.num_quadrature,
            )
        new_alpha = torch.lerp(alpha, target.alpha, settings.step)
        new_beta = torch.lerp(beta, target.beta, settings.step)
        change = max(_relative_change(new_alpha, alpha), _relative_change(new_beta, beta))
        alpha, beta = new_alpha, new_beta
        if change < settings.tolerance:
            break
    return alpha, beta


def _relative_change(new: Tensor, old: Tensor) -> float:
    return float(((new - old).abs() / (old.abs() + 1e-12).clamp_min(1.0)).max()) if new.numel() else 0.0


def refit_hyperparameters(model: Any, points: PointSites, settings: UpdateSettings, num_memory: int = 0) -> bool:
    """Step 4: maximise the streaming objective over θ with the active sites held (see the module docstring).

    ``points`` are the active set's sites, the ``num_memory`` memory points first. Returns whether
    L-BFGS kept its result (`gpvi.core.optim.guarded_lbfgs`; otherwise θ is restored). With a
    Gaussian likelihood the held sites are the exact ones at each θ (`gaussian_sites`).
    """
    strategy = model.strategy
    features = set(map(id, strategy.features.parameters()))
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in features]
    if not params:
        return True

    frozen, state = strategy.frozen, model.stream_state
    if frozen is not None and state is not None and model.memory_weight == "rescaled":
        objective = rescaled_objective(model, points, num_memory, state.num_seen)
        return guarded_lbfgs(params, objective, scale=float(points.num_points), max_iter=settings.max_iter)
    if not model.is_gaussian or frozen is None or state is None or state.residual_sum is None:

        def objective() -> Tensor:
            held = gaussian_sites(model, points.inputs) if model.is_gaussian else points
            with strategy.holding(held, write=False):
                return model.elbo().elbo

        return guarded_lbfgs(params, objective, scale=float(points.num_points), max_iter=settings.max_iter)

    objective, finish = gaussian_streaming_objective(model, points)
    kept = guarded_lbfgs(
        params, objective, scale=float(points.num_points + model.num_summarised), max_iter=settings.max_iter
    )
    finish()
    return kept


def rescaled_objective(model: Any, points: PointSites, num_memory: int, num_past: int) -> Callable[[], Tensor]:
    """The refit objective of ``memory_weight="rescaled"``: the past data's expected log-likelihood
    estimated from the memory alone, each memory point weighted num_past/|𝓜| (a minibatch estimate
    of the past, unbiased for a uniform memory), the batch weighted 1, and KL[q_θ ‖ p_θ] with q_θ
    still holding the frozen factor (which does not enter the data term):

        Σ_{D_t} E_q[log p(y_n | f_n)] + (num_past/|𝓜|) Σ_𝓜 E_q[log p(y_i | f_i)] − KL[q_θ ‖ p_θ] + log p(θ).

    The reference code's weight is N_seen/num_mem, num_mem the per-batch increment of an unbounded
    memory, which grows with the number of batches; with a bounded memory num_past/|𝓜| is the
    rescaling that reading intends.
    """
    strategy = model.strategy
    weights = torch.ones(points.num_points, dtype=points.inputs.dtype, device=points.inputs.device)
    if num_memory:
        weights[:num_memory] = max(1.0, num_past / num_memory)

    def objective() -> Tensor:
        held = gaussian_sites(model, points.inputs) if model.is_gaussian else points
        with strategy.holding(held, write=False), strategy.shared_terms():
            parts = model.elbo(weights=weights)
            plain_kl = kl_whitened(*strategy.whitened_q(strategy.chol_Kuu()))
        plain_kl = plain_kl.sum(-1) if model.num_latents > 1 else plain_kl
        return parts.elbo + parts.kl - plain_kl  # KL[q ‖ p] in place of KL[q ‖ p] − E_q[log t_F]

    return objective


def gaussian_streaming_objective(model: Any, points: PointSites) -> tuple[Callable[[], Tensor], Callable[[], None]]:
    """The refit objective of a Gaussian stream with summarised data, and the call that ends the refit.

    The frozen sites are (y_n − μ₀)/σ₀², 1/σ₀² at the noise σ₀² of now; at σ² they scale by σ₀²/σ²,
    and the summarised points add −½ n_F log 2πσ² − R/(2σ²) (`gaussian_frozen_terms`): at fixed
    kernel and Z the objective is the batch collapsed bound on every point seen, plus log p(θ).
    ``finish()`` rescales the stored frozen sites to the noise reached.
    """
    strategy, state = model.strategy, model.stream_state
    dual, count = strategy.dual_sites, int(strategy.dual_sites.frozen_count)
    noise_0 = model.likelihood.noise.detach().clone()
    names = ("frozen_eta", "frozen_prec", "frozen_shift", "frozen_sums")
    stored = {name: getattr(dual, name) for name in names}

    def scaled(ratio: Tensor) -> dict[str, Tensor]:
        """The frozen buffers at noise σ²: η, Σβw and the sums times σ₀²/σ², H too."""
        return {
            name: value * (ratio.unsqueeze(-1) if name == "frozen_prec" else ratio) for name, value in stored.items()
        }

    def objective() -> Tensor:
        for name, buffer in scaled(noise_scale(model, noise_0)).items():
            setattr(dual, name, buffer)
        try:
            with strategy.holding(gaussian_sites(model, points.inputs), write=False):
                value = model.elbo().elbo
        finally:
            for name, buffer in stored.items():
                setattr(dual, name, buffer)
        return value + gaussian_frozen_terms(model, count, state.residual_sum)

    @torch.no_grad()
    def finish() -> None:
        for name, buffer in scaled(noise_scale(model, noise_0)).items():
            getattr(dual, name).copy_(buffer)

    return objective, finish


def noise_scale(model: Any, noise_0: Tensor) -> Tensor:
    """σ₀²/σ² per latent output, shaped to scale η (*b, M): (P, 1) for P outputs, (1,) for one."""
    ratio = noise_0 / model.likelihood.noise
    return ratio.reshape(-1, 1) if model.num_latents > 1 else ratio.reshape(1)


def residual_terms(model: Any, X: Tensor, y: Tensor, Kuf: Tensor, chol_Kuu: Tensor) -> Tensor:
    """Σ_n [(y_n − μ₀(x_n))² + k(x_n, x_n) − k_nᵀK⁻¹k_n] over points X (Gaussian likelihood), (P,) or ()."""
    X_in = X.unsqueeze(-3) if model.num_latents > 1 else X
    kernel = model.model.covar_module
    A = tri_solve(chol_Kuu, Kuf)
    gap = kernel(X_in, diag=True) - A.pow(2).sum(-2)
    return ((y - model.model.mean_module(X_in)).pow(2) + gap).sum(-1)


def gaussian_frozen_terms(model: Any, count: int, residual_sum: Tensor) -> Tensor:
    """−½ n_F log 2πσ² − residual_sum/(2σ²), summed over outputs: the summarised points' part of the
    Gaussian ELBO that the frozen sites do not carry (it moves with σ² only)."""
    noise = model.likelihood.noise.reshape(-1)
    terms = -0.5 * count * torch.log(2 * math.pi * noise) - residual_sum.reshape(-1) / (2 * noise)
    return terms.sum()


def gaussian_sites(model: Any, X: Tensor) -> PointSites:
    """The exact sites of the training data at X under the current θ, differentiable in θ (Gaussian likelihood):
    α = (y − μ₀(x))/σ², β = 1/σ². Held in the refit, they make its objective the collapsed bound with
    the frozen factor (sites held at the previous θ would let σ² and μ₀ move only by EM)."""
    _, y = model.training_data()
    X_in = X.unsqueeze(-3) if model.num_latents > 1 else X
    noise = model.likelihood.noise.expand_as(y)
    return PointSites(X, (y - model.model.mean_module(X_in)) / noise, 1.0 / noise)


def install_inducing(
    model: Any, Z: Tensor, frozen: dict[str, Tensor] | None = None, projection: Tensor | None = None
) -> None:
    """Put inducing inputs Z (M', D) (a buffer) and a frozen factor on them into the model's strategy.

    ``frozen`` is the old sites' `DualSites.frozen_state`, moved by ``projection`` (M' x M) when
    given. The sites are zeroed (the caller sets them from the active points); M' may differ from M.
    """
    strategy = model.strategy
    batch = strategy.dual_sites.eta.shape[:-1]
    Z_full = Z.expand(*strategy.features.Z.shape[:-2], *Z.shape[-2:]).clone()
    strategy.features = InducingPoints(Z_full, learn_locations=False)
    sites = DualSites(Z.shape[-2], batch, dtype=Z.dtype).to(Z.device)
    if frozen is not None:
        sites.load_frozen(frozen, projection)
    strategy._variational_distribution = sites
    strategy.clear_cache()


def constant_mean(model: Any) -> Tensor | None:
    """The prior mean's constant (*b,) shaped like the frozen factor's batch, or None for another mean."""
    mean = model.model.mean_module
    if not isinstance(mean, ConstantMean):
        return None
    like = model.strategy.dual_sites.frozen_mean
    return mean.constant.detach().reshape(-1).expand(like.numel()).reshape(like.shape)


@torch.no_grad()
def fold(model: Any, folded: PointSites, y: Tensor) -> None:
    """Fold per-datum sites into the frozen factor, exactly on the current inducing inputs.

    The factor is first re-centred at the prior mean of now (`DualSites.rebase_frozen`; with a
    Gaussian likelihood the residual sum R follows), then gains η = Σα_n w_n, H = Σβ_n w_n w_nᵀ,
    Σβ_n w_n and (Σα_n, Σβ_n), w_n = K⁻¹k(Z, x_n).
    """
    strategy, state = model.strategy, model.stream_state
    dual, kernel = strategy.dual_sites, model.model.covar_module
    mean = constant_mean(model)
    if mean is not None:
        delta = mean - dual.frozen_mean
        if model.is_gaussian and state.residual_sum is not None:
            noise = model.likelihood.noise.detach().reshape(delta.shape)
            count = int(dual.frozen_count)
            state.residual_sum = state.residual_sum - 2 * delta * dual.frozen_sums[..., 0] * noise + count * delta**2
        dual.rebase_frozen(mean)
    L = strategy.chol_Kuu()
    Kuf = strategy.features.Kuf(kernel, folded.inputs)
    W = torch.cholesky_solve(Kuf, L)
    alpha, beta = folded.weighted()
    summary = folded.summed(W)
    shift = (W @ beta.unsqueeze(-1)).squeeze(-1)
    sums = torch.stack([alpha.sum(-1), beta.sum(-1)], -1)
    dual.add_frozen(summary, shift, sums, folded.num_points)
    if model.is_gaussian:
        residuals = residual_terms(model, folded.inputs, y, Kuf, L)
        state.residual_sum = residuals if state.residual_sum is None else state.residual_sum + residuals


def set_sites_from_points(model: Any, points: PointSites) -> None:
    """Store q's sites: the active points' sites summed on the current inducing variables (exact)."""
    strategy = model.strategy
    with torch.no_grad():
        L = strategy.chol_Kuu()
        strategy.set_sites(points.project(strategy.features.Kuf(model.model.covar_module, points.inputs), L))


def site_shape(model: Any, n: int) -> tuple[int, ...]:
    """The shape of n points' per-datum sites: (n,), or (P, n) for P latent GPs."""
    return (model.num_latents, n) if model.num_latents > 1 else (n,)


def leverage_scores(model: Any, X: Tensor, beta: Tensor) -> Tensor:
    """Bayesian leverage of the points X (model space) with second dual parameters β under q."""
    with torch.no_grad():
        X_in = X.unsqueeze(-3) if model.num_latents > 1 else X
        var = model.strategy.marginals(X_in).var
    return bayesian_leverage(var.reshape(beta.shape), beta)


def start_stream(model: Any, settings: UpdateSettings) -> StreamState:
    """The stream's state from a model fitted on its initial data: sites of the training points at
    the current q (CVI to their fixed point), the memory chosen among them."""
    X, y = model.training_data()
    sites = model.point_sites
    if sites is None or sites.alpha.shape != site_shape(model, X.shape[-2]) or not torch.equal(sites.inputs, X):
        zeros = X.new_zeros(site_shape(model, X.shape[-2]))
        alpha, beta = absorb(model, X, y, zeros, zeros, settings)
        sites = PointSites(X, alpha, beta)
        model.point_sites = sites
    set_sites_from_points(model, sites)
    generator = torch.Generator().manual_seed(model.seed)
    state = StreamState(torch.zeros(X.shape[-2], dtype=torch.bool), torch.empty(0), X.shape[-2], generator)
    state.keys = state.draw_keys(X.shape[-2], X)
    state.in_memory = select_memory(
        leverage_scores(model, X, sites.beta), state.keys, model.memory_size, model.memory_selection
    ).cpu()
    return state


def stream_update(model: Any, X_raw: Tensor, X: Tensor, y: Tensor, Y_model: Tensor, settings: UpdateSettings) -> None:
    """One memory-based update with a new batch (model-space X, y in the likelihood's layout); see above."""
    model.train()
    if model.stream_state is None:
        model.stream_state = start_stream(model, settings)
    state = model.stream_state
    strategy = model.strategy
    kernel = model.model.covar_module
    X_act, _ = model.training_data()
    sites: PointSites = model.point_sites
    if model.is_gaussian:  # exact at the current θ, whatever moved the mean or the noise since
        with torch.no_grad():
            sites = gaussian_sites(model, X_act)
    in_mem = state.in_memory.to(X.device)

    # 1-2. inducing inputs, the frozen factor moved, non-memory active points folded in (exactly)
    Z_old = strategy.features.Z.detach().reshape(-1, *strategy.features.Z.shape[-2:])[0]
    if settings.reselect_inducing:
        pool = torch.cat([Z_old, X_act.detach(), X.detach()], dim=-2)
        with torch.no_grad():
            floor = RESELECT_FLOOR * float(kernel(pool, diag=True).max())
        Z_new = pool[greedy_variance_indices(pool, model.num_inducing_target, kernel, epsilon=floor)]
    else:
        Z_new = Z_old
    jitter = strategy.jitter_val
    with torch.no_grad():
        old = strategy.dual_sites
        frozen = {k: v.clone() for k, v in old.frozen_state().items()} if old.frozen is not None else None
        moved = frozen is not None and not torch.equal(Z_new, Z_old)
        install_inducing(model, Z_new, frozen, nystrom_map(kernel, Z_new, Z_old, jitter) if moved else None)
        folded = sites.select(~in_mem)
        if folded.num_points:
            _, y_held = model.training_data()
            fold(model, folded, y_held[..., ~in_mem])

    # 3. the new active set: memory and batch, its sites by damped CVI
    X_raw_act = torch.cat([model.train_inputs[0][in_mem], X_raw])
    X_act = torch.cat([X_act[in_mem], X])
    Y_act = torch.cat([model.train_targets[in_mem], Y_model])
    model.set_active_data(X_raw_act, X_act, Y_act)
    _, y_act = model.training_data()
    zeros = X.new_zeros(site_shape(model, X.shape[-2]))
    alpha = torch.cat([sites.alpha[..., in_mem], zeros], -1)
    beta = torch.cat([sites.beta[..., in_mem], zeros], -1)
    alpha, beta = absorb(model, X_act, y_act, alpha, beta, settings)

    # 4. hyperparameters with the sites held, then the sites at the new θ
    if settings.hyperparameters:
        refit_hyperparameters(model, PointSites(X_act, alpha, beta), settings, num_memory=int(in_mem.sum()))
        alpha, beta = absorb(model, X_act, y_act, alpha, beta, settings)
    points = PointSites(X_act, alpha, beta)
    model.point_sites = points
    set_sites_from_points(model, points)

    # 5. the memory
    keys = torch.cat([state.keys[state.in_memory], state.draw_keys(X.shape[-2], state.keys)])
    scores = leverage_scores(model, X_act, beta)
    state.keys = keys
    state.in_memory = select_memory(scores, keys, model.memory_size, model.memory_selection).cpu()
    state.num_seen += X.shape[-2]
    model.eval()


__all__ = [
    "RESELECT_FLOOR",
    "StreamState",
    "UpdateSettings",
    "absorb",
    "constant_mean",
    "fold",
    "gaussian_frozen_terms",
    "gaussian_sites",
    "gaussian_streaming_objective",
    "install_inducing",
    "leverage_scores",
    "noise_scale",
    "nystrom_map",
    "rescaled_objective",
    "residual_terms",
    "refit_hyperparameters",
    "set_sites_from_points",
    "site_shape",
    "start_stream",
    "stream_update",
]
