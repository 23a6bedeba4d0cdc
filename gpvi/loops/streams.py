"""The memory-based dual GP in the loops and the studies: a BO factory that updates between refits, and a
model that learns its training set as a stream (the registered name "memory-dual").

    BayesOpt(bounds, "memory-dual", refit_every=10)             # `model.update` between full refits
    fit_method("memory-dual", X, Y, {"num_batches": 50}, seed)  # regression study: X, Y streamed in 50 batches

Chang, Verma, John, Solin & Khan (2023), "Memory-Based Dual Gaussian Processes for Sequential
Learning", ICML; the update itself is `gpvi.DualSVGP.update` (`gpvi.models.streaming`).
"""

from __future__ import annotations

import math
from typing import Any

from gpytorch.likelihoods import Likelihood
from torch import Tensor

from gpvi.fit import fit
from gpvi.loops.factories import DualSVGPFactory, WarmState, step_budget
from gpvi.models.dual_svgp import DualSVGP
from gpvi.models.registry import ModelEntry, register_model

#: The memory of "memory-dual" unless told otherwise (the method note's sorted-stream setting).
DEFAULT_MEMORY = 200


class StreamedDualSVGP(DualSVGP):
    """A `DualSVGP` whose `fit` learns its training data as a stream of ``num_batches`` batches.

    Built on the first batch only (transforms included: nothing of later batches is seen before its
    turn); `fit` runs `gpvi.fit` on it, then `update` with each later batch in the given order.
    The model a regression study or a user gets is the one after the last batch.

    Args:
        train_X, train_Y, likelihood, num_inducing: as for `DualSVGP` (M defaults to 100, the
            paper's setting).
        num_batches: The number of batches the data arrive in (≥ 1; the first is at least one point).
        memory_size, memory_selection: The memory (`DualSVGP`); default 200 points by leverage.
        options: Other `DualSVGP` options.
    """

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        likelihood: Likelihood | None = None,
        num_inducing: int = 100,
        *,
        num_batches: int = 50,
        memory_size: int = DEFAULT_MEMORY,
        memory_selection: str = "leverage",
        **options: Any,
    ) -> None:
        if not isinstance(num_batches, int) or isinstance(num_batches, bool) or num_batches < 1:
            raise ValueError(f"`num_batches` must be a positive int, got {num_batches!r}.")
        n = train_X.shape[-2] if isinstance(train_X, Tensor) and train_X.dim() == 2 else 0
        first = max(1, math.ceil(n / num_batches)) if n else None
        super().__init__(
            train_X[:first] if first else train_X,
            train_Y[:first] if first else train_Y,
            likelihood,
            num_inducing,
            memory_size=memory_size,
            memory_selection=memory_selection,
            **options,
        )
        rest = num_batches - 1
        pieces = (
            zip(train_X[first:].tensor_split(rest), train_Y[first:].tensor_split(rest), strict=True) if rest else ()
        )
        self.pending = [(X, Y) for X, Y in pieces if X.shape[0]]

    def fit(self, *, progress: bool = False, seed: int | None = None, **fit_options: Any) -> StreamedDualSVGP:
        """`gpvi.fit` on the first batch, then `update` with every later one; returns the model."""
        fit(self, progress=progress, **fit_options)
        while self.pending:
            X, Y = self.pending.pop(0)
            self.update(X, Y)
        return self


class MemoryDualFactory(DualSVGPFactory):
    """BO with the memory-based dual GP: full refits on all data, `DualSVGP.update` between them.

    A refit builds a `DualSVGP` on all data so far (the registry's "dual-svgp" options, with
    ``memory_size``); between refits (``BayesOpt(refit_every=K)``) each batch of new points goes
    through `update`: inducing inputs re-selected, hyperparameters refitted on the batch and the
    memory, cost bounded by ``memory_size`` whatever the number of evaluations. The same factory
    serves `gpvi.loops.ActiveLearner` (``update="update"``: one full fit, then an update per step),
    for classifiers too (``likelihood="bernoulli"`` or ``"softmax:C"``: the update absorbs the labels by CVI).

    Args:
        memory_size: The memory of each model (default 200).
        memory_selection: "leverage" or "random".
        hyperparameters_every: Refit the hyperparameters inside an update only when the points seen
            pass a multiple of this (1, the default: every update; 0: never, the sites only, at the
            last refit's θ). A loop that adds one point per iteration and never refits (active
            learning's ``update="update"``) pays the θ refit on the memory once every K points:
            with K = 10 an update at 200 labels costs 0.05–0.1 s instead of about 1 s (elevators,
            M = 128, memory 200, one thread; `studies/sequential/README.md`).
        options: `GPVIFactory` options.
    """

    def __init__(
        self,
        *,
        memory_size: int = DEFAULT_MEMORY,
        memory_selection: str = "leverage",
        hyperparameters_every: int = 1,
        **options: Any,
    ):
        if (
            not isinstance(hyperparameters_every, int)
            or isinstance(hyperparameters_every, bool)
            or hyperparameters_every < 0
        ):
            raise ValueError(f"`hyperparameters_every` must be a non-negative int, got {hyperparameters_every!r}.")
        super().__init__(**options)
        self.name = "memory-dual"
        self.memory_size, self.memory_selection = memory_size, memory_selection
        self.hyperparameters_every = hyperparameters_every

    def fit(self, train_X: Tensor, train_Y: Tensor, bounds: Tensor, warm: WarmState = None) -> DualSVGP:
        model = super().fit(train_X, train_Y, bounds, warm)
        model.memory_size, model.memory_selection = self.memory_size, self.memory_selection
        # built with M = min(num_inducing, n) (Z = X while n ≤ M); the updates re-select up to the
        # factory's M, not the n of the first fit (20 labels would otherwise cap Z at 20 points forever)
        model.num_inducing_target = self.num_inducing
        return model

    def update(self, model: DualSVGP, X_new: Tensor, Y_new: Tensor) -> DualSVGP:
        """`model.update` (the memory-based update, which refits the hyperparameters itself when
        ``hyperparameters_every`` says so)."""
        every = self.hyperparameters_every
        state = model.stream_state
        before = state.num_seen if state is not None else model.train_inputs[0].shape[-2]
        refit = every > 0 and (before + X_new.shape[-2]) // every > before // every
        with step_budget():
            return model.update(X_new, Y_new, hyperparameters=refit)


register_model(
    ModelEntry(
        name="memory-dual",
        label="gpvi memory-based dual GP",
        constructor=StreamedDualSVGP,
        trainer="own",
        defaults={
            "bo": {"factory": "gpvi.loops.streams:MemoryDualFactory"},
            "regression": {"num_inducing": 100, "memory_size": DEFAULT_MEMORY, "num_batches": 50},
        },
    )
)

__all__ = ["DEFAULT_MEMORY", "MemoryDualFactory", "StreamedDualSVGP"]
