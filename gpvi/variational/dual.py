"""The dual (site-parameterised) strategy: q(u) held as Gaussian sites on u − E[u], rebuilt on the current Kuu.

Adam, Chang, Khan & Solin (2021), "Dual Parameterization of Sparse Variational Gaussian
Processes", NeurIPS (t-SVGP). q(u) is stored in the u-space natural form (U) of the paper
(`gpvi.core.sites.GaussianSites`):

    η = Σ_n α_n w_n,   H = Σ_n β_n w_n w_nᵀ,   w_n = K⁻¹ k_n          (η (*b, M), H (*b, M, M))
    q(u − E[u]) = N(S η, S),   S = (K⁻¹ + H)⁻¹          (computed whitened: q(v) = N(B⁻¹Lᵀη, B⁻¹),
                                                          B = I + LᵀHL, K = LLᵀ; never K + KHK)

The sites are buffers, never optimiser parameters; q is rebuilt from them and the *current* K_θ,
so hyperparameter gradients flow through K_θ into q (this is what makes the dual M-step bound
tighter than freezing (m, S): form (U) is exact under outputscale changes, method note §1.6).
Site coordinates of the contract (`sites`, `set_sites`, the marginals' projection K⁻¹Kuf) are
u − E[u], so a natural-gradient step on this strategy *is* the paper's CVI E-step.

A *frozen* factor t_F(u) = exp(η_Fᵀu − ½uᵀH_Fu) may sit next to the sites: the summary of data no
longer held (the memory-based sequential update, Chang et al. 2023; `gpvi.models.streaming`). It
acts as part of the prior: q ∝ p(u) t_F(u) t(u), the CVI steps move t only, and the ELBO's
regulariser becomes (`kl_divergence`)

    KL[q ‖ p] − E_q[log t_F(u)],

so that every ELBO of the library is, with a frozen factor, the streaming ELBO
Σ_held E_q[log p(y_n | f_n)] + E_q[log t_F] − KL[q ‖ p]: each datum counted once, by its likelihood
while held, by its frozen Gaussian site once summarised.
"""

from __future__ import annotations

import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.means import ConstantMean
from gpytorch.variational import _VariationalDistribution
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from gpvi.core.linalg import tri_solve
from gpvi.core.objectives import kl_whitened
from gpvi.core.sites import GaussianSites
from gpvi.features.base import InducingFeatures
from gpvi.features.points import InducingPoints
from gpvi.variational.svgp import WhitenedSVGPStrategy


