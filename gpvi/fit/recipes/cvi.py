"""The "cvi" recipe of dual (site-parameterised) models: CVI E-steps on the sites, Adam M-steps on θ.

Adam, Chang, Khan & Solin (2021), NeurIPS (t-SVGP); Li, John & Solin (2023), ICML (the hybrid with
EP-like M-steps). Each step takes ``e_steps`` closed-form E-steps of size ρ on the stored sites
(each on its own minibatch; `DualSVGP.dual_step`), then ``m_steps`` Adam steps on the
hyperparameters with the sites frozen and q rebuilt from them at θ, on ``objective``:

    "elbo"   the ELBO (data term scaled by N/B, minus the KL, plus the log prior)
    "ep"     the EP-like estimate of log p(y | θ) from the sites (`DualSVGP.ep_objective`)

``warmup_e_steps`` E-steps come first, so the sites are near their fixed point when θ starts to
move (the EP-like estimate is not a bound: with unconverged sites it can be spuriously high, and
early stopping would lock onto that). With full batches the best state seen is restored at the end
(Li et al.'s rule against a decreasing EP-like objective).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from gpvi.fit.batches import default_batch_size, minibatches
from gpvi.fit.recipes.base import Recipe, early_stopping_rule, register_recipe
from gpvi.fit.recipes.gradient import default_step
from gpvi.progress import EarlyStopping, FitResult, StepLoop

OBJECTIVES = ("elbo", "ep")


@register_recipe
@dataclass
class CVI(Recipe):
    """E-steps on the sites, Adam M-steps on θ (see the module docstring).

    Attributes:
        objective: "elbo" or "ep", the M-step objective.
        batch_size: B; default all data when N <= 4096, else 1024.
        lr: Adam's learning rate for the M-steps.
        ngd_step: ρ of the E-steps; default 1.0 for a Gaussian likelihood with full batches, else 0.1.
        e_steps: E-steps per step (each on its own minibatch).
        m_steps: Adam M-steps per step (each on its own minibatch).
        early_stopping: True (`EarlyStopping`'s defaults), False or a rule.
        kl_weight: β multiplying the KL of the ELBO.
        seed: Seed of the minibatch order.
        restore_best: Restore the best state seen at the end; default on with full batches.
        warmup_e_steps: E-steps before the first M-step.
        learn_inducing: Also move the inducing inputs by Adam. Off by default: the sites live on
            u = f(Z), so moving Z under frozen sites changes q arbitrarily (one Adam step of 0.05 on
            every coordinate of 200 inducing points in 64 dimensions took digits' ELBO from −300
            to −1367); Li et al. (2023) keep k-means Z fixed.
    """

    name: ClassVar[str] = "cvi"
    objective: str = "elbo"
    batch_size: int | None = None
    lr: float = 0.01
    ngd_step: float | None = None
    e_steps: int = 1
    m_steps: int = 1
    early_stopping: bool | EarlyStopping = True
    kl_weight: float = 1.0
    seed: int = 0
    restore_best: bool | None = None
    warmup_e_steps: int = 20
    learn_inducing: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise ValueError(f"`objective` must be one of {OBJECTIVES} for the 'cvi' recipe, got {self.objective!r}.")
        for name in ("e_steps", "m_steps", "warmup_e_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative int, got {value!r}.")

    def check(self, model: Any) -> None:
        if not hasattr(model, "dual_step"):
            raise ValueError(f"`optimizer='cvi'` needs a dual model (e.g. DualSVGP), got {type(model).__name__}.")

    def run(self, model: Any) -> FitResult:
        X, Y = model.training_data()
        N = X.shape[-2]
        B = default_batch_size(N, self.batch_size)
        batches = minibatches(X, Y, B, seed=self.seed)
        rho = default_step(model, self.batch_size) if self.ngd_step is None else self.ngd_step
        restore_best = B == N if self.restore_best is None else self.restore_best
        frozen = {id(p) for p in model.variational_parameters()}
        if not self.learn_inducing:
            frozen |= {id(p) for p in model.inducing_parameters()}  # the u-space sites are tied to Z
        params = [p for p in model.parameters() if p.requires_grad and id(p) not in frozen]
        for _ in range(self.warmup_e_steps):
            batch = next(batches)
            model.dual_step(batch.X, batch.Y, step=rho, num_data=N)
        adam = torch.optim.Adam(params, lr=self.lr) if params and self.m_steps else None
        loop = StepLoop(
            self.max_steps,
            desc="gpvi.fit (cvi)",
            progress=self.progress,
            callback=self.callback,
            early_stopping=early_stopping_rule(self.early_stopping),
            loss_scale=N,
            label=self.objective,
            keep_best=model,
        )
        reason = "max_steps"
        model.train()
        try:
            with loop:
                for _ in loop.steps():
                    for _ in range(self.e_steps):
                        batch = next(batches)
                        model.dual_step(batch.X, batch.Y, step=rho, num_data=N)
                    for m_step in range(max(self.m_steps, 1)):
                        batch = next(batches)
                        value, parts = self._score(model, batch, N, last=m_step == max(self.m_steps, 1) - 1)
                        loop.offer(float(value.detach()))  # the state that scored `value`
                        if adam is not None:
                            adam.zero_grad(set_to_none=True)
                            (-value / N).backward()
                            adam.step()
                    detached = {k: v.detach() for k, v in parts.items()}
                    row = {**detached, "objective": value.detach()}
                    stop = loop.record(float(value.detach()), row, callback_arg=detached)
                    if stop is not None:
                        reason = stop
                        break
        finally:
            model.eval()
        if restore_best:
            loop.restore_best()
        return loop.result(reason)

    def _score(
        self, model: Any, batch: Any, N: int, *, last: bool = True
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The M-step objective on a batch and the parts to record (with the EP-like objective, the
        batch's ELBO too on the step that is recorded, so `FitResult.final_elbo` has a value)."""
        if self.objective == "ep":
            value = model.ep_objective(batch.X, batch.Y, num_data=N)
            if not last:
                return value, {"ep": value}
            with torch.no_grad():
                elbo = model.elbo(batch.X, batch.Y, num_data=N, kl_weight=self.kl_weight, index=batch.index)
            return value, {"ep": value, **{k: v for k, v in elbo._asdict().items() if k != "log_prior"}}
        parts = model.elbo(batch.X, batch.Y, num_data=N, kl_weight=self.kl_weight, index=batch.index)
        return parts.elbo, {k: v for k, v in parts._asdict().items() if k != "log_prior"}


__all__ = ["CVI", "OBJECTIVES"]
