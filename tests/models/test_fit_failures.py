"""A fit that meets a numerical failure returns its best iterate with a stop reason and a warning.

Before, a line search meeting a non-PSD matrix (or Adam with lr = 100) raised and lost the fit.
"""

import warnings

import pytest
import torch
from linear_operator.utils.errors import NotPSDError

import gpvi
from gpvi import SVGP, DualSVGP
from gpvi.progress import FitFailedWarning, MaxStepsWarning, numerical_failure
from tests.helpers import plain


def _data(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, dtype=torch.float64, generator=g)
    return X, torch.sin(6 * X[:, :1]) + 0.1 * torch.randn(n, 1, dtype=torch.float64, generator=g)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _fail_after(model, method, calls):
    """Make ``model.<method>`` raise NotPSDError from its ``calls + 1``-th call on."""
    original, count = getattr(model, method), {"n": 0}

    def failing(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise NotPSDError("cholesky: the leading minor of order 3 is not positive-definite")
        return original(*args, **kwargs)

    setattr(model, method, failing)


def test_adam_with_a_huge_step_returns_the_best_iterate():
    X, Y = _data()
    model = plain(SVGP)(X, Y, num_inducing=16)  # Matérn, no priors: lr = 100 breaks it within 200 steps
    model.model.covar_module.base_kernel.lengthscale = 0.5 * 2**0.5 * X.std(0)
    with pytest.warns(FitFailedWarning, match="best state seen was restored"):
        result = gpvi.fit(model, "adam", lr=100.0, max_steps=200)
    assert result.failed and result.stop_reason in ("not-psd", "non-finite")
    assert result.num_steps < 200
    model.train()
    best = max(row["elbo"] for row in result.history)
    assert model.elbo().elbo.item() == pytest.approx(best, rel=1e-9)  # the restored state scored the best
    posterior = model.posterior(X)
    assert torch.isfinite(posterior.mean).all() and (posterior.variance > 0).all()


@pytest.mark.parametrize(
    ("cls", "recipe", "method", "options"),
    [
        (SVGP, "collapsed", "collapsed_elbo", {}),
        (SVGP, "adam", "elbo", {"max_steps": 50}),
        (SVGP, "ngd", "elbo", {"max_steps": 50}),
        (DualSVGP, "cvi", "elbo", {"max_steps": 50, "warmup_e_steps": 2}),
    ],
)
def test_every_recipe_survives_a_not_psd_step(cls, recipe, method, options):
    X, Y = _data()
    model = cls(X, Y, num_inducing=12)
    _fail_after(model, method, 6)
    with pytest.warns(FitFailedWarning, match="not-psd: NotPSDError"):
        result = gpvi.fit(model, recipe=recipe, **options)
    assert result.stop_reason == "not-psd"
    assert 1 <= result.num_steps <= 6
    assert not model.training
    assert torch.isfinite(model.posterior(X).mean).all()


def test_a_failure_at_the_first_step_restores_the_starting_state():
    X, Y = _data()
    model = SVGP(X, Y, num_inducing=12)
    start = _state(model)
    _fail_after(model, "elbo", 0)
    with pytest.warns(FitFailedWarning):
        result = gpvi.fit(model, "adam", max_steps=10)
    assert result.stop_reason == "not-psd" and result.num_steps == 0
    for key, value in _state(model).items():
        torch.testing.assert_close(value, start[key])


def test_errors_that_are_not_numerical_still_raise():
    X, Y = _data()
    model = SVGP(X, Y, num_inducing=12)

    def broken_callback(step, parts):
        raise KeyError("a bug in the user's callback")

    with pytest.raises(KeyError, match="user's callback"):
        gpvi.fit(model, max_steps=5, callback=broken_callback)


def test_running_out_of_steps_warns_only_when_a_stopping_rule_was_active():
    X, Y = _data()
    with pytest.warns(MaxStepsWarning, match="max_steps=5"):
        result = gpvi.fit(SVGP(X, Y, num_inducing=8), "adam", max_steps=5)
    assert result.stop_reason == "max_steps" and not result.converged
    with pytest.warns(MaxStepsWarning):
        gpvi.fit(SVGP(X, Y, num_inducing=8), recipe="collapsed", max_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaxStepsWarning)
        result = gpvi.fit(SVGP(X, Y, num_inducing=8), "adam", max_steps=5, early_stopping=False)  # a fixed budget
        assert result.num_steps == 5
        result = gpvi.fit(SVGP(X, Y, num_inducing=8), recipe="collapsed")
        assert result.converged


def test_the_collapsed_recipe_takes_at_most_max_steps_evaluations():
    X, Y = _data()
    with pytest.warns(MaxStepsWarning):
        result = gpvi.fit(SVGP(X, Y, num_inducing=8), recipe="collapsed", max_steps=7)
    assert result.num_steps == 7


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (NotPSDError("not positive definite"), "not-psd"),
        (torch.linalg.LinAlgError("linalg.cholesky: the leading minor of order 4 is not positive-definite"), "not-psd"),
        (ValueError("Expected parameter loc to satisfy the constraint Real(), but found invalid values"), "non-finite"),
        (RuntimeError("function returned nan values"), "non-finite"),
        (NotPSDError("The Kuu contains NaN: check the inputs"), "non-finite"),
        (ValueError("`X` must have d = 2 columns"), None),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), None),
        (KeyError("information"), None),
    ],
)
def test_numerical_failures_are_told_from_bugs(error, reason):
    assert numerical_failure(error) == reason
