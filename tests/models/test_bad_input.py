"""Bad input gets a clear error naming the argument, before any computation."""

import pytest
import torch

import gpvi
from gpvi import SVGP
from tests.helpers import plain


def _ok(n=10, d=2):
    return torch.rand(n, d, dtype=torch.float64), torch.rand(n, 1, dtype=torch.float64)


@pytest.mark.parametrize(
    ("X", "Y", "error", "match"),
    [
        (torch.full((10, 2), float("nan")), torch.rand(10, 1), ValueError, "`train_X` contains"),
        (torch.rand(10, 2), torch.tensor([[float("inf")]] * 10), ValueError, "`train_Y` contains"),
        (torch.rand(10, 2), torch.rand(9, 1), ValueError, "same number n of rows"),
        (torch.rand(0, 2), torch.rand(0, 1), ValueError, "`train_X` is empty"),
        (torch.rand(10), torch.rand(10, 1), ValueError, r"unsqueeze\(-1\)"),
        (torch.randint(0, 3, (10, 2)), torch.rand(10, 1), TypeError, "floating-point"),
        (torch.rand(10, 2), torch.rand(10, 1, dtype=torch.float32), TypeError, "Mixed dtypes"),
        ([[0.0, 1.0]], torch.rand(1, 1), TypeError, "must be a torch.Tensor"),
    ],
)
def test_svgp_rejects_bad_training_data(X, Y, error, match):
    X = X.double() if isinstance(X, torch.Tensor) and X.is_floating_point() else X
    Y = Y.double() if isinstance(Y, torch.Tensor) and Y.dtype == torch.float32 and match != "Mixed dtypes" else Y
    with pytest.raises(error, match=match):
        SVGP(X, Y)


def test_bad_options_are_named():
    X, Y = _ok()
    with pytest.raises(ValueError, match="`inducing`"):
        SVGP(X, Y, num_inducing=4, inducing="random-ish")
    with pytest.raises(ValueError, match="`num_inducing`"):
        SVGP(X, Y, num_inducing=0)
    with pytest.raises(ValueError, match="`inducing` must be an `M x d`"):
        SVGP(X, Y, inducing=torch.rand(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="`likelihood`"):
        SVGP(X, Y, likelihood="gaussian")
    model = SVGP(X, Y, num_inducing=4)
    with pytest.raises(ValueError, match="`optimizer`"):
        gpvi.fit(model, optimizer="sgd")
    with pytest.raises(ValueError, match="`max_steps`"):
        gpvi.fit(model, max_steps=-1)
    with pytest.raises(ValueError, match="d = 2"):
        model.posterior(torch.rand(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="`X` contains"):
        model.posterior(torch.full((3, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="`Y` must be"):
        model.condition_on_observations(torch.rand(2, 2, dtype=torch.float64), torch.rand(3, 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="unexpected option"):
        model.posterior(X, foo=1)


def test_fit_result_history_callback_and_early_stopping():
    X, Y = _ok(30)
    model = plain(SVGP)(X, Y, num_inducing=5)  # no priors: elbo = expected_log_lik − kl
    result = gpvi.fit(model, "adam", max_steps=10, callback=lambda step, parts: step == 3, progress=False)
    assert result.stop_reason == "callback" and result.num_steps == 3
    assert set(result.history[0]) >= {"step", "elbo", "expected_log_lik", "kl", "time"}
    assert result.history[0]["elbo"] == pytest.approx(result.history[0]["expected_log_lik"] - result.history[0]["kl"])
    stopper = gpvi.EarlyStopping(patience=5, rel_tol=1e-2)
    result = gpvi.fit(model, max_steps=500, early_stopping=stopper, optimizer="ngd")
    assert result.stop_reason == "converged" and result.num_steps < 500
    assert not model.training


def test_minibatch_fit_improves_elbo():
    torch.manual_seed(0)
    X = torch.rand(300, 2, dtype=torch.float64)
    Y = torch.sin(6 * X[:, :1]) + 0.05 * torch.randn(300, 1, dtype=torch.float64)
    model = SVGP(X, Y, num_inducing=12)
    start = model.elbo().elbo.item()
    result = gpvi.fit(model, max_steps=60, batch_size=50, optimizer="ngd", lr=0.05, early_stopping=False)
    model.train()
    assert model.elbo().elbo.item() > start + 100
    assert result.num_steps == 60
