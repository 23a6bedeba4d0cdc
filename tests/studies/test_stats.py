"""Known-answer tests of `gpvi.studies.stats`: the paired comparison of final regrets over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpvi.studies.stats import geometric_mean_ratio, paired_log_ratios, sign_counts, sign_test_p


def test_paired_log_ratios_pairs_by_seed_and_floors_zero_regret():
    mine = {0: 2.0, 1: 0.5, 2: 0.0, 7: 1.0}  # seed 7 has no partner
    peer = {2: 1e-12, 1: 1.0, 0: 1.0, 5: 3.0}
    d = paired_log_ratios(mine, peer)
    np.testing.assert_allclose(d, [math.log(2.0), math.log(0.5), 0.0])  # seeds 0, 1, 2; 0 floored to 1e-12


def test_constant_ratio_is_recovered_exactly_with_a_degenerate_interval():
    peer = {s: 0.1 * (s + 1) for s in range(10)}
    mine = {s: 2.0 * v for s, v in peer.items()}
    ratio, lo, hi = geometric_mean_ratio([paired_log_ratios(mine, peer)])
    assert ratio == pytest.approx(2.0) and lo == pytest.approx(2.0) and hi == pytest.approx(2.0)


def test_geometric_mean_is_not_the_ratio_of_medians():
    # per-seed ratios 1/4, 1, 4 -> geometric mean 1, whatever the medians of the two arms are
    d = paired_log_ratios({0: 0.25, 1: 5.0, 2: 400.0}, {0: 1.0, 1: 5.0, 2: 100.0})
    assert geometric_mean_ratio([d])[0] == pytest.approx(1.0)


def test_pooling_weighs_each_problem_equally_not_each_seed():
    a = np.full(3, math.log(2.0))  # 3 seeds at ratio 2
    b = np.full(30, math.log(0.5))  # 30 seeds at ratio 1/2
    ratio, lo, hi = geometric_mean_ratio([a, b])
    assert ratio == pytest.approx(1.0) and lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    assert geometric_mean_ratio([np.concatenate([a, b])])[0] == pytest.approx(math.exp((3 - 30) / 33 * math.log(2)))


def test_bootstrap_interval_matches_the_normal_theory_width():
    rng = np.random.default_rng(1)
    d = rng.normal(0.3, 1.0, size=400)
    ratio, lo, hi = geometric_mean_ratio([d], level=0.9, draws=4000)
    half_width = 1.6449 * d.std(ddof=1) / math.sqrt(d.size)
    assert math.log(ratio) == pytest.approx(d.mean())
    assert math.log(hi) - math.log(ratio) == pytest.approx(half_width, rel=0.1)
    assert math.log(ratio) - math.log(lo) == pytest.approx(half_width, rel=0.1)
    assert geometric_mean_ratio([d], draws=500, seed=3) == geometric_mean_ratio([d], draws=500, seed=3)


def test_sign_test_counts_and_exact_p_values_ties_left_out():
    d = np.array([-1.0] * 6 + [0.0, 1e-12])  # 6 lower, 2 ties
    assert sign_counts(d) == (6, 0)
    assert sign_test_p(d) == pytest.approx(2 * 0.5**6)
    assert sign_test_p(np.array([-1.0, 1.0])) == pytest.approx(1.0)
    assert sign_test_p(np.zeros(4)) == 1.0


def test_empty_groups_are_rejected():
    with pytest.raises(ValueError, match="groups"):
        geometric_mean_ratio([])
    with pytest.raises(ValueError, match="groups"):
        geometric_mean_ratio([np.array([0.1]), np.array([])])
