"""Greedy batches from a candidate pool: pick, fantasise the pick's outcome, re-score, repeat.

    for t = 1..k:  j_t = argmax_{j not excluded, not picked} score(model_t, x_j)
                   model_{t+1} = model_t conditioned on (x_{j_t}, ŷ_t)          (kriging believer)

The fantasy outcome ŷ_t is the model's own best guess, so the batch spreads out: after a pick,
the variance (and with it every score here) of the pick and of points near it drops. How a model
is conditioned:

- Gaussian likelihood: ``model.condition_on_observations(x, μ(x))`` with the posterior mean (the
  variance of the fantasy model does not depend on ŷ).
- Classifier whose ``conditions_any_likelihood`` is true (gpvi's `DualSVGP`): the most probable
  label, ``model.condition_on_observations(x, label)`` (CVI sites).
- Other gpvi Bernoulli classifiers (`SVGP`): the Laplace site of the most probable label at the
  latent mean, a Gaussian pseudo-observation passed as ``noise``: target μ + g/h, noise 1/h, with
  g, h the gradient and negative Hessian of log p(label | f) at f = μ
  (`gpvi.acquisition.marginals.laplace_site`).

Other models (BoTorch classifiers; softmax `SVGP`s, whose ``condition_on_observations`` takes one
target per point, not one per latent) get batches of k = 1 only (`NotImplementedError` otherwise).
Cost: k calls of the acquisition on the pool, k − 1 conditionings.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gpvi.acquisition.marginals import classifier_kind, is_gaussian_model, laplace_site, latent_marginals
from gpvi.acquisition.scores import (
    Acquisition,
    acquisition_scores,
    check_inputs,
    class_probabilities,
    resolve_acquisition,
)
from gpvi.models import VariationalGPModel


def _excluded(exclude: object, n: int, device: torch.device) -> Tensor:
    """``exclude`` (None, indices or a boolean mask) as an `(n,)` boolean mask."""
    mask = torch.zeros(n, dtype=torch.bool, device=device)
    if exclude is None:
        return mask
    if not isinstance(exclude, Tensor):
        raise TypeError(
            f"`exclude` must be a LongTensor of indices or a `({n},)` bool mask, got {type(exclude).__name__}."
        )
    if exclude.dtype == torch.bool:
        if exclude.shape != (n,):
            raise ValueError(
                f"`exclude` as a mask must have shape ({n},) (one entry per candidate), got {tuple(exclude.shape)}."
            )
        return exclude.to(device)
    if exclude.dtype.is_floating_point or exclude.dtype.is_complex or exclude.dim() != 1:
        raise TypeError(
            f"`exclude` must be a 1-D LongTensor of indices or a `({n},)` bool mask, got dtype {exclude.dtype} "
            f"and shape {tuple(exclude.shape)}."
        )
    if exclude.numel() and (exclude.min() < 0 or exclude.max() >= n):
        raise ValueError(
            f"`exclude` holds indices outside 0..{n - 1}: {exclude[(exclude < 0) | (exclude >= n)][:5].tolist()}."
        )
    mask[exclude.to(device)] = True
    return mask


def _fantasy_rule(model: Any) -> str:
    """How `select_batch` conditions ``model`` on a pick: "gaussian", "labels" or "laplace"."""
    if is_gaussian_model(model):
        return "gaussian"
    kind = classifier_kind(model, "select_batch")
    if getattr(model, "conditions_any_likelihood", False):
        return "labels"
    if kind == "bernoulli" and isinstance(model, VariationalGPModel):
        return "laplace"
    raise NotImplementedError(
        f"A batch of k > 1 conditions the model on each pick; {type(model).__name__} with a "
        f"{type(model.likelihood).__name__} cannot be. Batches are supported for Gaussian-likelihood models "
        "(SingleTaskGP, gpvi SVGP/DualSVGP), classifiers with `conditions_any_likelihood` (gpvi DualSVGP, any "
        "likelihood) and gpvi Bernoulli SVGPs (Laplace sites); use k = 1 otherwise."
    )


def condition_on_guess(model: Any, X: Tensor) -> Any:
    """``model`` conditioned on its own best guess at `k x d` inputs (the "kriging believer" fantasy).

    The guess is the posterior mean (a Gaussian likelihood: the posterior variance after it does not
    depend on the value, so variance-based batches are exact); a classifier's most probable label,
    through ``condition_on_observations`` (models with ``conditions_any_likelihood``, e.g. DualSVGP)
    or that label's Laplace site at the latent mean (gpvi Bernoulli models; `laplace_site`). Used by
    `select_batch` after each pick and by `gpvi.loops.ActiveLearner`'s greedy batches over a box.

    Raises:
        NotImplementedError: a model that cannot be conditioned so (the message lists those that can).
    """
    return _condition(model, _fantasy_rule(model), X)


def _condition(model: Any, rule: str, x: Tensor) -> Any:
    """``model`` conditioned on its own best guess at `k x d` inputs ``x`` by ``rule``."""
    if rule == "gaussian":
        return model.condition_on_observations(x, model.posterior(x).mean)
    label = class_probabilities(model, x).argmax(-1, keepdim=True).to(x.dtype)  # 1 x 1
    if rule == "labels":
        return model.condition_on_observations(x, label)
    mean, _ = latent_marginals(model, x, "bernoulli")  # 1 x 1
    target, noise = laplace_site(model.likelihood, mean, label)
    return model.condition_on_observations(x, target, noise=noise)


def select_batch(
    model: Any,
    candidates: Tensor,
    acquisition: Acquisition,
    k: int,
    *,
    reference: Tensor | None = None,
    exclude: Tensor | None = None,
) -> Tensor:
    """A greedy batch of k distinct candidates by ``acquisition``, conditioning on each pick (module docstring).

    Args:
        model: Any model the acquisition supports; k > 1 also needs one that can be conditioned (see
            the module docstring).
        candidates: `n x d` pool.
        acquisition: A name from `ACQUISITION_NAMES` or a callable (model, X) -> `(n,)` scores, as in
            `acquisition_scores`.
        k: The batch size, 1 ≤ k ≤ the number of candidates not excluded.
        reference: `r x d` reference points ("nipv").
        exclude: Candidates never to pick: a LongTensor of indices or an `(n,)` bool mask (e.g. those
            already labelled).

    Returns:
        `(k,)` LongTensor of indices into ``candidates``, in the order picked.

    Raises:
        ValueError: A bad ``candidates``, ``exclude`` or ``k``; an unknown acquisition name.
        NotImplementedError: k > 1 on a model that cannot be conditioned on its picks.
    """
    candidates = check_inputs(model, candidates, "candidates")
    resolve_acquisition(acquisition, reference)
    n = candidates.shape[0]
    taken = _excluded(exclude, n, candidates.device)
    available = n - int(taken.sum())
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(f"`k` must be an int from 1 to {available} (the candidates not excluded), got {k!r}.")
    rule = _fantasy_rule(model) if k > 1 else None
    picks = []
    for step in range(k):
        scores = acquisition_scores(acquisition, model, candidates, reference=reference)
        scores = scores.nan_to_num(nan=-torch.inf).masked_fill(taken, -torch.inf)
        j = int(scores.argmax())
        if taken[j]:  # every free score is -inf: take the first free candidate
            j = int((~taken).nonzero()[0])
        picks.append(j)
        taken[j] = True
        if step < k - 1:
            with torch.no_grad():
                model = _condition(model, rule, candidates[j : j + 1])
    return torch.tensor(picks, dtype=torch.long, device=candidates.device)
