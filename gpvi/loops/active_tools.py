"""What `gpvi.loops.ActiveLearner` does with a model: test metrics, fantasies, continuous batches; its schedules.

- `model_metrics`: a model's test RMSE and NLPD (regression) or accuracy and NLPD (a classifier);
- `optimize_batch`: a continuous-mode batch, one `optimize_acqf` per point, the model conditioned on
  each pick's most likely outcome (`gpvi.acquisition.condition_on_guess`, as `select_batch` does
  over a pool);
- `pool_bounds`: the box of a pool (the factories' `Normalize` bounds); `parse_update`: the
  ``update`` schedules as the loop base's ``refit_every``.
"""

from __future__ import annotations

import torch
from botorch.models.model import Model
from botorch.optim import optimize_acqf
from torch import Tensor

from gpvi.metrics import predict, rmse_nlpd
from gpvi.models.data import is_gaussian

#: The ``update`` schedules (K a positive int).
UPDATES = ("refit", "update", "refit_every:K")
#: ``refit_every`` of ``update="update"``: one full fit (the first model), `factory.update` ever after.
NEVER = 2**31 - 1


def model_metrics(model: Model, X: Tensor, y: Tensor) -> dict[str, float]:
    """Test metrics of a model: ``rmse``, ``nlpd`` (regression) or ``accuracy``, ``nlpd`` (a classifier).

    Regression: the predictive mean's RMSE and the Gaussian NLPD with the likelihood's noise
    (`gpvi.metrics.rmse_nlpd`). A classifier (a likelihood other than Gaussian): the accuracy of the
    most probable class and −mean log p(y | x) from `gpvi.acquisition.class_probabilities`
    (probabilities floored at 1e-12).
    """
    likelihood = getattr(model, "likelihood", None)
    if likelihood is None or is_gaussian(likelihood):
        mean, var = predict(model, X, observation_noise=True)
        rmse, nlpd = rmse_nlpd(mean, var, y)
        return {"rmse": rmse, "nlpd": nlpd}
    from gpvi.acquisition import class_probabilities

    with torch.no_grad():
        probs = torch.cat([class_probabilities(model, chunk) for chunk in X.split(1024)])
    labels = y.reshape(-1).long().to(probs.device)
    accuracy = (probs.argmax(-1) == labels).double().mean()
    nlpd = -probs.gather(-1, labels[:, None]).clamp_min(1e-12).log().mean()
    return {"accuracy": float(accuracy), "nlpd": float(nlpd)}


def pool_bounds(pool: Tensor) -> Tensor:
    """`2 x d` box of a pool: its columns' min and max, widened by ±0.5 where a column is constant."""
    lower, upper = pool.min(0).values, pool.max(0).values
    flat = upper - lower <= 1e-12 * (1 + upper.abs())
    return torch.stack([torch.where(flat, lower - 0.5, lower), torch.where(flat, upper + 0.5, upper)])


def parse_update(update: str) -> int:
    """``refit_every`` of an ``update`` schedule (`UPDATES`)."""
    if update == "refit":
        return 1
    if update == "update":
        return NEVER
    if isinstance(update, str) and update.startswith("refit_every:"):
        k = update.partition(":")[2]
        if k.isdigit() and int(k) >= 1:
            return int(k)
    raise ValueError(f"`update` must be one of {UPDATES} (K a positive int), got {update!r}.")


def optimize_batch(
    model: Model,
    acquisition: str,
    k: int,
    bounds: Tensor,
    *,
    reference: Tensor | None = None,
    num_restarts: int = 8,
    raw_samples: int = 256,
    maxiter: int = 200,
) -> Tensor:
    """``k`` points of the box ``bounds`` (`2 x d`) chosen by ``acquisition`` (a name of `gpvi.acquisition`).

    "nipv" (an MC acquisition with fantasies of its own): ``optimize_acqf(q=k, sequential=True)``.
    The analytic (q = 1) ones: greedily, one ``optimize_acqf`` per point on the model conditioned on
    the points so far (`gpvi.acquisition.condition_on_guess`). Returns `k x d`.
    """
    from gpvi.acquisition import condition_on_guess, make_acquisition

    optimize = {
        "bounds": bounds,
        "num_restarts": num_restarts,
        "raw_samples": raw_samples,
        "options": {"maxiter": maxiter},
    }
    if acquisition == "nipv":
        acqf = make_acquisition("nipv", model, reference=reference)
        points, _ = optimize_acqf(acqf, q=k, sequential=k > 1, **optimize)
        return points.detach()
    points = []
    for j in range(k):
        acqf = make_acquisition(acquisition, model, reference=reference)
        x, _ = optimize_acqf(acqf, q=1, **optimize)
        points.append(x.detach())
        if j + 1 < k:
            model = condition_on_guess(model, points[-1])
    return torch.cat(points)


__all__ = ["NEVER", "UPDATES", "model_metrics", "optimize_batch", "parse_update", "pool_bounds"]
