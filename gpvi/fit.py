"""One `fit()` for gpvi models: minibatches, Adam or natural gradients on q plus Adam, early stopping.

    result = gpvi.fit(model, max_steps=2000, batch_size=1024, optimizer="ngd")

Recipes:
- ``optimizer="adam"``: Adam on every parameter (q, inducing inputs, hyperparameters) on −ELBO/N.
- ``optimizer="ngd"``: each step first takes a closed-form natural-gradient (CVI) step of size ρ on
  q from the batch's sites (`gpvi.core.sites`; Khan & Lin 2017, Salimbeni et al. 2018), then one
  Adam step on the other parameters. With a Gaussian likelihood and the full batch, ρ = 1 reaches
  the optimal q in one step.
- ``optimizer="cvi"`` (dual models, `gpvi.models.DualSVGP`; Adam et al. 2021, Li et al. 2023): each
  step takes ``e_steps`` CVI E-steps on the stored sites, then ``m_steps`` Adam steps on the
  hyperparameters with the sites frozen, on ``objective`` = "elbo" or "ep" (the EP-like estimate).
- ``objective="collapsed"`` (Gaussian likelihood; SVGP with "ngd" or None, DualSVGP): the
  closed-form recipe. The optimal q (or the dual sites) is exact for every θ, so L-BFGS maximises
  the collapsed (Titsias) bound plus the hyperparameters' log prior on all data (each of
  ``max_steps`` is one function evaluation), then one full-data step of size 1 sets q.

``optimizer=None`` uses the model's ``default_optimizer`` ("adam" for SVGP, "cvi" for DualSVGP).

The ELBO is the total (not per-datum) bound, so with a Gaussian likelihood and Z = X its optimum
equals the exact log marginal likelihood; Adam minimises −ELBO/N for a scale-free learning rate.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from gpytorch.likelihoods import GaussianLikelihood, SoftmaxLikelihood
from torch import Tensor

from gpvi.core.likelihoods import expected_log_prob, expected_log_prob_and_grads
from gpvi.core.linalg import tri_solve
from gpvi.core.objectives import ElboParts, elbo
from gpvi.core.sites import GaussianSites, sites_from_grads


@dataclass
class EarlyStopping:
    """Stop when the smoothed loss has not improved by ``rel_tol`` (relative) for ``patience`` steps."""

    patience: int = 100
    rel_tol: float = 1e-4
    smoothing: float = 0.9
    _ema: float | None = field(default=None, repr=False)
    _best: float = field(default=math.inf, repr=False)
    _stale: int = field(default=0, repr=False)

    def should_stop(self, loss: float) -> bool:
        self._ema = loss if self._ema is None else self.smoothing * self._ema + (1 - self.smoothing) * loss
        if self._best == math.inf or self._ema < self._best - self.rel_tol * max(abs(self._best), 1e-8):
            self._best, self._stale = self._ema, 0
        else:
            self._stale += 1
        return self._stale >= self.patience


@dataclass
class FitResult:
    """What `fit` did: per-step ELBO parts, wall time, and why it stopped.

    Attributes:
        history: One dict per step: step, elbo, expected_log_lik, kl (floats, total not per-datum), time.
        wall_time: Seconds spent.
        stop_reason: "max_steps", "converged", "callback" or "non-finite".
        num_steps: Steps taken.
    """

    history: list[dict[str, float]]
    wall_time: float
    stop_reason: str
    num_steps: int

    @property
    def final_elbo(self) -> float:
        return self.history[-1].get("elbo", float("nan")) if self.history else float("nan")

    @property
    def final_objective(self) -> float:
        """The last objective value (the ELBO, or the EP-like estimate for ``objective="ep"``)."""
        last = self.history[-1] if self.history else {}
        return last.get("objective", last.get("elbo", float("nan")))

    def column(self, key: str) -> list[float]:
        return [h[key] for h in self.history]


def _latent_layout(model, y: Tensor, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Marginals (P, B) -> the layout the likelihood expects ((B, C) for softmax)."""
    if isinstance(model.likelihood, SoftmaxLikelihood):
        return y, mean.transpose(-1, -2), var.transpose(-1, -2)
    return y, mean, var


