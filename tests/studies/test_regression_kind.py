"""The regression kind builds and trains registered models as the regression study always has."""

import torch
from torch.testing import assert_close

import gpvi
from gpvi.baselines import predict_gpytorch_svgp
from gpvi.metrics import predict
from gpvi.models import get_model
from gpvi.studies.kinds.regression import fit_method, split_options

DT = torch.float64


def _data(n=60):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 2, generator=g, dtype=DT)
    return X, torch.sin(5 * X[:, :1]) + 0.05 * torch.randn(n, 1, generator=g, dtype=DT)


def test_options_split_between_the_constructor_and_the_training():
    built, trained = split_options(get_model("svgp"), get_model("svgp").options_for("regression"))
    assert set(built) == {"num_inducing", "inducing"}
    assert set(trained) == {"max_steps", "batch_size", "optimizer", "lr", "early_stopping"}
    built, trained = split_options(get_model("gpytorch-svgp"), {"num_inducing": 8, "max_steps": 3, "lr": 0.1})
    assert built == {"num_inducing": 8} and trained == {"max_steps": 3, "lr": 0.1}
    assert split_options(get_model("exact"), {"covar_module": None}) == ({"covar_module": None}, {})


def test_the_split_is_the_seed_of_the_inducing_points_and_of_the_fit():
    X, Y = _data()
    model = fit_method("dual-svgp", X, Y, {"num_inducing": 6, "learn_inducing": False, "max_steps": 2}, seed=3)
    assert_close(model.features.Z, gpvi.DualSVGP(X, Y, num_inducing=6, seed=3).features.Z)
    model = fit_method("svgp", X, Y, {"num_inducing": 6, "learn_inducing": False, "max_steps": 2}, seed=4)
    assert_close(model.features.Z, gpvi.SVGP(X, Y, num_inducing=6, seed=4).features.Z)


def test_the_gpytorch_peer_predicts_with_its_noise_as_before():
    X, Y = _data()
    model = fit_method("gpytorch-svgp", X, Y, {"num_inducing": 6, "max_steps": 5}, seed=0)
    mean, var = predict(model, X)
    ref_mean, ref_var = predict_gpytorch_svgp(model.model, model.likelihood, X)
    assert_close(mean, ref_mean, rtol=1e-10, atol=1e-12)
    assert_close(var, ref_var, rtol=1e-10, atol=1e-12)
