"""Tests for `gpvi.data.synthetic`: exact GP prior draws and the generated banana set."""

from __future__ import annotations

import math

import gpvi._warnings_filter  # noqa: F401  (must run before gpytorch is imported)

# isort: split

import gpytorch
import numpy as np
import pytest
import torch

from gpvi.data import synthetic
from gpvi.data.synthetic import banana, gp_draw


def test_gp_draw_shapes_dtype_and_metadata():
    draw = gp_draw(50, 3, lengthscale=0.4, outputscale=2.0, noise=0.1, kernel="matern52", seed=1)
    assert draw.X.shape == (50, 3) and draw.Y.shape == (50, 1) and draw.f.shape == (50, 1)
    assert draw.X.dtype == draw.Y.dtype == draw.f.dtype == torch.float64
    assert 0.0 <= draw.X.min() and draw.X.max() <= 1.0
    assert draw.outputscale == 2.0 and draw.noise == 0.1 and draw.kernel == "matern52"
    assert torch.equal(draw.lengthscale, torch.tensor([0.4], dtype=torch.float64))
    assert "GPDraw(n=50, d=3" in repr(draw) and len(repr(draw)) < 200


def test_gp_draw_reproducible_and_seed_dependent():
    a, b = gp_draw(30, 2, seed=7), gp_draw(30, 2, seed=7)
    c = gp_draw(30, 2, seed=8)
    for name in ("X", "Y", "f"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert not torch.allclose(getattr(a, name), getattr(c, name))


def test_gp_draw_float32_matches_float64():
    a = gp_draw(20, 2, seed=3)
    b = gp_draw(20, 2, seed=3, dtype=torch.float32)
    assert b.X.dtype == b.Y.dtype == torch.float32
    torch.testing.assert_close(b.Y, a.Y.float())


def test_gp_draw_does_not_touch_global_rng():
    state = torch.get_rng_state()
    gp_draw(10, 2, seed=0)
    banana(20, seed=0)
    assert torch.equal(state, torch.get_rng_state())


def test_gp_draw_ard_lengthscale():
    ls = torch.tensor([0.1, 5.0])
    draw = gp_draw(200, 2, lengthscale=ls, seed=2, noise=0.0)
    assert torch.equal(draw.lengthscale, ls.double())
    assert torch.equal(draw.Y, draw.f)  # noise 0

    def log_prob(lengthscale: torch.Tensor) -> float:
        k = gpytorch.kernels.RBFKernel(ard_num_dims=2).double()
        k.lengthscale = lengthscale.double()
        with torch.no_grad():
            K = k(draw.X).to_dense() + 1e-6 * torch.eye(200, dtype=torch.float64)
            mvn = torch.distributions.MultivariateNormal(torch.zeros(200, dtype=K.dtype), K)
            return mvn.log_prob(draw.f.squeeze(-1)).item()

    # The ARD lengthscales used are far more likely than the same ones on swapped axes.
    assert log_prob(ls) > log_prob(ls.flip(0)) + 100


@pytest.mark.parametrize("kernel", ["rbf", "matern52"])
def test_gp_draw_variance_of_f_and_noise(kernel):
    """mean(f_i^2) has mean s and sd s*sqrt(2)*||K||_F/n exactly (K = unit-variance kernel)."""
    n, s, noise, ls = 2000, 2.0, 0.05, 0.1
    draw = gp_draw(n, 4, lengthscale=ls, outputscale=s, noise=noise, kernel=kernel, seed=11)
    base = (gpytorch.kernels.RBFKernel() if kernel == "rbf" else gpytorch.kernels.MaternKernel(nu=2.5)).double()
    base.lengthscale = ls
    with torch.no_grad():
        K = base(draw.X).to_dense()
    sd_f = s * math.sqrt(2) * K.norm().item() / n
    assert sd_f < 0.1 * s  # the check below is informative (it rejects e.g. sqrt(s) or s^2)
    assert abs(draw.f.pow(2).mean().item() - s) < 4 * sd_f
    # eps is iid: mean((Y - f)^2) has mean `noise` and sd noise * sqrt(2 / n).
    resid = (draw.Y - draw.f).pow(2).mean().item()
    assert abs(resid - noise) < 5 * noise * math.sqrt(2 / n)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n=0, d=2),
        dict(n=5, d=0),
        dict(n=5, d=2, kernel="cosine"),
        dict(n=5, d=2, noise=-1.0),
        dict(n=5, d=2, outputscale=0.0),
        dict(n=5, d=2, lengthscale=-0.1),
        dict(n=5, d=2, lengthscale=torch.tensor([0.1, 0.2, 0.3])),
    ],
)
def test_gp_draw_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        gp_draw(**kwargs)


def test_banana_shapes_balance_and_standardisation():
    X, Y = banana(401, seed=0)
    assert X.shape == (401, 2) and Y.shape == (401, 1)
    assert X.dtype == Y.dtype == torch.float64
    assert set(Y.unique().tolist()) == {0.0, 1.0}
    assert abs(Y.mean().item() - 0.5) < 0.01
    torch.testing.assert_close(X.mean(0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(X.std(0, unbiased=False), torch.ones(2, dtype=torch.float64))
    # Shuffled: the labels are not sorted.
    assert not torch.equal(Y, Y.sort(0).values)


def test_banana_reproducible_and_seed_dependent():
    X1, Y1 = banana(100, seed=4)
    X2, Y2 = banana(100, seed=4)
    X3, _ = banana(100, seed=5)
    assert torch.equal(X1, X2) and torch.equal(Y1, Y2)
    assert not torch.allclose(X1, X3)
    Xf, Yf = banana(100, seed=4, dtype=torch.float32)
    assert Xf.dtype == Yf.dtype == torch.float32


def test_banana_needs_a_curved_boundary():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    X, Y = banana(400, seed=0)
    X, y = X.numpy(), Y.numpy().ravel()
    linear = LogisticRegression().fit(X, y).score(X, y)  # training accuracy: an upper bound
    knn = cross_val_score(KNeighborsClassifier(15), X, y, cv=5).mean()
    assert linear < 0.95
    assert knn > 0.93 and knn > linear + 0.03


def test_banana_rejects_bad_arguments():
    with pytest.raises(ValueError):
        banana(1)
    with pytest.raises(ValueError):
        banana(10, noise=-0.1)
    with pytest.raises(TypeError):
        banana(10, seed=1.5)  # type: ignore[arg-type]


def test_module_exports():
    assert set(synthetic.KERNELS) == {"rbf", "matern52"}
    assert np.isclose(gp_draw(3, 1).outputscale, 1.0)
