"""Progress bars of MagmaClust's EM and of the choice of K (`gpvi.progress`'s rule)."""

from __future__ import annotations

import pytest

from gpvi.data import simulate_multitask
from gpvi.multitask import Magma, MagmaClust, select_num_clusters

pytestmark = pytest.mark.filterwarnings("ignore::gpvi.progress.MaxStepsWarning")  # a few EM steps on purpose


def test_select_num_clusters_draws_a_bar_over_k_and_the_fits_bars_when_asked(capsys):
    data = simulate_multitask(6, 2, 8, seed=0)
    best, scores, _ = select_num_clusters(data, [1, 2], max_iter=2, progress=True)
    err = capsys.readouterr().err
    assert "MagmaClust: choosing K" in err and "/2 [" in err
    assert "MagmaClust K=1" in err and "MagmaClust K=2" in err  # each fit's bar, cleared when it ends
    assert set(scores) == {1, 2} and best in scores
    select_num_clusters(data, [1], max_iter=1)  # under pytest, by default: nothing drawn
    assert capsys.readouterr().err == ""


def test_magma_and_magmaclust_fits_label_their_bars(capsys):
    data = simulate_multitask(6, 2, 8, seed=1)
    result = Magma(data).fit(max_iter=2, progress=True)
    assert "Magma:" in capsys.readouterr().err and result.objective_name == "elbo"
    MagmaClust(data, 2).fit(max_iter=1, progress=False)
    assert capsys.readouterr().err == ""
