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

Streams (`update`, Chang et al. 2023, "Memory-Based Dual Gaussian Processes for Sequential
Learning", ICML; `gpvi.models.streaming`): each new batch re-selects Z, moves the summary of past
data onto it, absorbs the batch by CVI, refits θ on the batch and a bounded memory of past points,
and updates the memory by Bayesian leverage; the cost of an update does not grow with the stream.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from gpytorch.kernels import Kernel
from gpytorch.likelihoods import Likelihood
from torch import Tensor

from gpvi._validation import check_train_data
from gpvi.core.sites import GaussianSites, PointSites, batch_sites
from gpvi.models.base import FULL_BATCH_MAX_SIZE, FULL_DATA_CHUNK
from gpvi.models.registry import ModelEntry, register_model
from gpvi.models.streaming import StreamState, UpdateSettings, install_inducing, stream_update
from gpvi.models.svgp import SVGP
from gpvi.sequential.ep import ep_current_sites, ep_fixed_sites
from gpvi.sequential.memory import MEMORY_SELECTIONS
from gpvi.variational.base import PosteriorStrategy
from gpvi.variational.dual import DualSVGPStrategy
from gpvi.variational.elbo import SiteTarget

#: The objectives of the hyperparameter refit of `DualSVGP.update` (`gpvi.models.streaming`).
MEMORY_WEIGHTS = ("summary", "rescaled")
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
        memory_size: The most past data points `update` keeps with their exact sites (0: none; every
            point past its batch is summarised in the frozen factor).
        memory_selection: How `update` chooses the memory: "leverage" (largest Bayesian leverage
            under the current q) or "random" (a uniform sample of the stream, for ablations).
        memory_weight: The objective of `update`'s hyperparameter refit: "summary" (default: every past
            point counted once, held points by their likelihood, the others by their frozen sites;
            exact for a Gaussian likelihood at fixed kernel and Z) or "rescaled" (the past data
            estimated from the memory, each memory point weighted num_past/|memory|); which is better
            depends on the stream (`gpvi.models.streaming`).
        options: All keyword options of `SVGP` (``mean_module``, ``features``, ``learn_inducing``,
            ``jitter``, transforms, ``seed``) except ``whiten`` and ``strategy`` (the sites define q).

    Attributes:
        point_sites: The per-datum sites (inputs, α, β) of the training data (the last full-data
            E-step, or the active set of a stream: memory and newest batch), a
            `gpvi.core.PointSites` store, or None: what the EP-like M-step and `update` hold fixed.
        stream_state: The memory and key bookkeeping of a stream (`gpvi.models.streaming.StreamState`),
            None before the first `update`.
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
        memory_size: int = 0,
        memory_selection: str = "leverage",
        memory_weight: str = "summary",
        **options: Any,
    ) -> None:
        for name in ("whiten", "strategy"):
            if name in options:
                raise TypeError(f"DualSVGP has no `{name}` option: its q is defined by sites.")
        if not isinstance(memory_size, int) or isinstance(memory_size, bool) or memory_size < 0:
            raise ValueError(f"`memory_size` must be a non-negative int, got {memory_size!r}.")
        if memory_weight not in MEMORY_WEIGHTS:
            raise ValueError(f"`memory_weight` must be one of {MEMORY_WEIGHTS}, got {memory_weight!r}.")
        if memory_selection not in MEMORY_SELECTIONS:
            raise ValueError(f"`memory_selection` must be one of {MEMORY_SELECTIONS}, got {memory_selection!r}.")
        if full_gp:
            train_X, train_Y = check_train_data(train_X, train_Y)
            num_inducing, options["learn_inducing"] = train_X.shape[0], False
        super().__init__(train_X, train_Y, likelihood, num_inducing, inducing, kernel, **options)
        self.point_sites: PointSites | None = None
        self.memory_size, self.memory_selection, self.memory_weight = memory_size, memory_selection, memory_weight
        self.num_inducing_target = int(num_inducing)
        self.seed = int(options.get("seed", 0))
        self.stream_state: StreamState | None = None

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> DualSVGP:
        """Convert the stored point sites with the model (``.to(dtype)``, ``.cuda()``)."""
        result = super()._apply(fn, *args, **kwargs)
        sites = getattr(self, "point_sites", None)
        if sites is not None:
            weights = None if sites.weights is None else fn(sites.weights)
            self.point_sites = PointSites(fn(sites.inputs), fn(sites.alpha), fn(sites.beta), weights)
        return result

    @property
    def default_recipe(self) -> str:
        """As `VariationalGPModel.default_recipe`, but "cvi-em" once a stream has summarised data
        (the collapsed bound knows only the held data, not the frozen factor)."""
        recipe = super().default_recipe
        return "cvi-em" if recipe == "collapsed" and self.strategy.frozen is not None else recipe

    def collapsed_elbo(self) -> torch.Tensor:
        """`VariationalGPModel.collapsed_elbo`; refused once a stream has summarised data (it would ignore it)."""
        if self.strategy.frozen is not None:
            raise RuntimeError(
                "collapsed_elbo sees only the held data: this model summarises streamed data in a frozen factor; "
                "use model.elbo() (the streaming ELBO) or gpvi.fit(model) (recipe 'cvi-em')."
            )
        return super().collapsed_elbo()

    # -- streams ------------------------------------------------------------------------------------
    def update(
        self,
        X: torch.Tensor,
        Y: torch.Tensor,
        *,
        step: float | None = None,
        num_steps: int | None = None,
        hyperparameters: bool = True,
        reselect_inducing: bool = True,
        max_iter: int = 50,
    ) -> DualSVGP:
        """Absorb a batch of a stream in place, with a bounded memory (`gpvi.models.streaming`); returns the model.

        Re-selects the inducing inputs, moves the summary of past data onto them, absorbs the batch
        and refreshes the memory's sites by damped CVI, refits the hyperparameters on batch and memory
        (with the summary), and updates the memory. The model's training data become the active set
        (memory and this batch); the rest of the stream lives in the frozen factor.

        Args:
            X: `n x d` new inputs; Y: `n x m` new targets (same transforms as at construction).
            step: CVI step size ρ (default 1 for a Gaussian likelihood, where one step is exact, else 0.5).
            num_steps: Most CVI steps per pass (default 1 for a Gaussian likelihood, else 20; stops
                earlier when the sites stop moving).
            hyperparameters: Refit θ (kernel, likelihood, mean) by L-BFGS; False keeps θ.
            reselect_inducing: Re-select Z by pivoted Cholesky over [Z; active set; X] (M points,
                the constructor's ``num_inducing``); False keeps Z. Z is not trained by gradient
                during updates (the frozen summary lives on it).
            max_iter: L-BFGS iterations of the hyperparameter refit.

        Bad input raises before the model changes; an update that fails (e.g. a matrix that is not
        positive definite) restores the model as it was before re-raising.
        """
        X_raw, X_model, Y_model = self.check_new_data(X, Y)
        gaussian = self.is_gaussian
        settings = UpdateSettings(
            step=(1.0 if gaussian else 0.5) if step is None else float(step),
            num_steps=(1 if gaussian else 20) if num_steps is None else int(num_steps),
            hyperparameters=bool(hyperparameters),
            reselect_inducing=bool(reselect_inducing),
            max_iter=int(max_iter),
        )
        if not 0.0 < settings.step <= 1.0 or settings.num_steps < 1 or settings.max_iter < 1:
            raise ValueError(f"`step` must be in (0, 1], `num_steps` and `max_iter` positive; got {settings}.")
        saved = copy.deepcopy(self.__dict__)
        try:
            stream_update(self, X_raw, X_model, self.latent_targets(Y_model), Y_model, settings)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        return self

    def set_active_data(self, X_raw: torch.Tensor, X_model: torch.Tensor, Y_model: torch.Tensor) -> None:
        """Replace the training data (raw inputs, model-space inputs, transformed targets) by a stream's active set."""
        self._set_train_data(X_raw, X_model, Y_model)

    @property
    def memory(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The memory's raw inputs (`k x d`) and transformed targets (`k x m`), or None before a stream starts."""
        if self.stream_state is None:
            return None
        mask = self.stream_state.in_memory.to(self.train_inputs[0].device)
        return self.train_inputs[0][mask], self.train_targets[mask]

    @property
    def num_summarised(self) -> int:
        """Data points held only in the frozen factor (seen, and neither in the memory nor in the newest batch)."""
        return int(self.strategy.dual_sites.frozen_count)

    def plot_locations(self) -> dict[str, torch.Tensor]:
        """Inducing inputs and, for a stream, the memory's inputs."""
        locations = super().plot_locations()
        memory = self.memory
        if memory is not None and memory[0].shape[0]:
            locations["memory"] = memory[0].detach()
        return locations

    # -- state: the stream's data and bookkeeping travel with state_dict ------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """The training data (a stream's active set), the per-datum sites, the inducing inputs' shape and
        the stream's bookkeeping: what `load_state_dict` needs to continue a stream identically."""
        sites, state = self.point_sites, self.stream_state
        return {
            "data": (self.train_inputs[0], self.train_X_model, self.train_targets),
            "point_sites": None if sites is None else (sites.inputs, sites.alpha, sites.beta),
            "inducing_shape": tuple(self.strategy.features.Z.shape),
            "stream": None
            if state is None
            else {
                "in_memory": state.in_memory,
                "keys": state.keys,
                "num_seen": state.num_seen,
                "generator": state.generator.get_state(),
                "residual_sum": state.residual_sum,
            },
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of `get_extra_state`; runs before the submodules load (so Z and the sites can be resized)."""
        if tuple(self.strategy.features.Z.shape) != tuple(state["inducing_shape"]):
            Z = self.strategy.features.Z.new_zeros(state["inducing_shape"])
            install_inducing(self, Z[(0,) * (Z.dim() - 2)] if Z.dim() > 2 else Z)
        self.__dict__["_loaded_extra"] = state

    def load_state_dict(self, state_dict: Any, strict: bool = True, keep_transforms: bool = True, assign: bool = False):
        """`VariationalGPModel.load_state_dict`, restoring the training data, sites and stream state saved with it."""
        result = super().load_state_dict(state_dict, strict=strict, keep_transforms=keep_transforms, assign=assign)
        state = self.__dict__.pop("_loaded_extra", None)
        if state is not None:
            self._set_train_data(*state["data"])
            sites = state["point_sites"]
            self.point_sites = None if sites is None else PointSites(*sites)
            stream = state["stream"]
            self.stream_state = None
            if stream is not None:
                generator = torch.Generator()
                generator.set_state(stream["generator"])
                self.stream_state = StreamState(
                    stream["in_memory"], stream["keys"], stream["num_seen"], generator, stream["residual_sum"]
                )
        return result

    # -- conditioning: sites for any likelihood -----------------------------------------------------
    conditions_any_likelihood = True
    #: CVI steps (ρ = 1) of `condition_on_observations` with a non-Gaussian likelihood (the paper's
    #: fantasy update is one).
    conditioning_steps: int = 1

    def conditioning_sites(
        self, X_latent: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sites of new observations: exact Gaussian ones, else CVI at the conditioned q.

        With a non-Gaussian likelihood and no ``noise``: ``conditioning_steps`` fixed-point steps
        (ρ = 1) from zero sites, each computing (α, β) (`gpvi.core.batch_sites`) at the marginals of
        q conditioned on the current ones, the rest of q fixed (the "dual update" fantasy of Chang
        et al. 2023). These sites are not differentiated through (gradients in X reach the model
        through the grown inducing set only).
        """
        if noise is not None or self.is_gaussian:
            self._conditioning = super().conditioning_sites(X_latent, y, noise)
            return self._conditioning
        shape = (*y.shape[:-1], self.num_latents, y.shape[-1]) if self.is_softmax else y.shape
        alpha = X_latent.new_zeros(shape).detach()
        beta = torch.zeros_like(alpha)
        with torch.no_grad():
            for _ in range(self.conditioning_steps):
                strategy = self.strategy.conditioned(X_latent.detach(), alpha, beta).attach(self.model)
                marginals = strategy.marginals(X_latent.detach())
                alpha, beta = batch_sites(self.likelihood, y, marginals, num_quadrature=self.num_quadrature)
        self._conditioning = (alpha, beta)
        return alpha, beta

    def condition_on_observations(self, X: torch.Tensor, Y: torch.Tensor, noise: torch.Tensor | None = None, **kwargs):
        """`VariationalGPModel.condition_on_observations`, for any likelihood, giving a `DualSVGP` whose
        sites are right: its strategy is a dual one on [Z; X] with the new sites; unbatched, its
        training data and `point_sites` hold the new points too (so `update` and `gpvi.fit` continue
        from it). Non-Gaussian likelihoods without ``noise`` get CVI sites (`conditioning_sites`)."""
        new = super().condition_on_observations(X, Y, noise=noise, **kwargs)
        alpha, beta = new.__dict__.pop("_conditioning")  # left by `conditioning_sites` on the copy
        if X.dim() != 2 or Y.dim() != 2:
            new.point_sites, new.stream_state = None, None  # a batch of fantasies: prediction only
            return new
        X_model = self.transform_inputs(X)
        Y_model = Y
        if hasattr(self, "outcome_transform"):
            Y_model, _ = self.outcome_transform(Y)
        old = self.point_sites
        fresh = PointSites(X_model, alpha.detach(), beta.detach())
        new.point_sites = None if old is None or old.num_points != self.num_data else old.add(fresh)
        new.set_active_data(
            torch.cat([self.train_inputs[0], X]),
            torch.cat([self.train_X_model, X_model]),
            torch.cat([self.train_targets, Y_model]),
        )
        state = new.stream_state  # already the copy's own (the model was deep-copied)
        if state is not None:  # the new points are active, not in the memory: the next update folds them
            state.in_memory = torch.cat([state.in_memory, torch.zeros(X.shape[0], dtype=torch.bool)])
            state.keys = torch.cat([state.keys, state.draw_keys(X.shape[0], state.keys)])
            state.num_seen += X.shape[0]
        return new

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

__all__ = ["COLLAPSED_MAX_SIZE", "MEMORY_WEIGHTS", "DualSVGP"]
