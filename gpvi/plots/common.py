"""What every plot reads from a model, through its public API only: predictions in chunks of rows,
the training data in the original units, the special input locations, and new Axes when none are given.

A model is anything with BoTorch's ``posterior(X, observation_noise=...)``; the training data are
``model.train_inputs[0]`` (`n x d`, input space) and ``model.train_targets`` with the model's
outcome transform undone; the special locations come from ``model.plot_locations()`` when the model
has it (gpvi's models give their inducing inputs there; see `locations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Bernoulli, Categorical

#: Rows per `posterior` call: one chunk's covariance, not the whole input set's, is formed at a time.
CHUNK = 1024


@dataclass
class Predictive:
    """Marginal predictions of one output at `n` inputs (1-D tensors of length `n`).

    Attributes:
        kind: "gaussian" (the predictive of y is Gaussian), "bernoulli" (a binary classifier:
            ``noisy_mean`` holds p(y = 1 | x)) or "other" (``noisy_mean`` holds E[y | x]).
        mean: The latent posterior mean of f (in the original target units when the model has an
            outcome transform, which its `posterior` undoes).
        variance: The latent posterior variance of f.
        noisy_mean: The mean of y (the likelihood averaged over q(f)).
        noisy_variance: The variance of y for a Gaussian predictive, else None.
    """

    kind: str
    mean: Tensor
    variance: Tensor
    noisy_mean: Tensor
    noisy_variance: Tensor | None


def axes(ax: Any, figsize: tuple[float, float] = (6.0, 4.0)) -> Any:
    """``ax`` itself, or the Axes of a new figure of ``figsize`` inches (constrained layout)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, layout="constrained")[1]


def numpy(t: Tensor) -> np.ndarray:
    """A detached CPU NumPy copy of a tensor (float64)."""
    return t.detach().cpu().to(torch.float64).numpy()


def _column(t: Tensor, n: int, output: int) -> Tensor:
    """One output's `n` values from `n`, `n x m` or `m x n` (a latent batch) predictions."""
    if t.dim() == 1:
        if output != 0:
            raise ValueError(f"`output` = {output} but the model has a single output.")
        return t
    if t.dim() == 2 and t.shape[0] == n and t.shape[1] > output:
        return t[:, output]
    if t.dim() == 2 and t.shape[1] == n and t.shape[0] > output:
        return t[output]
    raise ValueError(f"Cannot read output {output} of {n} points from predictions of shape {tuple(t.shape)}.")


def check_inputs(model: Any, X: Tensor) -> Tensor:
    """``X`` as an `n x d` tensor with the model's d, or a `ValueError`/`TypeError` naming it."""
    if not isinstance(X, Tensor):
        raise TypeError(f"`X` must be an `n x d` tensor, got {type(X).__name__}.")
    if X.dim() != 2 or X.shape[0] == 0:
        raise ValueError(f"`X` must be a non-empty `n x d` tensor, got shape {tuple(X.shape)}.")
    d = input_dim(model)
    if X.shape[-1] != d:
        raise ValueError(f"`X` must have d = {d} columns (the model's inputs), got {X.shape[-1]}.")
    return X


def input_dim(model: Any) -> int:
    """d, the number of input columns of the model's training inputs."""
    return model.train_inputs[0].shape[-1]


def held_out(model: Any, X: Tensor, Y: Tensor, output: int) -> tuple[Tensor, Tensor]:
    """Held-out ``X`` (`n x d`) and the targets of output ``output`` (`n`) from ``Y`` (`n x m` or `n`), checked."""
    X = check_inputs(model, X)
    if not isinstance(Y, Tensor):
        raise TypeError(f"`Y` must be an `n x m` tensor, got {type(Y).__name__}.")
    if Y.dim() == 2:
        if not 0 <= output < Y.shape[1]:
            raise ValueError(f"`output` = {output} but `Y` has {Y.shape[1]} column(s).")
        Y = Y[:, output]
    if Y.dim() != 1 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"`Y` must be `{X.shape[0]} x m` to match `X`, got {tuple(Y.shape)}.")
    return X, Y