class DualSites(_VariationalDistribution):
    """Buffers η (*b, M) and H (*b, M, M): u-space sites on u − E[u] (zero sites: q = prior), and the
    frozen factor (η_F, H_F) of summarised data with the count of data points it holds."""

    def __init__(self, num_inducing: int, batch_shape: torch.Size | None = None, dtype: torch.dtype | None = None):
        batch_shape = torch.Size() if batch_shape is None else torch.Size(batch_shape)
        super().__init__(num_inducing_points=num_inducing, batch_shape=batch_shape)
        dtype = dtype or torch.get_default_dtype()
        self.register_buffer("eta", torch.zeros(*batch_shape, num_inducing, dtype=dtype))
        self.register_buffer("prec", torch.zeros(*batch_shape, num_inducing, num_inducing, dtype=dtype))
        self.register_buffer("frozen_eta", torch.zeros(*batch_shape, num_inducing, dtype=dtype))
        self.register_buffer("frozen_prec", torch.zeros(*batch_shape, num_inducing, num_inducing, dtype=dtype))
        self.register_buffer("frozen_count", torch.zeros((), dtype=torch.long))
        # for a constant prior mean: Σβ_n w_n, (Σα_n, Σβ_n) and the mean μ_F the sites are centred at
        self.register_buffer("frozen_shift", torch.zeros(*batch_shape, num_inducing, dtype=dtype))
        self.register_buffer("frozen_sums", torch.zeros(*batch_shape, 2, dtype=dtype))
        self.register_buffer("frozen_mean", torch.zeros(batch_shape, dtype=dtype))

    @classmethod
    def holding(cls, sites: GaussianSites) -> DualSites:
        """Buffers holding the given sites as they are (no copy: a conditioned model's sites may carry
        an autograd graph to the inputs it was conditioned on); no frozen factor (`load_frozen` adds one)."""
        new = cls(sites.eta.shape[-1], sites.eta.shape[:-1], dtype=sites.eta.dtype).to(sites.eta.device)
        new.eta, new.prec = sites.eta, sites.prec
        return new

    @property
    def sites(self) -> GaussianSites:
        """The buffers as `GaussianSites` (η, H); they share the buffers' memory."""
        return GaussianSites(self.eta, self.prec)

    @property
    def frozen(self) -> GaussianSites | None:
        """The frozen factor t_F (η_F, H_F), or None while it holds no data."""
        if int(self.frozen_count) == 0:
            return None
        return GaussianSites(self.frozen_eta, self.frozen_prec)

    FROZEN_BUFFERS = ("frozen_eta", "frozen_prec", "frozen_shift", "frozen_sums", "frozen_mean")

    def frozen_state(self) -> dict[str, Tensor]:
        """The frozen factor's buffers (η_F, H_F, Σβw, (Σα, Σβ), μ_F) by name, and its count."""
        return {**{k: getattr(self, k) for k in self.FROZEN_BUFFERS}, "frozen_count": self.frozen_count}

    @torch.no_grad()
    def load_frozen(self, state: dict[str, Tensor], projection: Tensor | None = None) -> None:
        """Set the frozen factor from `frozen_state`, moved to new features by ``projection`` P
        (η ← Pη, H ← PHPᵀ, Σβw ← P Σβw) when given."""
        eta, prec, shift = state["frozen_eta"], state["frozen_prec"], state["frozen_shift"]
        if projection is not None:
            moved = GaussianSites(eta, prec).project(projection)
            eta, prec = moved.eta, moved.prec
            shift = (projection @ shift.unsqueeze(-1)).squeeze(-1)
        for name, value in (("frozen_eta", eta), ("frozen_prec", prec), ("frozen_shift", shift)):
            getattr(self, name).copy_(value.expand_as(getattr(self, name)))
        for name in ("frozen_sums", "frozen_mean", "frozen_count"):
            getattr(self, name).copy_(state[name].expand_as(getattr(self, name)))

    @torch.no_grad()
    def rebase_frozen(self, mean: Tensor) -> None:
        """Re-centre the frozen sites from μ_F to the constant prior mean ``mean`` (*b,): with
        Δ = mean − μ_F, α_n(f − μ_F) − ½β_n(f − μ_F)² in the variable f − mean has α_n − β_nΔ, so
        η_F ← η_F − Δ Σβ_n w_n and Σα ← Σα − Δ Σβ (H_F and Σβ unchanged)."""
        delta = mean.expand_as(self.frozen_mean) - self.frozen_mean
        self.frozen_eta.sub_(delta.unsqueeze(-1) * self.frozen_shift)
        self.frozen_sums[..., 0].sub_(delta * self.frozen_sums[..., 1])
        self.frozen_mean.copy_(mean.expand_as(self.frozen_mean))

    @torch.no_grad()
    def add_frozen(self, sites: GaussianSites, shift: Tensor, sums: Tensor, count: int) -> None:
        """Add summed sites (η, H), their Σβw and (Σα, Σβ), centred at the current μ_F, of ``count`` points."""
        self.frozen_eta.add_(sites.eta)
        self.frozen_prec.add_(sites.prec)
        self.frozen_shift.add_(shift)
        self.frozen_sums.add_(sums)
        self.frozen_count.add_(count)

    @torch.no_grad()
    def assign(self, sites: GaussianSites) -> None:
        """Overwrite the buffers in place (bumps their version, so prediction caches refresh)."""
        self.eta.copy_(sites.eta.expand_as(self.eta))
        self.prec.copy_(sites.prec.expand_as(self.prec))

    def forward(self) -> MultivariateNormal:
        """Always raises `RuntimeError`: the sites define q(u) only with Kuu (use the strategy's `whitened_q`)."""
        raise RuntimeError("DualSites define q(u) only together with Kuu: use the strategy's `whitened_q(L)`.")

    def initialize_variational_distribution(self, prior_dist: MultivariateNormal) -> None:
        """Zero sites are the prior: nothing to do."""


