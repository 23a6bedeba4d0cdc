"""The scores as BoTorch `AcquisitionFunction`s, for ``optimize_acqf`` over a box (q = 1).

Each class evaluates its score on `b x 1 x d` inputs (`@t_batch_mode_transform(expected_q=1)`),
returns `(b,)`, and is differentiable in X wherever the math is: the variance always; entropy and
BALD of a Bernoulli classifier through the closed-form probit or the fixed quadrature nodes; of a
softmax through fixed seeded base samples. They are analytic (no sampler, no fantasies) and touch
the model through ``model.posterior`` only. `make_acquisition` builds one by name.

    acqf = gpvi.acquisition.make_acquisition("bald", model)
    x_next, _ = optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=8, raw_samples=256)

The numbers are those of the plain functions in `gpvi.acquisition.scores` (a gpvi logit-Bernoulli
classifier's probabilities may differ by the quadrature error of its ``predict_proba``).
"""

from __future__ import annotations

from typing import Any

import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
from botorch.acquisition.objective import ScalarizedPosteriorTransform
from botorch.models.model import Model
from botorch.utils.transforms import t_batch_mode_transform
from torch import Tensor

from gpvi.acquisition.marginals import (
    class_probs_from_marginals,
    classifier_kind,
    entropy,
    expected_entropy,
    latent_marginals,
)
from gpvi.acquisition.scores import (
    check_inputs,
    check_num_samples,
    require_gaussian,
    resolve_acquisition,
)


class PredictiveVariance(AcquisitionFunction):
    """The latent variance Σ_m Var[f_m(x)] in output units (`gpvi.acquisition.predictive_variance`).

    Example:
        >>> acqf = PredictiveVariance(model)
        >>> acqf(X.unsqueeze(-2))                                # `b x 1 x d` -> `(b,)`

    Args:
        model: Any BoTorch model.
    """

    def __init__(self, model: Model) -> None:
        super().__init__(model=model)

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: Tensor) -> Tensor:
        """The variance at `b x 1 x d` inputs, `(b,)`; differentiable in X."""
        return self.model.posterior(X).variance.sum(-1).squeeze(-1)


class PredictiveEntropy(AcquisitionFunction):
    """The entropy H[p̄(y | x)] of a classifier's predictive (`gpvi.acquisition.predictive_entropy`).

    p̄ from the latent marginals of ``model.posterior`` (`gpvi.acquisition.marginals`): closed form
    for the probit, quadrature for other Bernoulli links, fixed seeded draws for softmax.

    Args:
        model: A classifier: a BoTorch model with a gpytorch Bernoulli or Softmax likelihood.

    Raises:
        TypeError: For a model with a Gaussian (or no classification) likelihood.
    """

    def __init__(self, model: Model) -> None:
        super().__init__(model=model)
        self.kind = classifier_kind(model, "PredictiveEntropy")

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: Tensor) -> Tensor:
        """The entropy at `b x 1 x d` inputs, `(b,)`; differentiable in X."""
        mean, var = latent_marginals(self.model, X, self.kind)
        return entropy(class_probs_from_marginals(self.model.likelihood, self.kind, mean, var)).squeeze(-1)


class BALD(AcquisitionFunction):
    """BALD, H[p̄(y | x)] − E_{q(f(x))} H[p(y | f)] (Houlsby et al. 2011; `gpvi.acquisition.bald`).

    Bernoulli: quadrature over the 1-D marginal; softmax: the first ``num_samples`` of the fixed
    seeded base samples. Clamped at 0.

    Args:
        model: A classifier (see `PredictiveEntropy`).
        num_samples: Draws of f per point for a softmax likelihood (ignored for Bernoulli).
    """

    def __init__(self, model: Model, num_samples: int = 256) -> None:
        super().__init__(model=model)
        self.kind = classifier_kind(model, "BALD")
        self.num_samples = check_num_samples(num_samples)

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: Tensor) -> Tensor:
        """BALD at `b x 1 x d` inputs, `(b,)`; differentiable in X (where not clamped)."""
        mean, var = latent_marginals(self.model, X, self.kind)
        likelihood = self.model.likelihood
        total = entropy(class_probs_from_marginals(likelihood, self.kind, mean, var))
        aleatoric = expected_entropy(likelihood, self.kind, mean, var, self.num_samples)
        return (total - aleatoric).clamp_min(0).squeeze(-1)


def make_acquisition(name: str, model: Model, *, reference: Tensor | None = None) -> AcquisitionFunction:
    """The BoTorch acquisition function of ``name`` (one of `ACQUISITION_NAMES`) on ``model``.

    "variance" → `PredictiveVariance`, "entropy" → `PredictiveEntropy`, "bald" → `BALD`, "nipv" →
    BoTorch's ``qNegIntegratedPosteriorVariance(model, mc_points=reference)`` (its fantasies go
    through ``model.fantasize`` → ``condition_on_observations``; with m > 1 outputs, of the sum of the
    outputs, whose variance is the sum of theirs for independent outputs).

    Args:
        name: The acquisition's name.
        model: A BoTorch model the acquisition supports.
        reference: `r x d` points for "nipv" (required there, ignored otherwise).

    Raises:
        ValueError: An unknown name (listing `ACQUISITION_NAMES`), or "nipv" without ``reference``.
        TypeError: A callable ``name`` (wrap it as an `AcquisitionFunction` instead), or a model
            the acquisition does not support.
    """
    if callable(name):
        raise TypeError(
            "make_acquisition takes a name from ACQUISITION_NAMES; wrap a callable score as a BoTorch "
            "AcquisitionFunction yourself (or score a pool with gpvi.acquisition.acquisition_scores)."
        )
    resolve_acquisition(name, reference)
    if name == "variance":
        return PredictiveVariance(model)
    if name == "entropy":
        return PredictiveEntropy(model)
    if name == "bald":
        return BALD(model)
    reference = check_inputs(model, reference, "reference")
    require_gaussian(model, "'nipv'")
    options: dict[str, Any] = {}
    num_outputs = getattr(model, "num_outputs", 1)
    if num_outputs > 1:
        weights = torch.ones(num_outputs, dtype=reference.dtype, device=reference.device)
        options["posterior_transform"] = ScalarizedPosteriorTransform(weights)
    return qNegIntegratedPosteriorVariance(model, mc_points=reference, **options)