def svgp_elbo(
    model,
    X: Tensor | None = None,
    Y: Tensor | None = None,
    *,
    num_data: int | None = None,
    kl_weight: float = 1.0,
    weights: Tensor | None = None,
) -> ElboParts:
    """ELBO parts of a gpvi SVGP on model-space data X `B x d`, Y in the likelihood's layout.

    Defaults to the full training set; the data term is scaled by N / B (N = ``num_data``).
    """
    if X is None:
        X, Y = model.train_X_model, model.model.train_targets
    N = model.num_data if num_data is None else num_data
    strategy = model.strategy
    X_in = X.unsqueeze(-3) if model._num_latents > 1 else X
    with strategy.shared_terms():  # one Cholesky of Kuu for the marginals and the KL
        marg = strategy.marginals(X_in)
        kl = strategy.kl_divergence()
    y, mean, var = _latent_layout(model, Y, marg.prior_mean + marg.centred_mean, marg.var)
    ell = expected_log_prob(model.likelihood, y, mean, var, weights=weights)
    if model._num_latents > 1 and not isinstance(model.likelihood, SoftmaxLikelihood):
        ell = ell.sum(-2)
    kl = kl.sum(-1) if model._num_latents > 1 else kl
    return elbo(ell, kl, num_data=N, kl_weight=kl_weight, log_prior=log_prior(model))


def log_prior(model) -> Tensor:
    """Σ log p(θ) over the priors registered on the model's GP module and likelihood (0 when none)."""
    X = model.train_X_model
    total = torch.zeros((), dtype=X.dtype, device=X.device)
    for owner in (model.model, model.likelihood):
        for _, module, prior, closure, _ in owner.named_priors():
            total = total + prior.log_prob(closure(module)).sum()
    return total


@torch.no_grad()
def svgp_natural_gradient_step(
    model, X: Tensor, Y: Tensor, *, step: float, num_data: int | None = None, weights: Tensor | None = None
) -> None:
    """One closed-form natural-gradient (CVI) step of size ρ = ``step`` on q(v) of a gpvi SVGP.

    With A = L⁻¹Kuf for the batch, sites α, β at the current q (`sites_from_grads`):
        sites_target = (N/B) (A α, A diag(β) Aᵀ);  sites ← (1 − ρ) sites + ρ sites_target
    and q(v) ∝ N(0, I) · sites. This is the natural-gradient step of the ELBO in q's natural
    parameters (Hensman et al. 2013; Khan & Lin 2017), with no autograd through q.
    """
    N = model.num_data if num_data is None else num_data
    strategy = model.strategy
    X_in = X.unsqueeze(-3) if model._num_latents > 1 else X
    marg = strategy.marginals(X_in)
    y, mean, var = _latent_layout(model, Y, marg.prior_mean + marg.centred_mean, marg.var)
    grads = expected_log_prob_and_grads(model.likelihood, y, mean, var, weights=weights)
    _, d_mean, d_var = _latent_layout(model, Y, grads.d_mean, grads.d_var)
    alpha, beta = sites_from_grads(marg.centred_mean, d_mean, d_var)
    L = marg.chol_Kuu
    A = tri_solve(L, marg.Kuf)
    target = GaussianSites.from_data(A, alpha, beta, scale=N / X.shape[-2])
    current = GaussianSites.from_whitened_posterior(*strategy.whitened_q(L))
    strategy.set_q(*current.damped(target, step).whitened_posterior(), chol_Kuu=L)


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return sys.stderr.isatty() and "PYTEST_CURRENT_TEST" not in os.environ


