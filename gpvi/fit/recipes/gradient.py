"""Gradient recipes: "adam" (Adam on everything) and "ngd" (natural-gradient steps on q + Adam), on the ELBO or PLL.

Hensman, Fusi & Lawrence (2013); Salimbeni, Eleftheriadis & Hensman (2018), "Natural Gradients in
Practice", AISTATS; Khan & Lin (2017).

- "adam": each step one Adam step on every trainable parameter (q, inducing inputs,
  hyperparameters) against −ELBO / N on one minibatch (a scale-free learning rate).
- "ngd": each step first takes a closed-form natural-gradient step of size ρ on q from the batch's
  sites (`VariationalGPModel.natural_gradient_step`), then one Adam step on the other parameters.
  With a Gaussian likelihood and the full batch, ρ = 1 reaches the optimal q in one step.

The ELBO is the total (not per-datum) bound including the hyperparameters' log prior, so with a
Gaussian likelihood and Z = X its optimum is the exact log marginal likelihood (plus log prior).

``objective="pll"`` replaces the ELBO by the β-weighted predictive log likelihood of Jankowiak,
Pleiss & Gardner (2020), "Parametric Gaussian Process Regressors", ICML (gpytorch's
`PredictiveLogLikelihood`; `gpvi.variational.elbo.predictive_log_likelihood`):

    PLL = (N / B) Σ_{n ∈ batch} log E_{q(f_n)}[p(y_n | f_n)] − β KL[q ‖ p] + log p(θ)

For "adam" every parameter, q included, follows the PLL. For "ngd" q still takes the ELBO's
natural-gradient step (the sites are the ELBO's: the PLL has no closed-form natural gradient) and
Adam moves the other parameters on the PLL: q is the ELBO's optimal q for the current θ and Z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from gpvi.fit.batches import default_batch_size, minibatches
from gpvi.fit.recipes.base import Recipe, early_stopping_rule, register_recipe
from gpvi.progress import EarlyStopping, FitResult, StepLoop
from gpvi.variational.elbo import predictive_log_likelihood

#: The objectives of the gradient recipes.
OBJECTIVES = ("elbo", "pll")


@register_recipe
@dataclass
class Adam(Recipe):
    """Adam on the minibatch ELBO or PLL (see the module docstring).

    Attributes:
        objective: "elbo" or "pll" (the predictive log likelihood).
        batch_size: B; default all data when N <= 4096, else 1024.
        lr: Adam's learning rate.
        early_stopping: True (`EarlyStopping`'s defaults on the per-datum loss), False or a rule.
        kl_weight: β multiplying the KL (1 = the ELBO).
        seed: Seed of the minibatch order.
    """

    name: ClassVar[str] = "adam"
    objective: str = "elbo"
    batch_size: int | None = None
    lr: float = 0.01
    early_stopping: bool | EarlyStopping = True
    kl_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"`objective` must be one of {OBJECTIVES} for the {self.name!r} recipe, got {self.objective!r}."
            )

    def parameters(self, model: Any) -> list[torch.Tensor]:
        """The parameters Adam moves: every trainable parameter of ``model`` (q included)."""
        return [p for p in model.parameters() if p.requires_grad]

    def score(self, model: Any, batch: Any, N: int) -> Any:
        """The objective's parts on a batch (`ElboParts` or `PredictiveParts`; the value first)."""
        if self.objective == "elbo":
            return model.elbo(batch.X, batch.Y, num_data=N, kl_weight=self.kl_weight, index=batch.index)
        return predictive_log_likelihood(
            model.strategy,
            model.likelihood,
            batch.X,
            batch.Y,
            num_data=N,
            num_latents=model.num_latents,
            kl_weight=self.kl_weight,
            log_prior=model.log_prior(),
            index=batch.index,
            num_quadrature=getattr(model, "num_quadrature", None),
        )

    def before_gradient(self, model: Any, batch: Any, N: int) -> None:
        """Work done on a batch before its gradient step (nothing for plain Adam)."""

    def run(self, model: Any) -> FitResult:
        X, Y = model.training_data()
        N = X.shape[-2]
        batches = minibatches(X, Y, default_batch_size(N, self.batch_size), seed=self.seed)
        params = self.parameters(model)
        adam = torch.optim.Adam(parameter_groups(model, params, self.lr, X), lr=self.lr) if params else None
        loop = StepLoop(
            self.max_steps,
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
                    batch = next(batches)
                    self.before_gradient(model, batch, N)
                    parts = self.score(model, batch, N)
                    value = parts[0]  # the ELBO or the PLL
                    loop.offer(float(value.detach()))  # the state that scored it, before the step
                    if adam is not None:
                        adam.zero_grad(set_to_none=True)
                        (-value / N).backward()
                        adam.step()
                    row = {k: v for k, v in parts._asdict().items() if k != "log_prior"}
                    stop = loop.record(float(value.detach()), row, callback_arg=parts)
                    if stop is not None:
                        reason = stop
                        break
        finally:
            model.eval()
        return loop.result(reason)


@register_recipe
@dataclass
class NaturalGradient(Adam):
    """Natural-gradient steps on q, Adam on the rest (see the module docstring).

    Attributes:
        ngd_step: ρ; default 1.0 for a Gaussian likelihood with full batches, else 0.1.
    """

    name: ClassVar[str] = "ngd"
    ngd_step: float | None = None

    def parameters(self, model: Any) -> list[torch.Tensor]:
        """The parameters Adam moves: every trainable one except q's (natural-gradient steps move q)."""
        frozen = {id(p) for p in model.variational_parameters()}
        return [p for p in super().parameters(model) if id(p) not in frozen]

    def run(self, model: Any) -> FitResult:
        self._rho = default_step(model, self.batch_size) if self.ngd_step is None else self.ngd_step
        return super().run(model)

    def before_gradient(self, model: Any, batch: Any, N: int) -> None:
        model.natural_gradient_step(batch.X, batch.Y, step=self._rho, num_data=N, index=batch.index)


#: The per-column standard deviation of inputs spread over the unit cube: the scale Adam's ``lr`` is set for.
UNIT_CUBE_SPREAD = 12**-0.5


def parameter_groups(model: Any, params: list[torch.Tensor], lr: float, X: torch.Tensor) -> list[dict[str, Any]]:
    """Adam's parameter groups: the inducing inputs take ``lr`` times the data's spread relative to the unit
    cube's (at most 1), so that they move on the data's scale.

    Adam steps about ``lr`` per coordinate whatever the gradient's size: on inputs spread over
    [0, 0.01] the default 0.01 carried the inducing inputs out of the data within 30 steps (the fit
    then predicted the mean only). Inputs as wide as the unit cube or wider keep ``lr``.
    """
    inducing = {id(p) for p in model.inducing_parameters()}
    mine = [p for p in params if id(p) in inducing]
    if not mine:
        return [{"params": params}]
    spread = X.detach().std(-2).mean().item() if X.shape[-2] > 1 else UNIT_CUBE_SPREAD
    factor = min(1.0, spread / UNIT_CUBE_SPREAD) if spread > 0 else 1.0
    rest = [p for p in params if id(p) not in inducing]
    return [group for group in ({"params": rest}, {"params": mine, "lr": lr * factor}) if group["params"]]


def default_step(model: Any, batch_size: int | None) -> float:
    """ρ = 1 for a Gaussian likelihood with full batches (one step reaches the optimal q), else 0.1."""
    full = default_batch_size(model.num_data, batch_size) == model.num_data
    return 1.0 if (model.is_gaussian and full) else 0.1


__all__ = ["OBJECTIVES", "UNIT_CUBE_SPREAD", "Adam", "NaturalGradient", "default_step", "parameter_groups"]
