"""Active learning (`ActiveLearner`) and the classifier factories: picks, pools, batches, resume, errors."""

from __future__ import annotations

import pytest
import torch
from botorch.models.transforms.outcome import Standardize
from gpytorch.kernels import ScaleKernel
from gpytorch.likelihoods import BernoulliLikelihood, SoftmaxLikelihood

from gpvi.acquisition import acquisition_scores
from gpvi.data import banana
from gpvi.loops import ActiveLearner, ALResult, GPVIFactory, ModelFactory, SVGPFactory, make_factory
from gpvi.loops.active import PoolExhaustedError, PoolExhaustedWarning

DT = torch.float64
FAST = {"max_steps": 20, "warm_steps": 10, "update_steps": 3}
CHEAP = {"max_steps": 10, "warm_steps": 5, "update_steps": 0}  # with update="update": appends only
CLASSIFIER = {"max_steps": 2, "warm_steps": 1, "update_steps": 1, "num_inducing": 16}
OPTIMIZE = {"num_restarts": 2, "raw_samples": 32, "maxiter": 20}


def regression_pool(n: int = 60, d: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=DT)
    y = torch.sin(6 * X[:, 0]) + X[:, -1] ** 2 + 0.05 * torch.randn(n, generator=g, dtype=DT)
    return X, y


class CountingFactory(ModelFactory):
    """An SVGP factory that counts its fits and updates."""

    def __init__(self) -> None:
        self.inner = SVGPFactory(**FAST)
        self.fits = self.updates = 0

    def fit(self, train_X, train_Y, bounds, warm=None):
        self.fits += 1
        return self.inner.fit(train_X, train_Y, bounds, warm)

    def warm_state(self, model):
        return self.inner.warm_state(model)

    def update(self, model, X_new, Y_new):
        self.updates += 1
        return self.inner.update(model, X_new, Y_new)


def _label(learner: ActiveLearner, y: torch.Tensor) -> torch.Tensor:
    """One ask/tell step with the pool's labels; returns the indices asked."""
    learner.suggest()
    idx = learner.suggested_indices
    learner.observe_indices(idx, y[idx])
    return idx


# -- pool mode ----------------------------------------------------------------------------------------
def test_variance_picks_the_pool_point_of_largest_variance():
    X, y = regression_pool()
    learner = ActiveLearner("svgp", pool=X, acquisition="variance", num_initial=6, seed=1, model_options=FAST)
    first = _label(learner, y)
    assert first.numel() == 6
    X_next = learner.suggest()
    scores = acquisition_scores("variance", learner.model, X)
    scores[first] = -torch.inf
    assert learner.suggested_indices.tolist() == [int(scores.argmax())]
    torch.testing.assert_close(X_next, X[scores.argmax()][None], rtol=0, atol=0)
    assert torch.equal(learner.suggest(), X_next)  # asking again: the same point


def test_no_pool_index_is_asked_twice_until_the_pool_runs_out():
    X, y = regression_pool(n=30)
    learner = ActiveLearner("svgp", pool=X, batch_size=4, update="update", num_initial=5, model_options=CHEAP)
    result = learner.run(y, 6)  # 5 + 6 x 4 = 29 of the 30 points
    assert result.indices.numel() == 29 and result.indices.unique().numel() == 29
    torch.testing.assert_close(result.X, X[result.indices], rtol=0, atol=0)
    torch.testing.assert_close(result.y[:, 0], y[result.indices], rtol=0, atol=0)
    with pytest.warns(PoolExhaustedWarning, match="points for 1 more step"):
        result = learner.run(y, 3)
    assert sorted(result.indices.tolist()) == list(range(30))
    assert result.history[-1]["labels"] == 30  # the model after the last labels is recorded
    with pytest.raises(PoolExhaustedError):
        learner.suggest()


def test_a_batch_of_three_is_distinct_and_new():
    X, y = regression_pool()
    learner = ActiveLearner("svgp", pool=X, batch_size=3, num_initial=5, seed=2, model_options=FAST)
    seen = set(_label(learner, y).tolist())
    for _ in range(3):
        batch = _label(learner, y).tolist()
        assert len(batch) == 3 and len(set(batch)) == 3 and not set(batch) & seen
        seen |= set(batch)