class DualSVGPStrategy(WhitenedSVGPStrategy):
    """`WhitenedSVGPStrategy` whose q(v) is built from `DualSites` and the current Kuu = LLᵀ.

    q(v) = N(B⁻¹ Lᵀη, B⁻¹) with B = I + LᵀHL (one Cholesky, `GaussianSites.whitened_posterior`).
    Marginals, the lazy predictive covariance, pathwise sampling and conditioning are inherited:
    they read q only through `whitened_q(L)`.

    Args:
        features: The inducing features (fixed during CVI: the sites live on u = f(Z)).
        dual_sites: The site buffers (default: zero sites of shape (*batch_shape, M)).
        jitter: Added to Kuu's diagonal.
        batch_shape: Batch shape of the default sites (one per latent output).
    """

    site_space = "u"

    def __init__(
        self,
        features: InducingFeatures,
        dual_sites: DualSites | None = None,
        jitter: float | None = None,
        *,
        batch_shape: torch.Size = torch.Size(),  # noqa: B008
    ) -> None:
        if dual_sites is None:
            dual_sites = DualSites(features.num_inducing, batch_shape, dtype=features.dtype)
        super().__init__(features, dual_sites, jitter=jitter, whiten=True)  # type: ignore[arg-type]
        self.variational_params_initialized.fill_(1)

    @property
    def _dtype(self) -> torch.dtype:
        return self._variational_distribution.eta.dtype

    @property
    def prior_distribution(self) -> MultivariateNormal:
        zeros = torch.zeros_like(self._variational_distribution.eta)
        return MultivariateNormal(zeros, DiagLinearOperator(torch.ones_like(zeros)))

    @property
    def dual_sites(self) -> DualSites:
        """The `DualSites` buffers (the strategy's variational distribution)."""
        return self._variational_distribution

    def sites(self) -> GaussianSites:
        """The stored u-space sites (η, H) on u − E[u] (without the frozen factor, part of the prior)."""
        return self.dual_sites.sites

    def set_sites(self, sites: GaussianSites) -> None:
        self.dual_sites.assign(sites)

    @property
    def frozen(self) -> GaussianSites | None:
        """The frozen factor t_F of summarised data (u-space, on u − E[u] at the current prior mean), or None.

        The sites are stored centred at the constant prior mean μ_F of their folding; at the mean
        μ₀ of now (a `ConstantMean`'s constant) they read η_F − Δ Σβ_n w_n with Δ = μ₀ − μ_F, so a
        moving mean does not shift what the summarised data say about f (`DualSites.rebase_frozen`).
        """
        stored = self.dual_sites.frozen
        if stored is None:
            return None
        delta = self.frozen_offset()
        if delta is None:
            return stored
        return GaussianSites(stored.eta - delta.unsqueeze(-1) * self.dual_sites.frozen_shift, stored.prec)

    def frozen_offset(self) -> Tensor | None:
        """Δ = μ₀ − μ_F (*b,) for a `ConstantMean` prior, None for any other mean (no correction)."""
        mean = getattr(self.model, "mean_module", None)
        if not isinstance(mean, ConstantMean):
            return None
        return (
            mean.constant.reshape(-1)
            .expand_as(self.dual_sites.frozen_mean.reshape(-1))
            .reshape(self.dual_sites.frozen_mean.shape)
            - self.dual_sites.frozen_mean
        )

    def frozen_constant(self) -> Tensor | float:
        """The part of log t_F that the mean shift makes depend on θ: Σα Δ − ½ Σβ Δ² (*b,) (0 without)."""
        delta = self.frozen_offset()
        if delta is None or self.dual_sites.frozen is None:
            return 0.0
        sums = self.dual_sites.frozen_sums
        return sums[..., 0] * delta - 0.5 * sums[..., 1] * delta.pow(2)

    def total_sites(self) -> GaussianSites:
        """Sites and frozen factor together: q(u − E[u]) ∝ N(0, K) × these."""
        frozen = self.frozen
        return self.sites() if frozen is None else self.sites() + frozen

    def q_parameters(self) -> tuple[Tensor, Tensor]:
        """(m, lower S^{1/2}) of q(v) at the current hyperparameters."""
        return self.whitened_q(self.chol_Kuu())

    def whitened_q(self, chol_Kuu: Tensor) -> tuple[Tensor, Tensor]:
        memo = self.__dict__.get("_memo")
        if memo is not None and memo.get("q_for") is chol_Kuu:
            return memo["q"]
        q = self.held_q(chol_Kuu)
        if q is None:
            q = self.total_sites().whiten(chol_Kuu).whitened_posterior()
        if memo is not None:
            memo["q_for"], memo["q"] = chol_Kuu, q
        return q

    def held_q_at(self, sites, chol_Kuu: Tensor) -> tuple[Tensor, Tensor]:
        """q(v) from per-datum ``sites`` (a `PointSites`) and the frozen factor at the factor ``chol_Kuu``."""
        A = tri_solve(chol_Kuu, self.features.Kuf(self.model.covar_module, sites.inputs))
        total = sites.summed(A)
        frozen = self.frozen
        if frozen is not None:
            total = total + frozen.whiten(chol_Kuu)
        return total.whitened_posterior()

    def kl_divergence(self) -> Tensor:
        """KL[q ‖ p] − E_q[log t_F(u)] (the frozen factor's expected log, see the module docstring), (*b,).

        With q(v) = N(m, S S_trilᵀ) and t_F on v (η_v = Lᵀη_F, H_v = LᵀH_FL):
        E_q[log t_F] = η_vᵀm − ½ (mᵀH_v m + tr(H_v S)). Without a frozen factor, the KL alone.
        """
        L = self.chol_Kuu()
        mean, tril = self.whitened_q(L)
        kl = kl_whitened(mean, tril)
        frozen = self.frozen
        if frozen is None:
            return kl
        white = frozen.whiten(L)
        Hm = (white.prec @ mean.unsqueeze(-1)).squeeze(-1)
        expected = (white.eta * mean).sum(-1) - 0.5 * ((mean * Hm).sum(-1) + ((white.prec @ tril) * tril).sum((-2, -1)))
        return kl - expected - self.frozen_constant()

    @torch.no_grad()
    def set_q(self, mean: Tensor, scale_tril: Tensor, chol_Kuu: Tensor | None = None) -> None:
        """Set the sites that give q(v) = N(mean, scale_tril scale_trilᵀ) at the current Kuu.

        η_v = S⁻¹m, H_v = S⁻¹ − I, then back to u-space: η = L⁻ᵀη_v, H = L⁻ᵀH_vL⁻¹ (the dual
        parameters of an ordinary SVGP's q; the inverse of `whitened_q`).
        """
        L = self.chol_Kuu() if chol_Kuu is None else chol_Kuu
        total = GaussianSites.from_whitened_posterior(mean, scale_tril).unwhiten(L)
        frozen = self.frozen
        self.dual_sites.assign(total if frozen is None else total - frozen)

    def u_space_sites(self) -> GaussianSites:
        """All of q's sites on u − E[u], the frozen factor included."""
        return self.total_sites()

    def conditioned(self, X_new: Tensor, alpha: Tensor, beta: Tensor) -> DualSVGPStrategy:
        """A dual strategy on [Z; X_new] with the sites (α, β) on f(X_new) added (exact; see the base).

        The stored sites and the frozen factor are lifted separately (η' = [η; 0], H' = blkdiag(H, 0):
        the same posterior on the enlarged inducing set), so the result is again a `DualSVGPStrategy`
        whose sites a CVI step or an update can move.
        """
        if not isinstance(self.features, InducingPoints):
            raise NotImplementedError(
                f"conditioning grows the inducing set: it needs InducingPoints, not {type(self.features).__name__}."
            )
        M, n_new = self.features.num_inducing, X_new.shape[-2]
        lift = torch.zeros(M + n_new, M, dtype=X_new.dtype, device=X_new.device)
        lift[:M].fill_diagonal_(1.0)
        select = torch.zeros(M + n_new, n_new, dtype=X_new.dtype, device=X_new.device)
        select[M:].fill_diagonal_(1.0)
        sites = self.sites().project(lift) + GaussianSites.from_data(select, alpha, beta)
        dual = DualSites.holding(sites)
        if self.dual_sites.frozen is not None:  # the whole frozen state, lifted (centring included)
            dual.load_frozen(self.dual_sites.frozen_state(), lift)
        strategy = DualSVGPStrategy(self.features.extended(X_new), dual, jitter=self.jitter_val)
        return strategy

    def _initialize_if_needed(self) -> None:
        """Zero sites are already the prior."""


__all__ = ["DualSVGPStrategy", "DualSites"]
