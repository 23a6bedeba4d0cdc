"""Acquisition scores of a pool of candidates, as plain functions: `n x d` in, `(n,)` out, higher is better.

Every function takes any BoTorch model (gpvi's `SVGP` / `DualSVGP`, BoTorch's `SingleTaskGP`, ...)
and reads it through ``model.posterior`` (and, for gpvi classifiers, ``model.predict_proba``). They
run under ``torch.no_grad()``, in chunks of `CHUNK_SIZE` candidates, on X's device and dtype.

    variance   Σ_m Var[f_m(x)]                                   any model
    entropy    H[p̄(y | x)] = −Σ_c p̄_c log p̄_c                    classifiers
    bald       H[p̄(y | x)] − E_{q(f(x))} H[p(y | f)]              classifiers
    nipv       −mean_r Var[f(r) | y(x)]                            Gaussian likelihoods

References: N. Houlsby, F. Huszár, Z. Ghahramani and M. Lengyel (2011), "Bayesian Active Learning
for Classification and Preference Learning", arXiv:1112.5745 (BALD); S. Seo, M. Wallat, T. Graepel
and K. Obermayer (2000), "Gaussian Process Regression: Active Data Selection and Test Point
Rejection", IJCNN (NIPV; BoTorch's ``qNegIntegratedPosteriorVariance``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from botorch.acquisition.objective import ScalarizedPosteriorTransform
from botorch.posteriors.gpytorch import GPyTorchPosterior
from torch import Tensor

from gpvi._validation import check_tensor
from gpvi.acquisition.marginals import (
    Kind,
    class_probs_from_marginals,
    classifier_kind,
    entropy,
    expected_entropy,
    is_gaussian_model,
    latent_marginals,
)
from gpvi.models import VariationalGPModel

#: The acquisitions known by name (`acquisition_scores`, `make_acquisition`, `select_batch`).
ACQUISITION_NAMES = ("variance", "entropy", "bald", "nipv")
#: Candidates scored per posterior call by the plain functions (`integrated_variance` sizes its own).
CHUNK_SIZE = 1024
#: The most entries of the dense posterior covariance of [R; X_chunk] that `integrated_variance`
#: builds at once (6.25e6: 50 MB in float64, about 200 MB with the posterior's intermediates).
NIPV_MAX_ENTRIES = 6_250_000

#: An acquisition: one of `ACQUISITION_NAMES`, or a callable (model, X `n x d`) -> `(n,)` scores.
Acquisition = str | Callable[[Any, Tensor], Tensor]


def check_inputs(model: Any, X: object, name: str = "X") -> Tensor:
    """``X`` as a finite, floating-point `n x d` tensor whose d is the model's (`ValueError` naming ``name``)."""
    X = check_tensor(name, X, ndim=2, shape_hint="`n x d`")
    inputs = getattr(model, "train_inputs", None)
    if isinstance(inputs, (tuple, list)) and inputs and isinstance(inputs[0], Tensor):
        d = inputs[0].shape[-1]
        if X.shape[-1] != d:
            raise ValueError(f"`{name}` must be `n x {d}` (the model's d = {d} inputs), got {tuple(X.shape)}.")
    return X


def _chunks(X: Tensor, size: int = CHUNK_SIZE) -> list[Tensor]:
    return [X[start : start + size] for start in range(0, X.shape[0], size)]


def _probabilities(model: Any, kind: Kind, X: Tensor) -> Tensor:
    """p̄(y | X), `n x C`: a gpvi Bernoulli classifier's ``predict_proba``, else the latent marginals."""
    if kind == "bernoulli" and isinstance(model, VariationalGPModel):
        p = model.predict_proba(X)  # n x 1, p(y = 1 | x)
        return torch.cat([1 - p, p], dim=-1)
    mean, var = latent_marginals(model, X, kind)
    return class_probs_from_marginals(model.likelihood, kind, mean, var)


def class_probabilities(model: Any, X: Tensor) -> Tensor:
    """Class probabilities p̄(y = c | x) = E_{q(f(x))}[p(y = c | f)] of any classifier, `n x C`.

    Rows sum to 1; Bernoulli gives two columns [1 − p, p]. A gpvi classifier's Bernoulli
    probabilities are its ``predict_proba(X)`` (probit: Φ(μ / √(1 + σ²)) exactly); other models with
    a Bernoulli likelihood at ``model.likelihood`` average the likelihood's p(y = 1 | f) over the
    1-D latent marginal (closed form for gpytorch's probit, else quadrature:
    `gpvi.acquisition.marginals.bernoulli_expectations`). Softmax, on any model: the mean of
    softmax(f_s) over `SOFTMAX_SAMPLES` = 512 draws f_s = μ(x) + σ(x) ε_s of the per-point marginal,
    with fixed seeded base samples ε_s (deterministic; the same distribution as a gpvi model's
    ``predict_proba``, which draws f jointly and unseeded).

    Args:
        model: A classifier: a BoTorch model with a gpytorch Bernoulli or Softmax likelihood.
        X: `n x d` inputs.

    Returns:
        `n x C` probabilities. Cost: one posterior call per `CHUNK_SIZE` points, plus O(n K) for the
        Bernoulli quadrature (K ≈ 320 nodes) or O(512 n C) for softmax.

    Raises:
        TypeError: For a model with a Gaussian (or no classification) likelihood.
    """
    X = check_inputs(model, X)
    kind = classifier_kind(model, "class_probabilities")
    with torch.no_grad():
        return torch.cat([_probabilities(model, kind, chunk) for chunk in _chunks(X)])