def test_rows_match_the_suggested_indices_in_any_order():
    X, y = regression_pool()
    learner = ActiveLearner("svgp", pool=X, batch_size=3, num_initial=4, seed=3, model_options=CHEAP, update="update")
    learner.observe(learner.suggest(), y[learner.suggested_indices])
    rows = learner.suggest()
    idx = learner.suggested_indices
    learner.observe(rows.flip(0), y[idx].flip(0))  # the same points, another order
    assert learner.indices[-3:].tolist() == idx.flip(0).tolist()
    torch.testing.assert_close(learner.Y[-3:, 0], y[idx.flip(0)], rtol=0, atol=0)


def test_labels_as_a_tensor_or_a_callable_give_the_same_run():
    X, y = regression_pool()
    runs = []
    for oracle in (y, y[:, None], lambda Z: torch.sin(6 * Z[:, 0]) + Z[:, -1] ** 2):
        learner = ActiveLearner("svgp", pool=X, num_initial=5, seed=4, model_options=CHEAP, update="update")
        runs.append(learner.run(oracle, 3))
    assert isinstance(runs[0], ALResult)
    assert runs[0].indices.tolist() == runs[1].indices.tolist()
    torch.testing.assert_close(runs[0].y, runs[1].y, rtol=0, atol=0)
    assert runs[2].indices.numel() == 8 and runs[2].history[-1]["labels"] == 8


def test_learning_curve_records_every_model_with_its_test_metrics_and_fits_nothing_twice():
    X, y = regression_pool(n=80)
    factory = CountingFactory()
    learner = ActiveLearner(factory, pool=X[:60], num_initial=5, test=(X[60:], y[60:]), update="refit_every:2")
    result = learner.run(y[:60], 4)
    assert [r["labels"] for r in result.history] == [5, 6, 7, 8, 9]  # steps 1-4 and the model after them
    assert all({"rmse", "nlpd", "fit_time", "acq_time", "time"} <= set(r) for r in result.history)
    assert result.history[-1]["acq_time"] == 0.0 and result.history[0]["rmse"] > result.history[-1]["rmse"]
    assert (factory.fits, factory.updates) == (3, 2)  # refits at steps 1, 3, 5; updates at 2, 4
    learner.suggest()  # the model of step 5 is the one `run` evaluated last
    assert (factory.fits, factory.updates) == (3, 2) and len(learner.history) == 5


@pytest.mark.parametrize(("update", "counts"), [("update", (1, 4)), ("refit", (5, 0))])
def test_the_update_schedule_calls_the_factorys_update(update, counts):
    X, y = regression_pool()
    factory = CountingFactory()
    ActiveLearner(factory, pool=X, num_initial=5, update=update).run(y, 4)  # models at steps 1-4, then 5
    assert (factory.fits, factory.updates) == counts


@pytest.mark.parametrize("evaluate_first", [False, True])
def test_a_restored_learner_suggests_what_the_uninterrupted_one_does(evaluate_first):
    X, y = regression_pool(n=80)
    make = (
        lambda: ActiveLearner(  # noqa: E731
            "svgp",
            pool=X[:60],
            num_initial=5,
            batch_size=2,
            seed=5,
            update="refit_every:2",
            model_options=FAST,
            test=(X[60:], y[60:]),
        )
    )
    full, batches = make(), []
    for _ in range(4):
        Xs = full.suggest()
        idx = full.suggested_indices
        full.observe(Xs, y[idx])
        batches.append((Xs, y[idx]))
    if evaluate_first:
        full.evaluate()  # the checkpoint holds the model refreshed for the next step
    checkpoint = full.checkpoint()
    expected = full.suggest()
    restored = make()
    restored.restore(batches, checkpoint)
    torch.testing.assert_close(restored.suggest(), expected, rtol=0, atol=0)
    assert restored.suggested_indices.tolist() == full.suggested_indices.tolist()
    assert restored.indices.tolist() == full.indices.tolist()
    assert restored.history[-1]["rmse"] == full.history[-1]["rmse"]


