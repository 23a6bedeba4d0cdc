"""Tests for `gpvi.baselines`: the plain gpytorch SVGP used as a reference in demos and studies."""

from __future__ import annotations

import pytest
import torch

import gpvi
from gpvi.baselines import GPyTorchSVGP, fit_gpytorch_svgp, predict_gpytorch_svgp


def _data(n: int = 120, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 4 - 2
    noise = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    y = torch.sin(2 * X[:, :1]) + 0.5 * X[:, 1:] + 0.1 * noise
    return X, y


def test_from_data_matches_gpvi_svgp_initialisation() -> None:
    X, y = _data()
    model, likelihood = GPyTorchSVGP.from_data(X, num_inducing=16, inducing="kmeans", seed=3)
    ref = gpvi.SVGP(X, y, num_inducing=16, inducing="kmeans", seed=3, outcome_transform=None)
    Z = model.variational_strategy.inducing_points
    torch.testing.assert_close(Z, ref.strategy.inducing_points)
    torch.testing.assert_close(model.covar_module.lengthscale, ref.model.covar_module.lengthscale)
    torch.testing.assert_close(likelihood.noise, ref.likelihood.noise)
    assert Z.dtype == torch.float64


def test_fit_improves_the_elbo_and_predicts() -> None:
    X, y = _data()
    model, likelihood = GPyTorchSVGP.from_data(X, num_inducing=16)
    result = fit_gpytorch_svgp(model, likelihood, X, y, steps=150, batch_size=40, lr=0.05, progress=False)
    assert result.num_steps == 150 and result.stop_reason == "max_steps"
    assert set(result.history[0]) == {"step", "elbo", "expected_log_lik", "kl", "time"}
    first = sum(result.column("elbo")[:10]) / 10
    last = sum(result.column("elbo")[-10:]) / 10
    assert last > first
    assert not model.training and not likelihood.training

    mean, var = predict_gpytorch_svgp(model, likelihood, X, batch_size=50)
    latent_mean, latent_var = predict_gpytorch_svgp(model, None, X)
    assert mean.shape == var.shape == (X.shape[0],)
    torch.testing.assert_close(mean, latent_mean)
    assert (var > latent_var).all()
    assert (mean - y.squeeze(-1)).pow(2).mean().sqrt() < 0.5


def test_fit_rejects_bad_shapes() -> None:
    X, y = _data()
    model, likelihood = GPyTorchSVGP.from_data(X, num_inducing=8)
    with pytest.raises(ValueError, match="Expected X"):
        fit_gpytorch_svgp(model, likelihood, X, y[:-1], steps=1)
    with pytest.raises(ValueError, match="steps"):
        fit_gpytorch_svgp(model, likelihood, X, y, steps=-1)
