"""Choosing the number of clusters K of MagmaClust by VBIC (Leroy et al. 2023, JMLR, §3.4).

    VBIC(K) = ELBO_K − card(HP_K) / 2 · log M           (M tasks; `MagmaClust.vbic`)

Every constant is kept in the ELBO (`MagmaClust.elbo`), so values for different K compare.
"""

from __future__ import annotations

from typing import Any

from gpvi.multitask.magma import MagmaClust


def select_num_clusters(
    tasks: Any, candidates: range | list[int] = range(1, 7), **options: Any
) -> tuple[int, dict[int, float], dict[int, MagmaClust]]:
    """Fit MagmaClust for each K (Magma for K = 1) and pick the K with the largest VBIC.

    Returns (best K, {K: VBIC}, {K: fitted model}). ``options`` go to the constructor, except
    ``max_iter`` which goes to `fit`.
    """
    max_iter = options.pop("max_iter", 50)
    models, scores = {}, {}
    for K in candidates:
        model = MagmaClust(tasks, K, **options)
        model.fit(max_iter=max_iter, progress=False)
        models[K], scores[K] = model, model.vbic()
    best = max(scores, key=scores.get)
    return best, scores, models


__all__ = ["select_num_clusters"]