@torch.no_grad()
def predictive(model: Any, X: Tensor, output: int = 0, chunk: int = CHUNK) -> Predictive:
    """The latent and the observation predictive of output ``output`` at `n x d` inputs (`Predictive`).

    Calls ``model.posterior(X)`` and ``model.posterior(X, observation_noise=True)`` on chunks of
    ``chunk`` rows. A Bernoulli predictive (gpvi's classifiers return a `TorchPosterior` of a
    `torch.distributions.Bernoulli`) gives kind "bernoulli"; a categorical one (softmax) is refused.
    """
    X = check_inputs(model, X)
    parts: dict[str, list[Tensor]] = {"mean": [], "variance": [], "noisy_mean": [], "noisy_variance": []}
    kind = "gaussian"
    for rows in X.split(chunk):
        n = rows.shape[0]
        latent = model.posterior(rows)
        parts["mean"].append(_column(latent.mean, n, output))
        parts["variance"].append(_column(latent.variance, n, output))
        noisy = model.posterior(rows, observation_noise=True)
        dist = getattr(noisy, "distribution", None)
        if isinstance(dist, Categorical):
            raise ValueError(
                "gpvi.plots draws one output at a time: a softmax (categorical) predictive is not supported."
            )
        if isinstance(dist, Bernoulli):
            kind = "bernoulli"
            parts["noisy_mean"].append(_column(dist.probs, n, output))
        elif hasattr(noisy, "mvn"):  # BoTorch's GPyTorchPosterior: a Gaussian predictive
            parts["noisy_mean"].append(_column(noisy.mean, n, output))
            parts["noisy_variance"].append(_column(noisy.variance, n, output))
        else:
            kind = "other"
            try:
                parts["noisy_mean"].append(_column(dist.mean, n, output))
            except (AttributeError, NotImplementedError) as error:
                raise ValueError(f"The predictive distribution {type(dist).__name__} has no mean to draw.") from error
    joined = {k: torch.cat(v).detach() if v else None for k, v in parts.items()}
    return Predictive(kind, joined["mean"], joined["variance"], joined["noisy_mean"], joined["noisy_variance"])


def training_points(model: Any, output: int = 0) -> tuple[Tensor, Tensor]:
    """The training inputs `n x d` and targets `n` of output ``output``, in the original units.

    ``model.train_inputs[0]`` (the first batch entry of a batched model) and ``model.train_targets``
    (`n`, `n x m` or `m x n`) with ``model.outcome_transform`` undone when the model has one.
    """
    X = model.train_inputs[0]
    while X.dim() > 2:
        X = X[0]
    n = X.shape[0]
    Y = model.train_targets
    if Y.dim() == 1:
        Y = Y.unsqueeze(-1)
    elif Y.shape[-2] != n and Y.shape[-1] == n:
        Y = Y.transpose(-1, -2)
    while Y.dim() > 2:
        Y = Y[0]
    transform = getattr(model, "outcome_transform", None)
    if transform is not None:
        with torch.no_grad():
            Y, _ = transform.untransform(Y)
    return X.detach(), _column(Y.detach(), n, output)


def locations(model: Any) -> dict[str, Tensor]:
    """The model's special input locations, label -> `k x d` tensor in input space.

    The protocol: a model that has ``plot_locations()`` returns such a dict (gpvi's models: the
    inducing inputs under "inducing inputs"; a family with coreset or memory points adds them), and
    every entry is drawn as rug marks (1-D) or markers (2-D). Models without it have none.
    """
    method = getattr(model, "plot_locations", None)
    if method is None:
        return {}
    found = method()
    if not isinstance(found, dict):
        raise TypeError(f"{type(model).__name__}.plot_locations() must return a dict, got {type(found).__name__}.")
    return {str(label): Z.detach().reshape(-1, Z.shape[-1]) for label, Z in found.items() if Z.numel()}


#: Colours and markers of the special locations, in the order the model lists them.
LOCATION_STYLES = (("k", "x"), ("C3", "+"), ("C2", "1"), ("C4", "2"), ("C5", "3"))

__all__ = [
    "CHUNK",
    "LOCATION_STYLES",
    "Predictive",
    "axes",
    "check_inputs",
    "held_out",
    "input_dim",
    "locations",
    "numpy",
    "predictive",
    "training_points",
]
