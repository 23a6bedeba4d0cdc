"""Paired comparison of two methods' final regrets over seeds that share their randomness.

A study's methods run the same seeds with the same initial designs and noise streams, so seed s of
method A and seed s of the baseline B form a pair. The ratio of the two medians ignores that
pairing and, on chaotic BO runs, swings by factors of 2-4 with the seed set; the paired statistic
used here is the geometric mean of the per-seed ratios,

    ratio = exp( mean_s log(r_A,s / r_B,s) ),

with a percentile bootstrap over seeds (pairs resampled together). Pooling several problems gives
each problem the same weight: exp(mean over problems of the per-problem mean log ratio), every
problem's seeds resampled on their own (a stratified bootstrap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

REGRET_FLOOR = 1e-12  # regrets below this count as this: log ratios stay finite at an exact optimum
TIE = 1e-9  # |log ratio| below this is a tie for the sign test


def paired_log_ratios(mine: Mapping[int, float], peer: Mapping[int, float], floor: float = REGRET_FLOOR) -> np.ndarray:
    """log(mine[s] / peer[s]) for the seeds s in both (sorted), both regrets floored at ``floor``."""
    shared = sorted(set(mine) & set(peer))
    a = np.maximum(np.asarray([mine[s] for s in shared], dtype=float), floor)
    b = np.maximum(np.asarray([peer[s] for s in shared], dtype=float), floor)
    return np.log(a) - np.log(b)


def geometric_mean_ratio(
    groups: Sequence[np.ndarray], level: float = 0.9, draws: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(ratio, lower, upper): exp of the mean over groups of each group's mean log ratio, and the
    central ``level`` percentile-bootstrap interval (each group resampled with replacement on its
    own). Deterministic for a given ``seed``. Every group must be non-empty."""
    if not groups or any(np.size(g) == 0 for g in groups):
        raise ValueError("`groups` must be a non-empty list of non-empty arrays of log ratios.")
    rng = np.random.default_rng(seed)
    point = np.mean([np.mean(g) for g in groups])
    boot = np.mean([rng.choice(np.asarray(g), size=(draws, np.size(g))).mean(axis=1) for g in groups], axis=0)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    return float(np.exp(point)), float(np.exp(lo)), float(np.exp(hi))


def sign_counts(log_ratios: np.ndarray, tie: float = TIE) -> tuple[int, int]:
    """(lower, higher): the pairs where the method's regret is lower / higher than the baseline's."""
    return int((log_ratios < -tie).sum()), int((log_ratios > tie).sum())


def sign_test_p(log_ratios: np.ndarray, tie: float = TIE) -> float:
    """Two-sided exact sign-test p-value of "lower and higher are equally likely" (ties left out)."""
    from scipy.stats import binomtest

    lower, higher = sign_counts(log_ratios, tie)
    return 1.0 if lower + higher == 0 else float(binomtest(lower, lower + higher, 0.5).pvalue)


__all__ = ["REGRET_FLOOR", "TIE", "geometric_mean_ratio", "paired_log_ratios", "sign_counts", "sign_test_p"]
