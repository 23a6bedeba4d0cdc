"""`AskTellLoop.run(f, n)`: n more iterations, on a fresh loop (after the initial design) and after ask/tell."""

from __future__ import annotations

import pytest
import torch

from gpvi.loops import BayesOpt

BOUNDS = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)


class Counted:
    """A cheap objective that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (X - 0.3).pow(2).sum(-1)


def _loop(q: int = 1) -> BayesOpt:
    return BayesOpt(BOUNDS, acquisition="random", q=q, num_initial=5, minimize=True, seed=4)


def test_a_fresh_run_is_the_initial_design_plus_n_iterations():
    loop, f = _loop(q=2), Counted()
    result = loop.run(f, 4)
    assert f.calls == 5 and loop.iteration == 5
    assert result.X.shape == (5 + 4 * 2, 2)
    design_only = _loop()
    assert design_only.run(f, 0).X.shape == (5, 2) and design_only.iteration == 1


def test_run_after_ask_tell_steps_adds_n_iterations():
    loop, f = _loop(), Counted()
    for _ in range(3):  # the design and two iterations, by hand
        X = loop.suggest()
        loop.observe(X, f(X))
    f.calls = 0
    loop.run(f, 4)
    assert f.calls == 4 and loop.iteration == 7 and loop.X.shape == (5 + 6, 2)
    loop.run(f, 0)
    assert f.calls == 4 and loop.X.shape == (5 + 6, 2)


def test_two_consecutive_runs_equal_one_run_of_their_sum():
    f = Counted()
    split, whole = _loop(), _loop()
    split.run(f, 3)
    second = split.run(f, 2)
    assert second.X.shape == (5 + 5, 2)
    torch.testing.assert_close(second.X, whole.run(f, 5).X, rtol=0, atol=0)


def test_a_pending_suggestion_is_evaluated_as_one_of_the_n():
    loop, f = _loop(), Counted()
    loop.run(f, 1)
    pending = loop.suggest()  # asked, not told
    loop.run(f, 2)
    assert f.calls == 2 + 2 and loop.iteration == 4
    torch.testing.assert_close(loop.X[6], pending[0], rtol=0, atol=0)


@pytest.mark.parametrize("n", [-1, 2.5, True, "3"])
def test_bad_n_is_named_before_any_evaluation(n):
    loop, f = _loop(), Counted()
    with pytest.raises(ValueError, match="`n` must be a non-negative int"):
        loop.run(f, n)
    assert f.calls == 0 and loop.iteration == 0


def test_a_non_callable_objective_is_named():
    with pytest.raises(TypeError, match="`f` must be callable"):
        _loop().run(torch.zeros(3), 2)