# -- classifiers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("acquisition", ["entropy", "bald"])
def test_bernoulli_classifier_on_banana(acquisition):
    X, y = banana(140, seed=0)
    learner = ActiveLearner(
        "svgp",
        pool=X[:80],
        acquisition=acquisition,
        num_initial=10,
        update="update",
        seed=0,
        test=(X[80:], y[80:]),
        model_options={"likelihood": "bernoulli", **CLASSIFIER},
    )
    first = _label(learner, y[:80])
    learner.suggest()
    assert isinstance(learner.model.likelihood, BernoulliLikelihood)
    scores = acquisition_scores(acquisition, learner.model, X[:80])
    scores[first] = -torch.inf
    assert learner.suggested_indices.tolist() == [int(scores.argmax())]
    result = learner.run(y[:80], 2)  # the suggested point first, as one of the 2 steps
    assert result.indices.unique().numel() == 12
    record = result.history[-1]
    assert record["labels"] == 12 and 0.6 < record["accuracy"] <= 1 and 0 < record["nlpd"] < 0.7


def test_softmax_classifier_with_three_classes():
    X, _ = banana(120, seed=1)
    labels = torch.bucketize(X[:, 0].contiguous(), torch.tensor([-0.5, 0.5], dtype=DT)).to(DT)  # 3 bands along x0
    learner = ActiveLearner(
        "svgp",
        pool=X[:80],
        acquisition="entropy",
        num_initial=12,
        update="update",
        test=(X[80:], labels[80:]),
        model_options={"likelihood": "softmax:3", **CLASSIFIER},
    )
    result = learner.run(labels[:80], 2)
    assert isinstance(learner.model.likelihood, SoftmaxLikelihood) and learner.model.num_latents == 3
    assert result.indices.unique().numel() == 14
    assert result.history[-1]["accuracy"] > 0.6


def test_classifier_labels_are_checked_when_observed():
    X, y = banana(40, seed=0)
    learner = ActiveLearner("svgp", pool=X, num_initial=4, model_options={"likelihood": "bernoulli"})
    learner.suggest()
    with pytest.raises(ValueError, match=r"`Y`.*labels in \{0, 1\}"):
        learner.observe_indices(learner.suggested_indices, 2 * y[learner.suggested_indices] - 1)
    assert learner.iteration == 0 and learner.X.shape[0] == 0


# -- continuous mode and BoTorch's exact GP ------------------------------------------------------------
@pytest.mark.parametrize("acquisition", ["variance", "nipv"])
def test_continuous_mode_returns_points_in_the_box(acquisition):
    bounds = torch.tensor([[-1.0, 0.0], [1.0, 2.0]], dtype=DT)
    f = lambda Z: torch.sin(3 * Z[:, 0]) * Z[:, 1]  # noqa: E731
    learner = ActiveLearner(
        "svgp",
        bounds=bounds,
        acquisition=acquisition,
        batch_size=2,
        num_initial=6,
        model_options=FAST,
        acquisition_options=OPTIMIZE,
    )
    result = learner.run(f, 2)
    assert result.X.shape == (10, 2) and result.indices is None
    assert bool(((result.X >= bounds[0]) & (result.X <= bounds[1])).all())
    assert torch.cdist(result.X[6:], result.X[6:]).add(torch.eye(4, dtype=DT)).min() > 1e-3  # a spread batch


@pytest.mark.parametrize("acquisition", ["variance", "nipv"])
def test_botorch_singletaskgp_in_pool_mode(acquisition):
    X, y = regression_pool(n=70)
    learner = ActiveLearner("singletaskgp", pool=X[:50], acquisition=acquisition, num_initial=5, test=(X[50:], y[50:]))
    result = learner.run(y[:50], 3)
    assert type(learner.model).__name__ == "SingleTaskGP"
    assert result.indices.unique().numel() == 8 and result.history[-1]["rmse"] < 0.6


