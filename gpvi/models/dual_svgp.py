"""DualSVGP: a sparse variational GP whose q(u) is held by dual (site) parameters and fit by CVI.

Adam, Chang, Khan & Solin (2021), "Dual Parameterization of Sparse Variational Gaussian
Processes", NeurIPS; Li, John & Solin (2023), "Improving Hyperparameter Learning under Approximate
Inference in Gaussian Process Models", ICML. The formulas are in `gpvi.sequential.dual`.

    q(u − E[u]) ∝ N(0, K) exp(ηᵀu − ½ uᵀHu),  η = Σ α_n K⁻¹k_n,  H = Σ β_n K⁻¹k_n k_nᵀK⁻¹

Training (`gpvi.fit(model)`, recipe "cvi") alternates closed-form E-steps on the sites with Adam
M-steps on the hyperparameters, whose objective is the ELBO or the EP-like marginal-likelihood
estimate from the sites (the hybrid of Li et al.):

    ELBO  = Σ_n E_q[log p(y_n | f_n)] − KL[q ‖ p]                       (q built from fixed sites and K_θ)
    log Z_EP = the sparse power-EP energy at the sites (`gpvi.core.objectives.ep_log_marginal`)
"""

from __future__ import annotations

from typing import Any

import torch
from gpytorch.kernels import Kernel
from gpytorch.likelihoods import Likelihood
from torch import Tensor

