"""The memory of a sequential GP: which past data points to keep, by Bayesian leverage or at random.

Chang, Verma, John, Solin & Khan (2023), "Memory-Based Dual Gaussian Processes for Sequential
Learning", ICML. The *Bayesian leverage score* of a data point is

    BLS_n = Σ_c Var_q[f_c(x_n)] · β_{n,c},      β_{n,c} = −2 ∂E_q[log p(y_n | f)] / ∂Var_q[f_c(x_n)]

(the posterior variance times the second dual parameter, summed over latent GPs c). For a Gaussian
likelihood with noise σ² and Z = X it is the ridge leverage score [K(K + σ²I)⁻¹]_nn, since then
Var_q[f(x_n)] = [K − K(K + σ²I)⁻¹K]_nn = σ² [K(K + σ²I)⁻¹]_nn and β_n = 1/σ². It is high where
the posterior still depends on the point (few neighbours, near a decision boundary) and low where
many points say the same.

Selection (`select_memory`) keeps a bounded memory of ``capacity`` points out of the candidates
(the memory and the newest batch):
- "leverage": the ``capacity`` points with the largest scores, recomputed under the current
  model at every update (deterministic; the reference code samples with replacement, which keeps
  duplicates and needs an unbounded memory);
- "random": the ``capacity`` points with the smallest uniform random keys drawn once per point on
  arrival: after any number of updates the memory is a uniform sample without replacement of all
  points seen (reservoir sampling by keys), the ablation of the paper.

Cost: the scores need the marginal variances at the candidates, O(C M²) for C candidates; the
selection is a top-k, O(C log C).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The memory selection rules `select_memory` knows.
MEMORY_SELECTIONS = ("leverage", "random")


def bayesian_leverage(var: Tensor, beta: Tensor) -> Tensor:
    """Bayesian leverage scores Σ_c Var_q[f_c(x_n)] β_{n,c} (see the module docstring).

    Args:
        var: (N,) or (P, N) marginal variances of q at the points (P latent GPs).
        beta: Second dual parameters of the same shape (β ≥ 0).

    Returns:
        (N,) non-negative scores.
    """
    if var.shape != beta.shape:
        raise ValueError(f"`var` {tuple(var.shape)} and `beta` {tuple(beta.shape)} must have one shape.")
    score = (var * beta).abs()
    return score if score.dim() == 1 else score.reshape(-1, score.shape[-1]).sum(0)


def select_memory(scores: Tensor, keys: Tensor, capacity: int, selection: str) -> Tensor:
    """Boolean mask (N,) of the candidates to keep in a memory of ``capacity`` points.

    Args:
        scores: (N,) Bayesian leverage scores (used by "leverage").
        keys: (N,) uniform random keys drawn on arrival (used by "random").
        capacity: The memory size (all candidates kept when N ≤ capacity; none when 0).
        selection: "leverage" (largest scores) or "random" (smallest keys).
    """
    if selection not in MEMORY_SELECTIONS:
        raise ValueError(f"`memory_selection` must be one of {MEMORY_SELECTIONS}, got {selection!r}.")
    n = scores.shape[-1]
    keep = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if capacity >= n:
        keep[:] = True
        return keep
    if capacity <= 0:
        return keep
    order = scores.argsort(descending=True) if selection == "leverage" else keys.argsort()
    keep[order[:capacity]] = True
    return keep


__all__ = ["MEMORY_SELECTIONS", "bayesian_leverage", "select_memory"]