def fit(
    model,
    *,
    max_steps: int = 1000,
    batch_size: int | None = None,
    optimizer: str | None = None,
    lr: float = 0.01,
    ngd_step: float | None = None,
    early_stopping: bool | EarlyStopping = True,
    callback: Callable[[int, ElboParts], bool | None] | None = None,
    progress: bool | None = None,
    kl_weight: float = 1.0,
    seed: int = 0,
    objective: str | None = None,
    e_steps: int = 1,
    m_steps: int = 1,
    restore_best: bool | None = None,
    warmup_e_steps: int = 20,
    learn_inducing: bool = False,
) -> FitResult:
    """Fit a gpvi model by maximising its ELBO.

    Args:
        model: A gpvi model (e.g. `gpvi.models.SVGP`).
        max_steps: Maximum optimisation steps (each one minibatch).
        batch_size: Minibatch size B; default: all data when N <= 4096, else 1024.
        optimizer: "adam" (everything by Adam), "ngd" (natural-gradient steps on q, Adam on the rest),
            "cvi" (dual models: E-steps on the sites, M-steps by Adam) or None (the model's default).
        lr: Adam's learning rate.
        ngd_step: ρ for "ngd" and "cvi"; default 1.0 for a Gaussian likelihood with full batches, 0.1 otherwise.
        early_stopping: True (defaults of `EarlyStopping`), False, or an `EarlyStopping`.
        callback: Called as ``callback(step, parts)`` after each step; returning True stops the fit.
        progress: Show a tqdm bar; default: on a terminal, never under pytest.
        kl_weight: β multiplying the KL (1 = the ELBO).
        seed: Seed of the minibatch order.
        objective: "elbo", "ep" (for "cvi": the EP-like estimate from the sites) or "collapsed"
            (Gaussian likelihood, any gpvi SVGP: full-data L-BFGS on the collapsed bound, q exact).
            Default: "collapsed" for "cvi" with a Gaussian likelihood and N·M ≤ 5e7, else "elbo".
        e_steps, m_steps: E-steps and Adam M-steps per step of "cvi" (each on its own minibatch).
        restore_best: Keep the parameters and sites with the best objective seen and restore them at
            the end (Li et al.'s rule against a decreasing EP-like objective); default: on for
            "cvi" with full batches, off otherwise.
        warmup_e_steps: For "cvi", E-steps before the first M-step, so that the sites are near
            their fixed point when θ starts to move (the EP-like estimate is not a bound: with
            unconverged sites it can be spuriously high, and early stopping would lock onto that).
        learn_inducing: For "cvi" with the "elbo" or "ep" M-step, also move the inducing inputs by
            Adam. Off by default: the sites live on u = f(Z), so moving Z under frozen sites
            changes q arbitrarily (one Adam step of 0.05 on every coordinate of 200 inducing points
            in 64 dimensions took digits' ELBO from −300 to −1367); Li et al. (2023) keep k-means Z
            fixed. The other recipes learn Z whenever the model does (the collapsed recipe's sites
            are exact at every Z).

    Returns:
        A `FitResult`. The model is left in eval mode.
    """
    if optimizer is None:
        default = getattr(model, "default_optimizer", "adam")
        optimizer = "ngd" if objective == "collapsed" and default == "adam" else default
    if optimizer not in ("adam", "ngd", "cvi"):
        raise ValueError(f"`optimizer` must be 'adam', 'ngd' or 'cvi', got {optimizer!r}.")
    if optimizer == "cvi" and not hasattr(model, "dual_step"):
        raise ValueError(f"`optimizer='cvi'` needs a dual model (e.g. DualSVGP), got {type(model).__name__}.")
    if objective is None:
        objective = _default_objective(model, optimizer)
    if objective not in ("elbo", "ep", "collapsed"):
        raise ValueError(f"`objective` must be 'elbo', 'ep' or 'collapsed', got {objective!r}.")
    if objective == "ep" and optimizer != "cvi":
        raise ValueError("`objective='ep'` needs `optimizer='cvi'` and a dual model (it is built from sites).")
    if objective == "collapsed" and optimizer == "adam":
        raise ValueError("`objective='collapsed'` sets q in closed form: use optimizer 'ngd', 'cvi' or None.")
    if objective == "collapsed" and not isinstance(model.likelihood, GaussianLikelihood):
        raise ValueError("`objective='collapsed'` needs a GaussianLikelihood (sites exact in closed form).")
    for name, value in (("e_steps", e_steps), ("m_steps", m_steps)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative int, got {value!r}.")
    if not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"`max_steps` must be a non-negative int, got {max_steps!r}.")
    X_all, Y_all = model.train_X_model, model.model.train_targets
    N = X_all.shape[-2]
    B = (N if N <= 4096 else 1024) if batch_size is None else min(int(batch_size), N)
    if B < 1:
        raise ValueError(f"`batch_size` must be positive, got {batch_size!r}.")
    if ngd_step is None:
        ngd_step = 1.0 if (isinstance(model.likelihood, GaussianLikelihood) and B == N) else 0.1
    stopper = EarlyStopping() if early_stopping is True else (early_stopping or None)
    if restore_best is None:
        restore_best = optimizer == "cvi" and B == N

    frozen = set() if optimizer == "adam" else {id(p) for p in model.model.variational_parameters()}
    if optimizer == "cvi" and objective != "collapsed" and not learn_inducing:
        frozen |= {id(p) for p in model.features.parameters()}  # the u-space sites are tied to Z
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in frozen]
    if objective == "collapsed":
        return _fit_collapsed(model, params, max_steps=max_steps, callback=callback, progress=progress)
    if optimizer == "cvi":
        return _fit_cvi(
            model,
            params,
            batches=_minibatches(N, B, torch.Generator(device="cpu").manual_seed(seed), X_all.device),
            max_steps=max_steps,
            lr=lr,
            step_size=ngd_step,
            stopper=stopper,
            callback=callback,
            progress=progress,
            kl_weight=kl_weight,
            objective=objective,
            e_steps=e_steps,
            m_steps=m_steps,
            restore_best=restore_best,
            warmup_e_steps=warmup_e_steps,
        )
    adam = torch.optim.Adam(params, lr=lr) if params else None
    gen = torch.Generator(device="cpu").manual_seed(seed)
    batches = _minibatches(N, B, gen, X_all.device)

    history: list[dict[str, float]] = []
    reason, start = "max_steps", time.perf_counter()
    bar = _progress_bar(max_steps, _show_progress(progress))
    model.train()
    step = 0
    try:
        for step in range(1, max_steps + 1):
            idx = next(batches)
            Xb, Yb = X_all[idx], Y_all[..., idx]
            if optimizer == "ngd":
                svgp_natural_gradient_step(model, Xb, Yb, step=ngd_step, num_data=N)
            parts = svgp_elbo(model, Xb, Yb, num_data=N, kl_weight=kl_weight)
            if adam is not None:
                adam.zero_grad(set_to_none=True)
                (-parts.elbo / N).backward()
                adam.step()
            record = {k: float(v.detach()) for k, v in parts._asdict().items() if k != "log_prior"}
            record.update(step=step, time=time.perf_counter() - start)
            history.append(record)
            stop = _after_step(
                step, record["elbo"], parts, bar=bar, label="elbo", callback=callback, stopper=stopper, N=N
            )
            if stop is not None:
                reason = stop
                break
    finally:
        if bar is not None:
            bar.close()
        model.eval()
    return FitResult(history, time.perf_counter() - start, reason, step if history else 0)