from gpvi._validation import check_train_data
from gpvi.core.likelihoods import expected_log_prob, expected_log_prob_and_grads
from gpvi.core.linalg import tri_solve
from gpvi.core.objectives import ep_log_marginal
from gpvi.core.sites import GaussianSites, sites_from_grads
from gpvi.models.svgp import SVGP
from gpvi.sequential.dual import DualSites, DualSVGPStrategy, dual_step


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
        All keyword options of `SVGP` (``mean_module``, ``learn_inducing``, ``jitter``, transforms, ``seed``)
        except ``whiten`` (the sites define q whatever the coordinates).
    """

    #: The `gpvi.fit` recipe used when no optimizer is given.
    default_optimizer = "cvi"

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
        if "whiten" in options:
            raise TypeError("DualSVGP has no `whiten` option: its q is defined by sites.")
        if full_gp:
            train_X, train_Y = check_train_data(train_X, train_Y)
            num_inducing, options["learn_inducing"] = train_X.shape[0], False
        super().__init__(train_X, train_Y, likelihood, num_inducing, inducing, kernel, **options)
        old = self.strategy
        sites = DualSites(old.features.num_inducing, old._variational_distribution.batch_shape, dtype=train_X.dtype)
        strategy = DualSVGPStrategy(self.model, old.features, sites, jitter=old._jitter_val)
        self.model.variational_strategy = strategy.to(train_X)
        self._point_sites: tuple[Tensor, Tensor] | None = None  # per-datum (α, β) of the last full E-step

    # -- the sites --------------------------------------------------------------------------------
    @property
    def sites(self) -> GaussianSites:
        """The u-space sites (η (*b, M), H (*b, M, M)) on u − E[u]; see `gpvi.sequential.dual`."""
        return self.strategy.dual_sites.sites

    def set_sites(self, sites: GaussianSites) -> None:
        """Overwrite the sites (e.g. restored from a checkpoint or moved to new inducing inputs)."""
        self.strategy.dual_sites.assign(sites)

    def reset_sites(self) -> None:
        """Zero sites: q(u) equals the prior."""
        self.set_sites(self.sites.scaled(0.0))

    def set_optimal_q(self) -> None:
        """Exact sites on all data (Gaussian likelihood): one full-data E-step with ρ = 1."""
        self._require_gaussian("set_optimal_q")
        self.dual_step(step=1.0)

    def dual_step(
        self,
        X: Tensor | None = None,
        Y: Tensor | None = None,
        *,
        step: float = 1.0,
        num_data: int | None = None,
        chunk_size: int = 4096,
    ) -> GaussianSites:
        """One CVI E-step of size ρ on model-space (X, Y); default: all training data, in chunks.

        Returns the target sites (the batch's, scaled by N/B). With a Gaussian likelihood, all data
        and ρ = 1 the result is the optimal (collapsed, Titsias) q for the current hyperparameters.
        """
        was_training = self.training
        self.train()
        try:
            if X is not None:
                result = dual_step(self, X, Y, step=step, num_data=num_data)
                full = X.shape[-2] == self.num_data and torch.equal(X, self.train_X_model)
                self._point_sites = (result.alpha, result.beta) if full else None
                return result.target
            X_all, Y_all = self.train_X_model, self.model.train_targets
            target, alphas, betas = None, [], []
            for idx in torch.arange(X_all.shape[-2], device=X_all.device).split(chunk_size):
                part = dual_step(self, X_all[idx], Y_all[..., idx], step=0.0, num_data=idx.numel())
                target = part.target if target is None else target + part.target
                alphas.append(part.alpha)
                betas.append(part.beta)
            self.set_sites(self.sites.damped(target, step))
            self._point_sites = (torch.cat(alphas, -1), torch.cat(betas, -1))
            return target
        finally:
            self.train(was_training)

    # -- M-step objectives ------------------------------------------------------------------------
    def ep_objective(
        self, X: Tensor | None = None, Y: Tensor | None = None, *, num_data: int | None = None, power: float = 1.0
    ) -> Tensor:
        """EP-like estimate of log p(y | θ) from the sites (Li et al. 2023; sparse power-EP energy).

        On all training data (after a full-data E-step) the per-datum sites (α_n, β_n) of that E-step
        are held fixed while θ moves and q is rebuilt from them at θ (`_ep_fixed_sites`; with Z = X
        this is exactly Li et al.'s full-GP M-step). On a minibatch, the sites are recomputed from
        the current q_θ with gradients through that computation (the authors' sparse code), q being
        rebuilt from the stored u-space sites and K_θ.
        With a Gaussian likelihood, Z = X and exact sites it equals the exact log marginal
        likelihood. One-dimensional likelihoods with a single latent only.
        """
        if self._num_latents != 1:
            raise NotImplementedError("The EP-like objective supports a single latent GP.")
        if X is None:
            X, Y = self.train_X_model, self.model.train_targets
        N = self.num_data if num_data is None else num_data
        strategy = self.strategy
        stored = getattr(self, "_point_sites", None)  # per-datum sites of the last full-data E-step
        if stored is not None and stored[0].shape == Y.shape and torch.equal(X, self.train_X_model):
            return self._ep_fixed_sites(X, Y, *stored, N, power)
        marg = strategy.marginals(X)
        alpha, beta = _sites_with_grad(self.likelihood, Y, marg)
        A = tri_solve(marg.chol_Kuu, marg.Kuf)
        q_v = strategy.whitened_q(marg.chol_Kuu)
        return self._ep_energy(X, Y, marg.prior_mean, A, q_v, alpha, beta, N, power, proj_mean=marg.centred_mean)

    def _ep_fixed_sites(self, X: Tensor, Y: Tensor, alpha: Tensor, beta: Tensor, N: int, power: float) -> Tensor:
        """The EP-like energy with per-datum sites held fixed and q rebuilt from them at θ (form P).

        q(v) ∝ N(0, I) Π_n exp(α_n a_nᵀv − ½ β_n (a_nᵀv)²), a_n = L_θ⁻¹ k_θ(Z, x_n): the sites stay on
        f_n as θ moves (Li et al.'s full-GP treatment, extended to inducing points), so q and the
        per-datum terms of the energy describe the same site approximation at every θ.
        """
        A = tri_solve(self.strategy._chol_Kuu(), self.features.Kuf(self.model.covar_module, X))
        q_v = GaussianSites.from_data(A, alpha, beta).whitened_posterior()
        return self._ep_energy(X, Y, self.model.mean_module(X), A, q_v, alpha, beta, N, power)

    def _ep_energy(
        self,
        X: Tensor,
        Y: Tensor,
        prior_mean: Tensor,
        A: Tensor,
        q_v: tuple[Tensor, Tensor],
        alpha: Tensor,
        beta: Tensor,
        N: int,
        power: float,
        proj_mean: Tensor | None = None,
    ) -> Tensor:
        """`ep_log_marginal` for whitened q(v) = (mean, lower root) and A = L⁻¹Kuf (B points).

        ``proj_mean`` = Aᵀm when the caller already has it."""
        mean_v, tril_v = q_v
        if proj_mean is None:
            proj_mean = (A.mT @ mean_v.unsqueeze(-1)).squeeze(-1)
        return ep_log_marginal(
            self.likelihood,
            Y,
            prior_mean=prior_mean,
            proj_mean=proj_mean,
            proj_var=(tril_v.mT @ A).pow(2).sum(-2),
            cond_var=self.model.covar_module(X, diag=True) - A.pow(2).sum(-2),
            alpha=alpha,
            beta=beta,
            q_mean=mean_v,
            q_scale_tril=tril_v,
            num_data=N,
            power=power,
        )

    # -- absorbing data ---------------------------------------------------------------------------
    def update(self, X: Tensor, Y: Tensor, *, max_steps: int = 20, **fit_options: Any) -> DualSVGP:
        """Absorb new data in place: append them, then a short warm-started CVI fit (E- and M-steps)."""
        fit_options.setdefault("optimizer", "cvi")
        return super().update(X, Y, max_steps=max_steps, **fit_options)


def _sites_with_grad(likelihood: Likelihood, y: Tensor, marg: Any) -> tuple[Tensor, Tensor]:
    """α = g − 2h(μ − μ₀), β = −2h ≥ 1e-8 at the marginals, differentiable (second-order autograd)."""
    mean = marg.prior_mean + marg.centred_mean
    if not (mean.requires_grad or marg.var.requires_grad):  # evaluated without gradients
        grads = expected_log_prob_and_grads(likelihood, y, mean, marg.var)
        return sites_from_grads(marg.centred_mean, grads.d_mean, grads.d_var)
    with torch.enable_grad():
        value = expected_log_prob(likelihood, y, mean, marg.var)
        g, h = torch.autograd.grad(value.sum(), (mean, marg.var), create_graph=True)
    return sites_from_grads(marg.centred_mean, g, h)


__all__ = ["DualSVGP"]