# -- classifier factories -------------------------------------------------------------------------------
def test_a_classifier_factory_reads_labels_as_given():
    X, y = banana(40, seed=2)
    bounds = torch.stack([X.min(0).values, X.max(0).values])
    factory = make_factory("svgp", likelihood="bernoulli", **CLASSIFIER)
    assert factory.classifier and factory.fit_kind == "default"
    model = factory.fit(X, y, bounds)
    assert not hasattr(model, "outcome_transform") and isinstance(model.model.covar_module, ScaleKernel)
    torch.testing.assert_close(model.train_targets, y, rtol=0, atol=0)
    assert factory.update(model, X[:3] + 0.01, y[:3]).num_data == 43
    gaussian = make_factory("svgp", likelihood="gaussian", **FAST)  # today's regression factory
    assert not gaussian.classifier and gaussian.fit_kind == "collapsed"
    assert isinstance(gaussian.fit(X, y, bounds).outcome_transform, Standardize)


def test_classifier_factory_errors():
    with pytest.raises(ValueError, match="fit='collapsed' needs a Gaussian likelihood"):
        GPVIFactory("svgp", likelihood="bernoulli", fit="collapsed")
    with pytest.raises(ValueError, match="regression model.*GPVIFactory"):
        make_factory("singletaskgp", likelihood="softmax:3")
    with pytest.raises(ValueError, match="Unknown `likelihood`"):
        GPVIFactory("svgp", likelihood="softmax:1")
    with pytest.raises(ValueError, match="regression model"):
        ActiveLearner(
            "singletaskgp", pool=torch.rand(10, 2, dtype=DT), num_initial=4, model_options={"likelihood": "bernoulli"}
        )


# -- errors -------------------------------------------------------------------------------------------
def test_errors_name_the_argument():
    X, y = regression_pool(n=20)
    box = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=DT)
    with pytest.raises(ValueError, match="exactly one of `pool`.*`bounds`"):
        ActiveLearner("svgp")
    with pytest.raises(ValueError, match="exactly one of `pool`.*`bounds`"):
        ActiveLearner("svgp", pool=X, bounds=box)
    with pytest.raises(ValueError, match="Unknown `acquisition`"):
        ActiveLearner("svgp", pool=X, acquisition="ucb")
    with pytest.raises(ValueError, match="`batch_size` must be a positive int"):
        ActiveLearner("svgp", pool=X, batch_size=0)
    with pytest.raises(ValueError, match="`update` must be one of"):
        ActiveLearner("svgp", pool=X, update="refit_every:0")
    with pytest.raises(ValueError, match="`num_initial` \\(21\\) exceeds the pool's 20 points"):
        ActiveLearner("svgp", pool=X, num_initial=21)
    with pytest.raises(ValueError, match="`test\\[1\\]` must be"):
        ActiveLearner("svgp", pool=X, test=(X, y[:5]))
    with pytest.raises(ValueError, match="needs `pool`"):
        ActiveLearner("svgp", bounds=box, acquisition=lambda model, Z: Z[:, 0])
    with pytest.raises(ValueError, match="'entropy' needs a classifier"):
        ActiveLearner("svgp", pool=X, acquisition="entropy")
    with pytest.raises(ValueError, match="'nipv' needs a Gaussian likelihood"):
        ActiveLearner("dual-svgp", pool=X, acquisition="nipv", model_options={"likelihood": "bernoulli"})
    with pytest.raises(ValueError, match="`model_factory` is needed"):
        ActiveLearner(None, pool=X)
    with pytest.raises(ValueError, match="Unknown `acquisition_options`"):
        ActiveLearner("svgp", bounds=box, acquisition_options={"restarts": 2})
    with pytest.raises(TypeError, match="tensor `oracle`"):
        ActiveLearner("svgp", bounds=box).run(y, 1)
    learner = ActiveLearner(None, pool=X, acquisition="random", num_initial=4)
    with pytest.raises(ValueError, match="`oracle` must hold the pool's labels"):
        learner.run(y[:5], 1)
    learner.suggest()
    with pytest.raises(ValueError, match="must be the suggested ones"):
        other = [i for i in range(20) if i not in learner.suggested_indices.tolist()][:4]
        learner.observe_indices(torch.tensor(other), y[other])
    learner.observe_indices(learner.suggested_indices, y[learner.suggested_indices])
    asked = learner.indices[:1]
    with pytest.raises(ValueError, match="labelled already"):
        learner.observe_indices(asked, y[asked])
    with pytest.raises(ValueError, match="none of the unlabelled pool points"):
        learner.observe(X[asked], y[asked])
    assert learner.run(y, 2).indices.unique().numel() == 6  # random picks, no model