def _after_step(
    step: int, value: float, parts: Any, *, bar: Any, label: str, callback, stopper: EarlyStopping | None, N: int
) -> str | None:
    """Progress bar, then why to stop after a step ("non-finite", "callback", "converged") or None."""
    if bar is not None:
        bar.update(1)
        bar.set_postfix({label: f"{value:.4g}"})
    if not math.isfinite(value):
        return "non-finite"
    if callback is not None and callback(step, parts):
        return "callback"
    if stopper is not None and stopper.should_stop(-value / N):
        return "converged"
    return None


def _fit_cvi(
    model,
    params: list[Tensor],
    *,
    batches,
    max_steps: int,
    lr: float,
    step_size: float,
    stopper: EarlyStopping | None,
    callback,
    progress: bool | None,
    kl_weight: float,
    objective: str,
    e_steps: int,
    m_steps: int,
    restore_best: bool,
    warmup_e_steps: int = 0,
) -> FitResult:
    """The "cvi" recipe: E-steps on a dual model's sites, Adam M-steps on the hyperparameters."""
    X_all, Y_all = model.train_X_model, model.model.train_targets
    N = X_all.shape[-2]
    for _ in range(warmup_e_steps):
        idx = next(batches)
        model.dual_step(X_all[idx], Y_all[..., idx], step=step_size, num_data=N)
    adam = torch.optim.Adam(params, lr=lr) if params and m_steps else None

    def score(Xb: Tensor, Yb: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if objective == "ep":
            value = model.ep_objective(Xb, Yb, num_data=N)
            return value, {"ep": value}
        parts = svgp_elbo(model, Xb, Yb, num_data=N, kl_weight=kl_weight)
        return parts.elbo, {k: v for k, v in parts._asdict().items() if k != "log_prior"}

    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, Tensor]] | None = None
    reason, start = "max_steps", time.perf_counter()
    bar = _progress_bar(max_steps, _show_progress(progress), desc="gpvi.fit (cvi)")
    model.train()
    step = 0
    try:
        for step in range(1, max_steps + 1):
            for _ in range(e_steps):
                idx = next(batches)
                model.dual_step(X_all[idx], Y_all[..., idx], step=step_size, num_data=N)
            for _ in range(max(m_steps, 1)):
                idx = next(batches)
                value, parts = score(X_all[idx], Y_all[..., idx])
                if restore_best and (best is None or float(value.detach()) > best[0]):  # the state that scored `value`
                    best = (float(value.detach()), {k: v.detach().clone() for k, v in model.state_dict().items()})
                if adam is not None:
                    adam.zero_grad(set_to_none=True)
                    (-value / N).backward()
                    adam.step()
            record = {k: float(v.detach()) for k, v in parts.items()}
            record.update(step=step, time=time.perf_counter() - start, objective=float(value.detach()))
            history.append(record)
            detached = {k: v.detach() for k, v in parts.items()}
            stop = _after_step(
                step, record["objective"], detached, bar=bar, label=objective, callback=callback, stopper=stopper, N=N
            )
            if stop is not None:
                reason = stop
                break
    finally:
        if bar is not None:
            bar.close()
        model.eval()
    if restore_best and best is not None:
        model.load_state_dict(best[1])
    return FitResult(history, time.perf_counter() - start, reason, step if history else 0)


