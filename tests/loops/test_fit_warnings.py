"""The loops' step-capped gpvi fits silence `MaxStepsWarning` only; every other warning passes through."""

from __future__ import annotations

import warnings

import pytest
import torch

import gpvi.loops.factories as factories
from gpvi.loops import BayesOpt, GPVIFactory
from gpvi.progress import FitFailedWarning, MaxStepsWarning

BOUNDS = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)


@pytest.fixture
def noisy_fit(monkeypatch):
    """`gpvi.fit` as the factories call it, plus a `MaxStepsWarning` and two warnings that must pass."""
    real = factories.fit
    calls = []

    def fit(model, *args, **kwargs):
        calls.append(kwargs.get("max_steps"))
        result = real(model, *args, **kwargs)
        warnings.warn("ran out of steps", MaxStepsWarning, stacklevel=2)
        warnings.warn("a step failed", FitFailedWarning, stacklevel=2)  # a FitWarning too, but not silenced
        warnings.warn("something else", UserWarning, stacklevel=2)
        return result

    monkeypatch.setattr(factories, "fit", fit)
    return calls


def _recorded(action):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    return [w.category for w in caught]


@pytest.mark.parametrize("fit_kind", ["collapsed", "ngd", "default"])
def test_factory_fit_and_update_silence_only_max_steps(noisy_fit, fit_kind):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(8, 2, generator=g, dtype=torch.float64)
    Y = X.sum(-1, keepdim=True)
    factory = GPVIFactory("svgp", fit=fit_kind, max_steps=3, update_steps=2)
    holder = {}
    categories = _recorded(lambda: holder.setdefault("model", factory.fit(X[:6], Y[:6], BOUNDS)))
    categories += _recorded(lambda: factory.update(holder["model"], X[6:], Y[6:]))
    assert noisy_fit == [3, 2]
    assert MaxStepsWarning not in categories
    assert categories.count(FitFailedWarning) == 2 and categories.count(UserWarning) == 2


def test_bayesopt_run_shows_no_max_steps_warning_and_restores_the_filters(noisy_fit):
    loop = BayesOpt(BOUNDS, GPVIFactory("svgp", max_steps=3, warm_steps=2), num_initial=5, seed=0)
    loop.acquisition_options.update(num_restarts=2, raw_samples=16, maxiter=10)
    categories = _recorded(lambda: loop.run(lambda x: x.sum(-1), 2))
    assert len(noisy_fit) == 2 and MaxStepsWarning not in categories and UserWarning in categories
    # outside the loop's fits the warning is shown as usual
    assert _recorded(lambda: warnings.warn("x", MaxStepsWarning, stacklevel=1)) == [MaxStepsWarning]