def predictive_variance(model: Any, X: Tensor) -> Tensor:
    """The latent variance Σ_m Var[f_m(x)], `(n,)`, in the model's output units.

    ``model.posterior(X).variance`` summed over the outputs (or the latents of a softmax): the
    posterior of f, without observation noise, after the model's outcome transform is undone.
    Works for any BoTorch model. Cost: one posterior call per `CHUNK_SIZE` points.
    """
    X = check_inputs(model, X)
    with torch.no_grad():
        return torch.cat([model.posterior(chunk).variance.sum(-1) for chunk in _chunks(X)])


def predictive_entropy(model: Any, X: Tensor) -> Tensor:
    """The entropy of the predictive, H[p̄(y | x)] = −Σ_c p̄_c log p̄_c, `(n,)` (nats; at most log C).

    p̄ is `class_probabilities`. Classifiers only (`TypeError` otherwise). Cost as `class_probabilities`.
    """
    return entropy(class_probabilities(model, X))


def check_num_samples(num_samples: object) -> int:
    """``num_samples`` as a positive int (`ValueError` naming it otherwise)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int, got {num_samples!r}.")
    return num_samples


def bald(model: Any, X: Tensor, num_samples: int = 256) -> Tensor:
    """BALD: the mutual information between the label y and the latent f at x, `(n,)`.

    Houlsby, Huszár, Ghahramani & Lengyel (2011), "Bayesian Active Learning for Classification and
    Preference Learning", arXiv:1112.5745:

        BALD(x) = I[y; f | x] = H[p̄(y | x)] − E_{q(f(x))} H[p(y | f)]

    The first term is `predictive_entropy`; the second the expected entropy of the likelihood under
    the per-point latent marginal. Bernoulli: by quadrature over the 1-D marginal (Gauss–Hermite
    for σ ≤ 2, Gauss–Legendre panels in f beyond; accurate to ~1e-10, no Monte Carlo, and not the
    probit's closed-form approximation of Houlsby et al.). Softmax: the mean over the first
    ``num_samples`` of the fixed seeded draws f_s = μ + σ ε_s (C independent latents per point),
    so the score is deterministic. Clamped at 0 (roundoff); 0 ≤ BALD ≤ entropy ≤ log C.

    Args:
        model: A classifier (see `class_probabilities`).
        X: `n x d` candidates.
        num_samples: Draws of f per point for a softmax likelihood (ignored for Bernoulli).

    Returns:
        `(n,)` scores in nats. Cost: `predictive_entropy` plus one posterior call per chunk and
        O(n K) quadrature (Bernoulli) or O(num_samples n C) (softmax).
    """
    X = check_inputs(model, X)
    num_samples = check_num_samples(num_samples)
    kind = classifier_kind(model, "bald")
    scores = []
    with torch.no_grad():
        for chunk in _chunks(X):
            total = entropy(_probabilities(model, kind, chunk))
            mean, var = latent_marginals(model, chunk, kind)
            aleatoric = expected_entropy(model.likelihood, kind, mean, var, num_samples)
            scores.append((total - aleatoric).clamp_min(0))
    return torch.cat(scores)


def require_gaussian(model: Any, what: str) -> None:
    """`TypeError` naming the model type unless ``model.likelihood`` is Gaussian (``what``: the caller)."""
    if not is_gaussian_model(model):
        likelihood = getattr(model, "likelihood", None)
        found = type(likelihood).__name__ if likelihood is not None else "none"
        raise TypeError(
            f"{what} needs a model with a Gaussian likelihood (the variance reduction of a noisy "
            f"observation); {type(model).__name__} has {found}."
        )


def _output(model: Any, j: int | None, dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """``posterior`` options selecting output j of a multi-output model (none for a single output)."""
    if j is None:
        return {}
    weights = torch.zeros(model.num_outputs, dtype=dtype, device=device)
    weights[j] = 1.0
    return {"posterior_transform": ScalarizedPosteriorTransform(weights)}


def _joint_covariance(model: Any, Z: Tensor, options: dict[str, Any]) -> Tensor:
    posterior = model.posterior(Z, **options)
    if not isinstance(posterior, GPyTorchPosterior):
        raise NotImplementedError(
            f"integrated_variance needs a Gaussian posterior with a covariance; {type(model).__name__}'s is a "
            f"{type(posterior).__name__} (e.g. a non-linear outcome transform)."
        )
    return posterior.distribution.covariance_matrix


def integrated_variance(model: Any, X: Tensor, reference: Tensor) -> Tensor:
    """NIPV: minus the mean posterior variance over a reference set after observing y(x), `(n,)`.

    Seo, Wallat, Graepel & Obermayer (2000), "Gaussian Process Regression: Active Data Selection and
    Test Point Rejection", IJCNN; BoTorch's ``qNegIntegratedPosteriorVariance``:

        NIPV(x) = −(1/r) Σ_{ρ in R} [Var(f(ρ)) − Cov(f(ρ), f(x))² / (Var(f(x)) + σ²(x))]

    the variance of f at the reference points once a noisy observation at x is added (exactly the
    fantasy model's, whatever the fantasy's value), averaged over R and negated (higher is better).
    Everything is in the model's output units: the covariance from ``model.posterior`` (outcome
    transform undone) and σ²(x) the noise there (``posterior(x, observation_noise=True)`` minus
    ``posterior(x)``: the likelihood's noise times the outcome transform's scale²), so the values
    equal BoTorch's ``qNegIntegratedPosteriorVariance(model, mc_points=reference)`` at each x. With
    m > 1 outputs, the sum over the outputs (each its own noise).

    Closed form, batched: per chunk of c candidates, the dense posterior covariance of [R; X_chunk],
    `(r + c) x (r + c)`, at most `NIPV_MAX_ENTRIES` entries (c = r when that fits, fewest flops per
    candidate). Cost: O((r + c)²) memory and one posterior call per chunk and output.

    Args:
        model: A model with a Gaussian likelihood (gpvi `SVGP`/`DualSVGP`, `SingleTaskGP`, ...).
        X: `n x d` candidates.
        reference: `r x d` points over which the variance is averaged (e.g. the pool or a Sobol set).

    Returns:
        `(n,)` scores (≤ 0).
    """
    X = check_inputs(model, X)
    reference = check_inputs(model, reference, "reference")
    require_gaussian(model, "integrated_variance")
    r = reference.shape[0]
    size = max(16, min(max(r, 256), math.isqrt(NIPV_MAX_ENTRIES) - r))
    num_outputs = getattr(model, "num_outputs", 1)
    outputs = [_output(model, j, X.dtype, X.device) for j in (range(num_outputs) if num_outputs > 1 else [None])]
    scores = []
    with torch.no_grad():
        for chunk in _chunks(X, size):
            total = torch.zeros(chunk.shape[0], dtype=X.dtype, device=X.device)
            for options in outputs:
                cov = _joint_covariance(model, torch.cat([reference, chunk]), options)
                var_ref, cross = cov.diagonal()[:r], cov[:r, r:]  # (r,), r x c
                noisy = model.posterior(chunk, observation_noise=True, **options).variance[..., 0]  # Var(x) + σ²
                total -= var_ref.mean() - cross.pow(2).mean(0) / noisy
            scores.append(total)
    return torch.cat(scores)


def resolve_acquisition(acquisition: object, reference: Tensor | None) -> None:
    """Refuse an unknown name (listing `ACQUISITION_NAMES`) and "nipv" without ``reference``."""
    if callable(acquisition):
        return
    if not isinstance(acquisition, str) or acquisition not in ACQUISITION_NAMES:
        raise ValueError(
            f"Unknown acquisition {acquisition!r}: use one of {ACQUISITION_NAMES} or a callable "
            "(model, X `n x d`) -> `(n,)` scores."
        )
    if acquisition == "nipv" and reference is None:
        raise ValueError(
            "'nipv' needs `reference`: an `r x d` tensor of points over which the posterior variance is averaged."
        )


def acquisition_scores(name: Acquisition, model: Any, X: Tensor, *, reference: Tensor | None = None) -> Tensor:
    """The scores of acquisition ``name`` at the candidates ``X``, `(n,)`; higher is better for all.

    Args:
        name: "variance" (`predictive_variance`), "entropy" (`predictive_entropy`), "bald" (`bald`),
            "nipv" (`integrated_variance`), or a callable ``name(model, X)`` returning `(n,)` scores
            (called under ``torch.no_grad()``).
        model: Any BoTorch model the acquisition supports.
        X: `n x d` candidates.
        reference: `r x d` reference points; required by "nipv", ignored by the others.

    Raises:
        ValueError: An unknown name (the message lists `ACQUISITION_NAMES`), "nipv" without
            ``reference``, or a callable whose result is not `(n,)`.
    """
    resolve_acquisition(name, reference)
    if name == "variance":
        return predictive_variance(model, X)
    if name == "entropy":
        return predictive_entropy(model, X)
    if name == "bald":
        return bald(model, X)
    if name == "nipv":
        return integrated_variance(model, X, reference)
    X = check_inputs(model, X)
    with torch.no_grad():
        scores = name(model, X)
    if not isinstance(scores, Tensor) or scores.shape != (X.shape[0],):
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"The acquisition callable must return `({X.shape[0]},)` scores for `X`, got {shape}.")
    return scores