COLLAPSED_MAX_SIZE = 50_000_000  # N·M above which the default "cvi" objective is the minibatch ELBO


def _default_objective(model, optimizer: str) -> str:
    if optimizer != "cvi" or not isinstance(model.likelihood, GaussianLikelihood):
        return "elbo"
    size = model.num_data * model.features.num_inducing
    return "collapsed" if size <= COLLAPSED_MAX_SIZE else "elbo"


class _StopFit(Exception):
    pass


def _fit_collapsed(model, params: list[Tensor], *, max_steps: int, callback, progress: bool | None) -> FitResult:
    """Closed-form Gaussian recipe: L-BFGS (strong Wolfe) on the collapsed bound + log prior, then q exact."""
    N = model.num_data
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = _progress_bar(max_steps, _show_progress(progress), desc="gpvi.fit (collapsed)")
    lbfgs = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max(max_steps, 1),
        max_eval=max(max_steps, 1),
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-10,
    )
    reason = "converged"

    def closure() -> Tensor:
        lbfgs.zero_grad(set_to_none=True)
        bound = model.collapsed_elbo()
        value = bound + log_prior(model)
        (-value / N).backward()
        record = {"step": len(history) + 1, "elbo": float(bound.detach()), "time": time.perf_counter() - start}
        record["objective"] = float(value.detach())
        history.append(record)
        parts = {"elbo": bound.detach(), "objective": value.detach()}
        stop = _after_step(
            record["step"], record["elbo"], parts, bar=bar, label="elbo", callback=callback, stopper=None, N=N
        )
        if stop is not None:
            raise _StopFit(stop)
        return -value.detach() / N

    model.train()
    try:
        lbfgs.step(closure)
        if len(history) >= max_steps:
            reason = "max_steps"
    except _StopFit as stop:
        reason = str(stop)
    finally:
        if bar is not None:
            bar.close()
    with torch.no_grad():
        model.set_optimal_q()
    model.eval()
    return FitResult(history, time.perf_counter() - start, reason, len(history))


def _minibatches(N: int, B: int, gen: torch.Generator, device: torch.device):
    """Endless epochs of shuffled index batches (the full range when B = N)."""
    if B == N:
        full = torch.arange(N, device=device)
        while True:
            yield full
    while True:
        perm = torch.randperm(N, generator=gen).to(device)
        for i in range(0, N - B + 1, B):
            yield perm[i : i + B]


def _progress_bar(total: int, show: bool, desc: str = "gpvi.fit") -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


__all__ = ["EarlyStopping", "FitResult", "fit", "log_prior", "svgp_elbo", "svgp_natural_gradient_step"]
