"""Training data of a gpvi model: validated, transformed once, and laid out for the likelihood.

BoTorch's convention: `n x d` inputs and `n x m` targets; input and outcome transforms are fitted
on the training data at construction (so minibatches see fixed statistics) and kept in eval mode.
P = m latent GPs (or the classes of a softmax likelihood) live in a batch dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from botorch.models.transforms.input import InputTransform
from botorch.models.transforms.outcome import OutcomeTransform
from gpytorch.likelihoods import Likelihood, SoftmaxLikelihood
from torch import Tensor

from gpvi._validation import check_train_data


@dataclass
class TrainingData:
    """Training data as given and in model space (after the transforms, fitted once)."""

    X: Tensor  # n x d, raw
    Y: Tensor  # n x m, raw
    X_model: Tensor  # n x d, after the input transform
    Y_model: Tensor  # n x m, after the outcome transform
    num_latents: int  # P: latent GPs (m, or the classes of a softmax likelihood)

    @property
    def latent_batch(self) -> torch.Size:
        """The batch shape of kernel, mean, likelihood and q: (P,) for P > 1 latents, else ()."""
        return torch.Size([self.num_latents]) if self.num_latents > 1 else torch.Size()


def prepare_training_data(
    train_X: Tensor,
    train_Y: Tensor,
    likelihood: Likelihood | None,
    input_transform: InputTransform | None,
    outcome_transform: OutcomeTransform | None,
) -> TrainingData:
    """Validate `n x d` / `n x m` data and fit the transforms on it (BoTorch's convention)."""
    train_X, train_Y = check_train_data(train_X, train_Y)
    if likelihood is not None and not isinstance(likelihood, Likelihood):
        raise TypeError(f"`likelihood` must be a gpytorch Likelihood, got {type(likelihood).__name__}.")
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
    return TrainingData(train_X, train_Y, X_model, Y_model, num_latents)


__all__ = ["TrainingData", "prepare_training_data"]
