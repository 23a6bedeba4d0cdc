"""Training data of a gpvi model: validated, transformed once, and laid out for the likelihood.

BoTorch's convention: `n x d` inputs and `n x m` targets; input and outcome transforms are fitted
on the training data at construction (so minibatches see fixed statistics) and kept in eval mode.
P = m latent GPs (or the classes of a softmax likelihood) live in a batch dimension.

Defaults as SingleTaskGP's: with a Gaussian likelihood the outcomes are standardised unless told
otherwise (``outcome_transform=DEFAULT`` -> `Standardize(m)`; pass None for none), and inputs
outside the unit cube (after the input transform) or targets not standardised draw BoTorch's
`InputDataWarning` when the default kernel is used. Non-Gaussian likelihoods read their targets as
given (labels, counts): they take no outcome transform, and their labels are checked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from botorch.models.transforms.input import InputTransform
from botorch.models.transforms.outcome import OutcomeTransform, Standardize
from botorch.models.utils.assorted import check_min_max_scaling, check_standardization
from botorch.utils.types import DEFAULT, _DefaultType
from gpytorch.likelihoods import (
    BernoulliLikelihood,
    Likelihood,
    PoissonLikelihood,
    SoftmaxLikelihood,
)
from gpytorch.likelihoods.gaussian_likelihood import _GaussianLikelihoodBase
from torch import Tensor

from gpvi._validation import check_train_data
from gpvi.core.likelihoods import ExpPoissonLikelihood, LogitBernoulliLikelihood
from gpvi.progress import caller_stacklevel


@dataclass
class TrainingData:
    """Training data as given and in model space (after the transforms, fitted once)."""

    X: Tensor  # n x d, raw
    Y: Tensor  # n x m, raw
    X_model: Tensor  # n x d, after the input transform
    Y_model: Tensor  # n x m, after the outcome transform
    num_latents: int  # P: latent GPs (m, or the classes of a softmax likelihood)
    outcome_transform: OutcomeTransform | None = None  # the one applied (the default Standardize, or the user's)

    @property
    def latent_batch(self) -> torch.Size:
        """The batch shape of kernel, mean, likelihood and q: (P,) for P > 1 latents, else ()."""
        return torch.Size([self.num_latents]) if self.num_latents > 1 else torch.Size()


def is_gaussian(likelihood: Likelihood | None) -> bool:
    """Whether a likelihood (None: the default one) is Gaussian, so that targets are real values."""
    return likelihood is None or isinstance(likelihood, _GaussianLikelihoodBase)


def prepare_training_data(
    train_X: Tensor,
    train_Y: Tensor,
    likelihood: Likelihood | None,
    input_transform: InputTransform | None,
    outcome_transform: OutcomeTransform | _DefaultType | None = DEFAULT,
    *,
    check_scaling: bool = True,
) -> TrainingData:
    """Validate `n x d` / `n x m` data and fit the transforms on it (BoTorch's convention).

    ``outcome_transform=DEFAULT`` standardises Gaussian targets (`Standardize(m)`); None keeps them.
    ``check_scaling`` warns (BoTorch's `InputDataWarning`) when the model-space inputs leave the unit
    cube or Gaussian targets are not standardised (SingleTaskGP's check with its default kernel).
    """
    train_X, train_Y = check_train_data(train_X, train_Y)
    if likelihood is not None and not isinstance(likelihood, Likelihood):
        raise TypeError(f"`likelihood` must be a gpytorch Likelihood, got {type(likelihood).__name__}.")
    if input_transform is not None and not isinstance(input_transform, InputTransform):
        raise TypeError(f"`input_transform` must be a BoTorch InputTransform, got {type(input_transform).__name__}.")
    gaussian = is_gaussian(likelihood)
    if outcome_transform is DEFAULT:
        outcome_transform = Standardize(m=train_Y.shape[-1]).to(train_Y) if gaussian else None
    elif outcome_transform is not None:
        if not isinstance(outcome_transform, OutcomeTransform):
            raise TypeError(
                "`outcome_transform` must be a BoTorch OutcomeTransform or None, "
                f"got {type(outcome_transform).__name__}."
            )
        if not gaussian:
            raise ValueError(
                f"`outcome_transform` applies to real-valued targets of a Gaussian likelihood; "
                f"{type(likelihood).__name__} reads its targets as given: pass outcome_transform=None."
            )
    check_targets(likelihood, train_Y)
    if isinstance(likelihood, SoftmaxLikelihood):
        if train_Y.shape[-1] != 1:
            raise ValueError("With SoftmaxLikelihood, `train_Y` must be `n x 1` class labels.")
        num_latents = likelihood.num_features
    else:
        num_latents = train_Y.shape[-1]
    with torch.no_grad():
        X_model = train_X
        if input_transform is not None:
            input_transform.train()
            X_model = input_transform(train_X)
            input_transform.eval()
        Y_model = train_Y
        if outcome_transform is not None:
            outcome_transform.train()
            Y_model, _ = outcome_transform(train_Y, X=train_X)
            outcome_transform.eval()
    if check_scaling:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_min_max_scaling(X_model)
            if gaussian:
                check_standardization(Y_model)
        for warning in caught:  # re-issued so that they point at the user's line, not at this one
            warnings.warn(warning.message, warning.category, stacklevel=caller_stacklevel())
    return TrainingData(train_X, train_Y, X_model, Y_model, num_latents, outcome_transform)


def check_targets(likelihood: Likelihood | None, train_Y: Tensor) -> None:
    """Refuse targets a likelihood cannot read (labels outside {0, 1}, negative or fractional counts)."""
    name = type(likelihood).__name__
    if isinstance(likelihood, (BernoulliLikelihood, LogitBernoulliLikelihood)):
        bad = (train_Y != 0) & (train_Y != 1)
        if bad.any():
            found = torch.unique(train_Y[bad])[:5].tolist()
            raise ValueError(
                f"`train_Y` must hold labels in {{0, 1}} for {name}, found {found}"
                " (map labels in {-1, 1} with (y + 1) / 2)."
            )
    elif isinstance(likelihood, SoftmaxLikelihood):
        bad = (train_Y != train_Y.round()) | (train_Y < 0) | (train_Y >= likelihood.num_classes)
        if bad.any():
            raise ValueError(
                f"`train_Y` must hold class labels 0..{likelihood.num_classes - 1} for SoftmaxLikelihood, "
                f"found {torch.unique(train_Y[bad])[:5].tolist()}."
            )
    elif isinstance(likelihood, (PoissonLikelihood, ExpPoissonLikelihood)):
        bad = (train_Y != train_Y.round()) | (train_Y < 0)
        if bad.any():
            found = torch.unique(train_Y[bad])[:5].tolist()
            raise ValueError(f"`train_Y` must hold counts 0, 1, 2, ... for {name}, found {found}.")


__all__ = ["TrainingData", "check_targets", "is_gaussian", "prepare_training_data"]
