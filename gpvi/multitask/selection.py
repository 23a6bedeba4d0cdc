"""Choosing the number of clusters K of MagmaClust by VBIC (Leroy et al. 2023, JMLR, §3.4).

    VBIC(K) = ELBO_K − card(HP_K) / 2 · log M           (M tasks; `MagmaClust.vbic`)

Every constant is kept in the ELBO (`MagmaClust.elbo`), so values for different K compare.
"""

from __future__ import annotations

from typing import Any

from gpvi.multitask.magma import MagmaClust, check_num_clusters, check_tasks
from gpvi.progress import bar_delay, progress_bar, show_progress


def select_num_clusters(
    tasks: Any, candidates: range | list[int] = range(1, 7), *, progress: bool | None = None, **options: Any
) -> tuple[int, dict[int, float], dict[int, MagmaClust]]:
    """Fit MagmaClust for each K (Magma for K = 1) and pick the K with the largest VBIC.

    Returns (best K, {K: VBIC}, {K: fitted model}). ``options`` go to the constructor, except
    ``max_iter`` which goes to `fit`. Every K (distinct, 1 <= K <= the number of tasks), the tasks
    and the options are checked, and every model built, before the first fit.

    ``progress``: a bar over the candidates (with the best K so far), above each fit's own bar,
    which is cleared when that fit ends: True, False, or None for `gpvi.progress.show_progress`'s
    rule (a terminal or Jupyter, never under pytest; ``GPVI_PROGRESS=0``/``1`` where not given).
    """
    max_iter = options.pop("max_iter", 50)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"`max_iter` must be a non-negative int, got {max_iter!r}.")
    show = show_progress(progress)
    num_tasks = len(check_tasks(tasks)[0])
    if isinstance(candidates, (str, bytes)) or not hasattr(candidates, "__iter__"):
        raise TypeError(f"`candidates` must be a range or a list of ints, got {type(candidates).__name__}.")
    candidates = list(candidates)
    if not candidates:
        raise ValueError("`candidates` is empty: give at least one number of clusters K.")
    for K in candidates:
        check_num_clusters(K, num_tasks, name="candidates")
    repeated = sorted({K for K in candidates if candidates.count(K) > 1})
    if repeated:
        raise ValueError(f"`candidates` repeats K = {repeated}; give each K once.")
    models = {K: MagmaClust(tasks, K, **options) for K in candidates}
    scores: dict[int, float] = {}
    bar = progress_bar(len(models), show, desc="MagmaClust: choosing K", delay=bar_delay(progress), unit="K")
    try:
        for K, model in models.items():
            model.fit(max_iter=max_iter, progress=progress)
            scores[K] = model.vbic()
            if bar is not None:
                best = max(scores, key=scores.get)
                bar.set_postfix({"best K": best, "VBIC": f"{scores[best]:.4g}"}, refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    best = max(scores, key=scores.get)
    return best, scores, models


__all__ = ["select_num_clusters"]
