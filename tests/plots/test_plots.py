"""gpvi.plots: every plot renders to PNG, draws the model's own numbers, and the calibration numbers
meet their closed forms (data drawn from the predictive itself are covered at the nominal rate)."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from botorch.models.transforms.input import Normalize  # noqa: E402
from gpytorch.likelihoods import BernoulliLikelihood  # noqa: E402
from torch.testing import assert_close  # noqa: E402

import gpvi  # noqa: E402
from gpvi.plots import (  # noqa: E402
    interval_coverage,
    plot_calibration,
    plot_history,
    plot_parity,
    plot_predictive,
    plot_reliability,
    reliability_curve,
)

DT = torch.float64


def quiet_fit(model, steps=20):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gpvi.fit(model, max_steps=steps)


def build(cls, X, Y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inputs outside the unit cube, on purpose
        return cls(X, Y, num_inducing=10, **kw)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data_1d():
    g = torch.Generator().manual_seed(0)
    X = 4 * torch.rand(40, 1, generator=g, dtype=DT) + 2  # not in the unit cube: the transform matters
    Y = 10 * torch.sin(3 * X) + 5 + torch.randn(40, 1, generator=g, dtype=DT)  # not standardised
    return X, Y


@pytest.fixture(scope="module")
def svgp_1d(data_1d):
    model = build(gpvi.SVGP, *data_1d, input_transform=Normalize(1))
    result = quiet_fit(model)
    return model, result


@pytest.fixture(scope="module")
def classifier_1d():
    g = torch.Generator().manual_seed(1)
    X = torch.rand(40, 1, generator=g, dtype=DT)
    Y = (X + 0.2 * torch.randn(40, 1, generator=g, dtype=DT) > 0.5).to(DT)
    model = build(gpvi.SVGP, X, Y, likelihood=BernoulliLikelihood())
    quiet_fit(model)
    return model, X, Y


def save(fig, tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=60)
    assert path.exists() and path.stat().st_size > 5_000
    return path


def line(ax, label):
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return torch.as_tensor(found.get_xdata(), dtype=DT), torch.as_tensor(found.get_ydata(), dtype=DT)


def test_predictive_1d_draws_the_posterior_in_target_units_and_z_in_input_space(svgp_1d, data_1d, tmp_path):
    model, _ = svgp_1d
    X, Y = data_1d
    ax = plot_predictive(model, bands=(0.5, 0.95))
    save(ax.figure, tmp_path, "svgp_1d")
    x, mean = line(ax, "mean")
    assert x.min() < X.min() and x.max() > X.max()  # the grid spans the data
    with torch.no_grad():
        post = model.posterior(x[:, None])
        noisy = model.posterior(x[:, None], observation_noise=True)
    assert_close(mean, post.mean[:, 0])
    assert abs(float(mean.mean()) - 5) < 5  # target units, not standardised ones
    _, lower = line(ax, "95% band of y")
    z = torch.special.ndtri(torch.tensor(0.975, dtype=DT))
    assert_close(lower, noisy.mean[:, 0] - z * noisy.variance[:, 0].sqrt())
    (scatter,) = [c for c in ax.collections if c.get_label() == "data"]
    assert_close(torch.as_tensor(scatter.get_offsets().data, dtype=DT), torch.cat([X, Y], -1))
    z_line, _ = line(ax, "inducing inputs (10)")
    Z = model.input_transform.untransform(model.features.locations.detach())
    assert_close(z_line, Z[:, 0])
    assert X.min() - 1 < z_line.min() and z_line.max() < X.max() + 1  # input space, not the unit cube


def test_plot_locations_undoes_the_input_transform(svgp_1d):
    model, _ = svgp_1d
    found = model.plot_locations()
    assert list(found) == ["inducing inputs"]
    assert_close(found["inducing inputs"], model.input_transform.untransform(model.features.locations.detach()))


def test_predictive_1d_dual_svgp_at_given_inputs_and_extra_locations(data_1d, tmp_path):
    class WithCoreset(gpvi.DualSVGP):  # a family exposing more special points through the protocol
        def plot_locations(self):
            return {**super().plot_locations(), "coreset": self.train_inputs[0][:3]}

    X, Y = data_1d
    model = build(WithCoreset, X, Y)
    quiet_fit(model)
    grid = torch.linspace(1, 7, 31, dtype=DT)[:, None].flip(0)
    ax = plot_predictive(model, grid, bands=(0.9,), observation_noise=False, data=False)
    save(ax.figure, tmp_path, "dual_1d")
    x, mean = line(ax, "mean")
    assert_close(x, grid.flip(0)[:, 0])
    with torch.no_grad():
        assert_close(mean, model.posterior(grid.flip(0)).mean[:, 0])
    coreset_x, _ = line(ax, "coreset (3)")
    assert_close(coreset_x, X[:3, 0])
    assert not [ln for ln in ax.get_lines() if "band of y" in ln.get_label()]
    assert not [c for c in ax.collections if c.get_label() == "data"]


@pytest.mark.parametrize("cls", [gpvi.SVGP, gpvi.DualSVGP], ids=["svgp", "dual"])
def test_predictive_2d_regression(cls, tmp_path):
    g = torch.Generator().manual_seed(2)
    X = torch.rand(50, 2, generator=g, dtype=DT)
    Y = torch.sin(4 * X[:, :1]) * X[:, 1:] + 0.05 * torch.randn(50, 1, generator=g, dtype=DT)
    model = build(cls, X, Y)
    quiet_fit(model)
    fig = plot_predictive(model, num=25)
    save(fig, tmp_path, f"{cls.__name__}_2d")
    mean_ax, sd_ax = fig.axes[:2]
    assert mean_ax.get_title() == "predictive mean" and sd_ax.get_title() == "posterior standard deviation of f"
    for axis in (mean_ax, sd_ax):
        (z,) = [c for c in axis.collections if c.get_label() == "inducing inputs (10)"]
        assert_close(torch.as_tensor(z.get_offsets().data, dtype=DT), model.features.locations.detach())
    # given points are contoured by triangulation, into a given pair of Axes
    _, pair = plt.subplots(1, 2)
    assert plot_predictive(model, torch.rand(40, 2, generator=g, dtype=DT), ax=pair, data=False) is pair[0].figure


def test_predictive_classifier_1d_is_the_likelihood_averaged_probability(classifier_1d, tmp_path):
    model, X, Y = classifier_1d
    ax = plot_predictive(model)
    save(ax.figure, tmp_path, "classifier_1d")
    x, prob = line(ax, "p(y = 1 | x)")
    with torch.no_grad():
        latent = model.posterior(x[:, None])
    mu, var = latent.mean[:, 0], latent.variance[:, 0]
    assert_close(prob, torch.special.ndtr(mu / (1 + var).sqrt()))  # probit: ∫ Φ(f) N(f | μ, σ²) df
    (points,) = [c for c in ax.collections if c.get_label() == "data"]
    assert_close(torch.as_tensor(points.get_array(), dtype=DT), Y[:, 0])  # coloured by label


def test_predictive_classifier_2d(tmp_path):
    g = torch.Generator().manual_seed(3)
    X = torch.rand(60, 2, generator=g, dtype=DT)
    Y = ((X - 0.5).pow(2).sum(-1, keepdim=True) < 0.1).to(DT)
    model = build(gpvi.DualSVGP, X, Y, likelihood=BernoulliLikelihood())
    quiet_fit(model)
    fig = plot_predictive(model, num=25)
    save(fig, tmp_path, "classifier_2d")
    assert fig.axes[0].get_title() == "p(y = 1 | x)"


def test_predictive_refuses_what_it_cannot_draw(svgp_1d):
    model, _ = svgp_1d
    with pytest.raises(ValueError, match="bands"):
        plot_predictive(model, bands=(1.5,))
    with pytest.raises(ValueError, match="d = 1 columns"):
        plot_predictive(model, torch.zeros(3, 2, dtype=DT))
    X = torch.rand(20, 3, dtype=DT)
    wide = build(gpvi.SVGP, X, X.sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="plot_parity"):
        plot_predictive(wide)


def test_history_draws_the_columns(svgp_1d, tmp_path):
    model, result = svgp_1d
    ax = plot_history(result, scale=1 / model.num_data)
    save(ax.figure, tmp_path, "history")
    x, y = line(ax, "elbo")
    assert_close(x, torch.tensor(result.column("step"), dtype=DT))
    assert_close(y, torch.tensor(result.column("elbo"), dtype=DT) / model.num_data)
    other = next(k for k in result.history[0] if k not in ("elbo", "step", "time"))  # the recipe's own objective
    ax = plot_history(result, ("elbo", other), x="time", smooth=3, label="svgp")
    x, y = line(ax, f"svgp: {other} (moving average, 3 steps)")
    values = torch.tensor(result.column(other), dtype=DT)
    assert_close(y, (values[:-2] + values[1:-1] + values[2:]) / 3)
    assert_close(x, torch.tensor(result.column("time"), dtype=DT)[1:-1])
    assert ax.get_xlabel() == "wall time (s)"
    with pytest.raises(ValueError, match="no column 'kl'.*columns"):
        plot_history(result, "kl")
    with pytest.raises(ValueError, match="`x`"):
        plot_history(result, x="epoch")


def test_interval_coverage_of_the_exact_predictive_is_nominal():
    n = 4000
    mean = torch.linspace(-3, 3, n, dtype=DT)
    sd = torch.linspace(0.1, 2.0, n, dtype=DT).flip(0)
    # stratified: |y − μ| / σ at the quantiles of |N(0, 1)| → coverage equal to the level up to 1/n
    u = (torch.arange(n, dtype=DT) + 0.5) / n
    signs = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).to(DT)
    Y = mean + signs * sd * torch.special.ndtri((1 + u[torch.randperm(n)]) / 2)
    cov = interval_coverage(mean, sd**2, Y[:, None])
    assert_close(cov.nominal, torch.tensor([0.05 * k for k in range(1, 20)], dtype=DT))
    assert (cov.empirical - cov.nominal).abs().max() <= 1 / n + 1e-12
    # random draws: within 4 binomial standard errors at every level
    Y = mean + sd * torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=DT)
    cov = interval_coverage(mean, sd**2, Y, levels=(0.5, 0.9, 0.99))
    se = (cov.nominal * (1 - cov.nominal) / n).sqrt()
    assert ((cov.empirical - cov.nominal).abs() <= 4 * se).all()
    # too narrow an interval covers less: σ/2 gives P(|Z| ≤ z_p / 2)
    cov = interval_coverage(mean, (sd / 2) ** 2, Y, levels=(0.9,))
    expected = 2 * torch.special.ndtr(torch.special.ndtri(torch.tensor(0.95, dtype=DT)) / 2) - 1
    assert abs(float(cov.empirical[0] - expected)) <= 4 * math.sqrt(float(expected * (1 - expected)) / n)
    with pytest.raises(ValueError, match="levels"):
        interval_coverage(mean, sd**2, Y, levels=(0.0,))
    with pytest.raises(ValueError, match="`variance` must have 4000"):
        interval_coverage(mean, sd[:10], Y)


def test_reliability_curve_of_a_calibrated_classifier_is_the_diagonal():
    # exact: in bin b every prediction is p_b and a fraction p_b of the labels is 1
    probs = torch.tensor([0.05] * 20 + [0.25] * 20 + [0.5] * 20 + [0.85] * 20, dtype=DT)
    labels = torch.tensor([1] * 1 + [0] * 19 + [1] * 5 + [0] * 15 + [1] * 10 + [0] * 10 + [1] * 17 + [0] * 3, dtype=DT)
    curve = reliability_curve(probs, labels[:, None], bins=10)
    keep = curve.counts > 0
    assert curve.counts.tolist() == [20, 0, 20, 0, 0, 20, 0, 0, 20, 0]
    assert_close(curve.observed[keep], curve.mean_predicted[keep])
    assert float(curve.ece) == pytest.approx(0.0, abs=1e-15)
    assert torch.isnan(curve.observed[~keep]).all()
    # random: y ~ Bernoulli(p), p ~ U(0, 1): within 4 binomial standard errors in every bin
    g = torch.Generator().manual_seed(0)
    p = torch.rand(20_000, generator=g, dtype=DT)
    y = (torch.rand(20_000, generator=g, dtype=DT) < p).to(DT)
    curve = reliability_curve(p, y, bins=10)
    se = (curve.mean_predicted * (1 - curve.mean_predicted) / curve.counts).sqrt()
    assert ((curve.observed - curve.mean_predicted).abs() <= 4 * se).all()
    # miscalibrated by construction: predicting p² for y ~ Bernoulli(p) gives ECE = E|p − p²| = 1/6
    curve = reliability_curve(p**2, y, bins=20)
    assert float(curve.ece) == pytest.approx(1 / 6, abs=0.02)
    with pytest.raises(ValueError, match="labels"):
        reliability_curve(p[:3], torch.tensor([0.0, 2.0, 1.0], dtype=DT))


def test_calibration_and_parity_plots(svgp_1d, data_1d, tmp_path):
    model, _ = svgp_1d
    X, Y = data_1d
    ax = plot_calibration(model, X, Y)
    save(ax.figure, tmp_path, "calibration")
    levels, empirical = line(ax, "model (n = 40)")
    with torch.no_grad():
        post = model.posterior(X, observation_noise=True)
    expected = interval_coverage(post.mean, post.variance, Y)
    assert_close(levels, expected.nominal)
    assert_close(empirical, expected.empirical)
    ax = plot_parity(model, X, Y, max_points=25)
    save(ax.figure, tmp_path, "parity")
    with pytest.raises(ValueError, match="plot_reliability"):
        classifier = build(gpvi.SVGP, X, (X > 4).to(DT), likelihood=BernoulliLikelihood())
        plot_calibration(classifier, X, (X > 4).to(DT))


def test_reliability_plot(classifier_1d, svgp_1d, tmp_path):
    model, X, Y = classifier_1d
    ax = plot_reliability(model, X, Y, bins=5)
    save(ax.figure, tmp_path, "reliability")
    with torch.no_grad():
        probs = model.posterior(X, observation_noise=True).distribution.probs
    curve = reliability_curve(probs, Y, bins=5)
    x, y = line(ax, "model")
    keep = curve.counts > 0
    assert_close(x, curve.mean_predicted[keep])
    assert_close(y, curve.observed[keep])
    regression, _ = svgp_1d
    with pytest.raises(ValueError, match="plot_calibration"):
        plot_reliability(regression, *regression.train_inputs, torch.zeros(40, 1, dtype=DT))
