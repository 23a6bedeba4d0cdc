"""DualSVGP: a sparse variational GP whose q(u) is held by dual (site) parameters and fit by CVI.

Adam, Chang, Khan & Solin (2021), "Dual Parameterization of Sparse Variational Gaussian
Processes", NeurIPS; Li, John & Solin (2023), "Improving Hyperparameter Learning under Approximate
Inference in Gaussian Process Models", ICML. The state and its formulas are in
`gpvi.variational.dual`; the EP-like objective in `gpvi.sequential.ep`.

    q(u − E[u]) ∝ N(0, K) exp(ηᵀu − ½ uᵀHu),  η = Σ α_n K⁻¹k_n,  H = Σ β_n K⁻¹k_n k_nᵀK⁻¹

Training (`gpvi.fit(model)`, recipe "cvi") alternates closed-form E-steps on the sites with Adam
M-steps on the hyperparameters, whose objective is the ELBO or the EP-like marginal-likelihood
estimate from the sites (the hybrid of Li et al.):

    ELBO  = Σ_n E_q[log p(y_n | f_n)] − KL[q ‖ p]                       (q built from fixed sites and K_θ)
    log Z_EP = the sparse power-EP energy at the sites (`gpvi.core.objectives.ep_log_marginal`)

The default recipe (`VariationalGPModel.default_recipe`): with a Gaussian likelihood the sites are
exact for every θ, so the collapsed bound by L-BFGS, with the sites written at the end; with any
other likelihood "cvi-em" (full-data CVI E-steps, L-BFGS M-steps with the sites held fixed, a few
iterations to convergence); minibatch "cvi" beyond N·M = 5e7.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from gpytorch.kernels import Kernel
from gpytorch.likelihoods import Likelihood
from torch import Tensor

from gpvi._validation import check_train_data
from gpvi.core.sites import GaussianSites, PointSites
from gpvi.models.base import FULL_BATCH_MAX_SIZE, FULL_DATA_CHUNK
from gpvi.models.registry import ModelEntry, register_model
from gpvi.models.svgp import SVGP
from gpvi.sequential.ep import ep_current_sites, ep_fixed_sites
from gpvi.variational.base import PosteriorStrategy
from gpvi.variational.dual import DualSVGPStrategy
from gpvi.variational.elbo import SiteTarget

#: N·M above which DualSVGP trains on minibatches (the older name of `FULL_BATCH_MAX_SIZE`).
COLLAPSED_MAX_SIZE = FULL_BATCH_MAX_SIZE


class DualSVGP(SVGP):
    """SVGP with a dual (site) parameterised q(u), CVI E-steps and an ELBO or EP-like M-step.

    Example:
        >>> model = DualSVGP(train_X, train_Y, likelihood=BernoulliLikelihood(), num_inducing=64)
        >>> gpvi.fit(model, objective="ep")            # E-steps on the sites, Adam on θ
        >>> model.posterior(test_X).mean

    Args:
        train_X, train_Y, likelihood, num_inducing, inducing, kernel: as for `SVGP`.
        full_gp: Use every training input as an inducing input (Z = X, not trained): the
            full-GP CVI model of Li et al. for small data.
        options: All keyword options of `SVGP` (``mean_module``, ``features``, ``learn_inducing``,
            ``jitter``, transforms, ``seed``) except ``whiten`` and ``strategy`` (the sites define q).

    Attributes:
        point_sites: The per-datum sites (inputs, α, β) of the last full-data E-step (a
            `gpvi.core.PointSites` store, or None): what the EP-like M-step holds fixed.
    """

    default_strategy: ClassVar[type[PosteriorStrategy]] = DualSVGPStrategy

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        likelihood: Likelihood | None = None,
        num_inducing: int = 128,
        inducing: str | Tensor = "kmeans",
        kernel: Kernel | None = None,
        *,
        full_gp: bool = False,
        **options: Any,
    ) -> None:
        for name in ("whiten", "strategy"):
            if name in options:
                raise TypeError(f"DualSVGP has no `{name}` option: its q is defined by sites.")
        if full_gp:
            train_X, train_Y = check_train_data(train_X, train_Y)
            num_inducing, options["learn_inducing"] = train_X.shape[0], False
        super().__init__(train_X, train_Y, likelihood, num_inducing, inducing, kernel, **options)
        self.point_sites: PointSites | None = None

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> DualSVGP:
        """Convert the stored point sites with the model (``.to(dtype)``, ``.cuda()``)."""
        result = super()._apply(fn, *args, **kwargs)
        sites = getattr(self, "point_sites", None)
        if sites is not None:
            weights = None if sites.weights is None else fn(sites.weights)
            self.point_sites = PointSites(fn(sites.inputs), fn(sites.alpha), fn(sites.beta), weights)
        return result

    # -- the sites --------------------------------------------------------------------------------
    @property
    def sites(self) -> GaussianSites:  # type: ignore[override]
        """The u-space sites (η (*b, M), H (*b, M, M)) on u − E[u]; see `gpvi.variational.dual`."""
        return self.strategy.sites()

    def set_sites(self, sites: GaussianSites) -> None:
        """Overwrite the sites (e.g. restored from a checkpoint or moved to new inducing inputs)."""
        self.strategy.set_sites(sites)

    def reset_sites(self) -> None:
        """Zero sites: q(u) equals the prior."""
        self.set_sites(self.sites.scaled(0.0))

    def dual_step(
        self,
        X: Tensor | None = None,
        Y: Tensor | None = None,
        *,
        step: float = 1.0,
        num_data: int | None = None,
        chunk_size: int = FULL_DATA_CHUNK,
    ) -> GaussianSites:
        """One CVI E-step of size ρ on model-space (X, Y); default: all training data, in chunks.

        Returns the target sites (the batch's, scaled by N/B). With a Gaussian likelihood, all data
        and ρ = 1 the result is the optimal (collapsed, Titsias) q for the current hyperparameters.
        A full-data step keeps its per-datum sites in `point_sites`.
        """
        if X is None:
            return self.full_data_step(step, chunk_size=chunk_size).target
        was_training = self.training
        self.train()
        try:
            result = self.natural_gradient_step(X, Y, step=step, num_data=num_data)
        finally:
            self.train(was_training)
        full = X.shape[-2] == self.num_data and torch.equal(X, self.train_X_model)
        self.point_sites = PointSites(X, result.alpha, result.beta) if full else None
        return result.target

    def full_data_step(self, step: float, *, chunk_size: int = FULL_DATA_CHUNK) -> SiteTarget:
        """`VariationalGPModel.full_data_step`, keeping the per-datum sites in `point_sites`."""
        result = super().full_data_step(step, chunk_size=chunk_size)
        self.point_sites = PointSites(self.train_X_model, result.alpha, result.beta)
        return result

    # -- the EP-like M-step objective ---------------------------------------------------------------
    def ep_objective(
        self, X: Tensor | None = None, Y: Tensor | None = None, *, num_data: int | None = None, power: float = 1.0
    ) -> Tensor:
        """EP-like estimate of log p(y | θ) from the sites (Li et al. 2023; `gpvi.sequential.ep`).

        On all training data after a full-data E-step, the per-datum sites of that E-step
        (`point_sites`) are held fixed while θ moves and q is rebuilt from them at θ (with Z = X
        exactly Li et al.'s full-GP M-step). On a minibatch, the sites are recomputed from the
        current q_θ with gradients through that computation. With a Gaussian likelihood, Z = X and
        exact sites it equals the exact log marginal likelihood. One latent GP only.
        """
        if self.num_latents != 1:
            raise NotImplementedError("The EP-like objective supports a single latent GP.")
        if X is None:
            X, Y = self.training_data()
        N = self.num_data if num_data is None else num_data
        sites = self.point_sites
        if sites is not None and sites.alpha.shape == Y.shape and torch.equal(X, sites.inputs):
            return ep_fixed_sites(
                self.strategy, self.likelihood, sites, Y, num_data=N, power=power, num_quadrature=self.num_quadrature
            )
        return ep_current_sites(
            self.strategy, self.likelihood, X, Y, num_data=N, power=power, num_quadrature=self.num_quadrature
        )


register_model(
    ModelEntry(
        name="dual-svgp",
        label="gpvi DualSVGP",
        constructor=DualSVGP,
        trainer="gpvi",
        defaults={
            "bo": {"max_steps": 100, "warm_steps": 40, "update_steps": 10, "fit": "default"},
            "regression": {"num_inducing": 256, "inducing": "kmeans", "max_steps": 300},
        },
    )
)

__all__ = ["COLLAPSED_MAX_SIZE", "DualSVGP"]
