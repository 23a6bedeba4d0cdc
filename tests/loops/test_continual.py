"""`ContinualLearner`: the four strategies, the transfer metrics, resuming, validation, and `split_digits`."""

from __future__ import annotations

import math

import pytest
import torch
from gpytorch.likelihoods import SoftmaxLikelihood
from torch.testing import assert_close

import gpvi
from gpvi.data import ContinualTask, split_digits
from gpvi.loops import ContinualLearner, ContinualResult, iteration_seed
from gpvi.loops.continual import constrained_parameters
from gpvi.loops.continual_result import backward_transfer, forgetting

#: The fits stop at small step caps on purpose (tiny, fast runs).
pytestmark = pytest.mark.filterwarnings("ignore::gpvi.progress.MaxStepsWarning")

DT = torch.float64


def _regression_tasks(T=3, n=24, seed=0):
    """T tasks of a 1-D regression on consecutive intervals [t/3, (t + 1)/3) (a sorted stream), each with a test set."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(T):
        X = (t + torch.rand(n + 10, 1, generator=g, dtype=DT)) / 3
        y = torch.sin(9 * X) + 0.05 * torch.randn(n + 10, 1, generator=g, dtype=DT)
        tasks.append(ContinualTask(X[:n], y[:n], f"interval-{t}", X[n:], y[n:]))
    return tasks


def _gaussian(X, y, **kw):
    return gpvi.DualSVGP(X, y, num_inducing=8, **kw)


def _digit_tasks(T=3, n=40, n_test=30):
    return [
        t._replace(X=t.X[:n], y=t.y[:n], X_test=t.X_test[:n_test], y_test=t.y_test[:n_test]) for t in split_digits(T)
    ]


def _softmax(classes):
    def factory(X, y, **kw):
        likelihood = SoftmaxLikelihood(num_classes=classes, num_features=classes, mixing_weights=False)
        return gpvi.DualSVGP(X, y, likelihood, num_inducing=10, **kw)

    return factory


FAST_FIT = {"max_steps": 3}
FAST_UPDATE = {"num_steps": 5, "max_iter": 10}


# -- the matrix and the transfer metrics --------------------------------------------------------------
def test_the_matrix_has_a_row_per_task_learned_and_nans_above_the_diagonal():
    learner = ContinualLearner(_gaussian, _regression_tasks(), "memory", memory_size=10)
    first = learner.learn_next()
    assert first.matrix.shape == (1, 3) and first.metric_name == "nlpd"
    assert math.isnan(first.backward_transfer) and math.isnan(first.forgetting)
    result = learner.run()
    R = result.matrix
    assert R.shape == (3, 3) and learner.num_learned == 3
    below = torch.ones(3, 3, dtype=torch.bool).tril()
    assert torch.isfinite(R[below]).all() and torch.isnan(R[~below]).all()
    assert_close(result.average, torch.stack([R[i, : i + 1].mean() for i in range(3)]))
    assert result.all_seen.shape == result.times.shape == (3,) and (result.times > 0).all()
    assert result.num_seen == [24, 48, 72] and result.task_ids == ["interval-0", "interval-1", "interval-2"]
    rows = result.to_rows()
    assert [len(r["row"]) for r in rows] == [1, 2, 3] and rows[-1]["average"] == result.final_average
    with pytest.raises(RuntimeError, match="All 3 tasks"):
        learner.learn_next()


def test_all_seen_pools_the_points_of_the_test_sets():
    """all_seen is the metric over the union of the test sets, i.e. R's row weighted by test-set sizes."""
    tasks = _regression_tasks()
    tasks[1] = tasks[1]._replace(X_test=tasks[1].X_test[:4], y_test=tasks[1].y_test[:4])  # sizes 10, 4, 10
    result = ContinualLearner(_gaussian, tasks, "retrain", metric="nlpd").run()
    sizes = torch.tensor([10.0, 4.0, 10.0], dtype=DT)
    for i in range(3):
        assert_close(result.all_seen[i], (result.matrix[i, : i + 1] * sizes[: i + 1]).sum() / sizes[: i + 1].sum())


def test_transfer_metrics_of_a_hand_made_matrix():
    nan = math.nan
    R = torch.tensor([[0.90, nan, nan], [0.95, 0.95, nan], [0.70, 0.85, 0.90]], dtype=DT)
    # BWT = mean(0.70 − 0.90, 0.85 − 0.95); forgetting = mean(max(0.90, 0.95) − 0.70, 0.95 − 0.85)
    assert backward_transfer(R) == pytest.approx(-0.15, abs=1e-12)
    assert forgetting(R) == pytest.approx(0.175, abs=1e-12)
    # lower is better (NLPD): signs flipped, so BWT > 0 is an improvement and forgetting > 0 a loss
    assert backward_transfer(R, higher_is_better=False) == pytest.approx(0.15, abs=1e-12)
    assert forgetting(R, higher_is_better=False) == pytest.approx(-0.15, abs=1e-12)
    result = ContinualResult(
        "memory", "accuracy", R, torch.zeros(3), torch.zeros(3), torch.zeros(3), [1, 2, 3], [0, 1, 2]
    )
    assert_close(result.average, torch.tensor([0.90, 0.95, 0.8166666666666667], dtype=DT))
    assert result.final_average == pytest.approx(0.8166666666666667)
    assert result.forgetting == pytest.approx(0.175) and result.backward_transfer == pytest.approx(-0.15)
    assert math.isnan(backward_transfer(R[:1])) and math.isnan(forgetting(R[:1]))


# -- the strategies ---------------------------------------------------------------------------------
def test_retrain_on_the_last_task_is_one_fit_on_all_the_data_under_that_tasks_seed():
    tasks = _regression_tasks()
    learner = ContinualLearner(_gaussian, tasks, "retrain", seed=3)
    learner.run()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(iteration_seed(3, 2))
        reference = _gaussian(torch.cat([t.X for t in tasks]), torch.cat([t.y for t in tasks]))
        gpvi.fit(reference, progress=False)
    Xs = torch.linspace(0, 1, 40, dtype=DT).unsqueeze(-1)
    mine, theirs = learner.model.posterior(Xs), reference.posterior(Xs)
    assert_close(mine.mean, theirs.mean, rtol=0, atol=0)
    assert_close(mine.variance, theirs.variance, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::botorch.exceptions.warnings.InputDataWarning")  # targets as they are
@pytest.mark.parametrize("strategy", ["memory", "none"])
def test_streamed_gaussian_tasks_at_fixed_hyperparameters_give_the_batch_posterior(strategy):
    """With a Gaussian likelihood, θ and Z held, the streamed sites are exact whether the past is in the
    memory or in the frozen summary, and in minibatches: the learner's model after the last task is the
    Titsias posterior on all tasks' data at the first task's θ (one exact CVI step, ρ = 1)."""
    tasks = _regression_tasks()
    Z = torch.linspace(0, 1, 10, dtype=DT).unsqueeze(-1)

    def factory(X, y, **kw):
        return gpvi.DualSVGP(X, y, outcome_transform=None, inducing=Z, learn_inducing=False, jitter=1e-8, **kw)

    learner = ContinualLearner(
        factory,
        tasks,
        strategy,
        memory_size=1000,
        batch_size=10,
        update_options={"hyperparameters": False, "reselect_inducing": False},
    )
    learner.run()
    assert learner.model.num_summarised == (0 if strategy == "memory" else 72 - 4)  # the last minibatch is held
    X, y = torch.cat([t.X for t in tasks]), torch.cat([t.y for t in tasks])[:, 0]
    model = learner.model
    Xs = torch.linspace(0, 1, 25, dtype=DT).unsqueeze(-1)
    with torch.no_grad():  # the Titsias posterior in dense algebra, at the model's θ
        kernel, noise, c = model.model.covar_module, model.likelihood.noise.item(), model.model.mean_module.constant
        Kuu = kernel(Z).to_dense() + 1e-8 * torch.eye(10, dtype=DT)
        Kuf, Ksu = kernel(Z, X).to_dense(), kernel(Xs, Z).to_dense()
        A = Kuu + Kuf @ Kuf.T / noise
        mean = c + Ksu @ torch.linalg.solve(A, Kuf @ (y - c)) / noise
        var = kernel(Xs, diag=True) - (Ksu * torch.linalg.solve(Kuu, Ksu.T).T).sum(-1)
        var = var + (Ksu * torch.linalg.solve(A, Ksu.T).T).sum(-1)
        posterior = model.posterior(Xs)
    assert_close(posterior.mean[:, 0], mean, rtol=0, atol=1e-9)
    assert_close(posterior.variance[:, 0], var, rtol=0, atol=3e-8)  # the jitter, 1e-8, enters the variance


def test_memory_keeps_the_old_classes_where_no_memory_and_finetuning_forget_them():
    """Split digits, 3 tasks of 40 points: a memory that holds every point seen (120) keeps the old
    classes about as well as refitting on all data; without a memory, or refitting on the new task
    only, the class-incremental softmax predicts the new classes everywhere."""
    tasks = _digit_tasks()
    results = {
        strategy: ContinualLearner(
            _softmax(6), tasks, strategy, memory_size=120, fit_options=FAST_FIT, update_options=FAST_UPDATE
        ).run()
        for strategy in ("memory", "retrain", "none", "finetune")
    }
    assert all(r.metric_name == "accuracy" for r in results.values())
    memory = results["memory"]
    assert (memory.matrix.diagonal() > 0.75).all()  # every task learned when it comes
    assert memory.final_average > 0.8 and memory.forgetting < 0.15
    # the same data as retrain, reached by updates (warm L-BFGS, Z re-selected) instead of one cold fit:
    # within 9 of the 90 test images
    assert abs(memory.final_average - results["retrain"].final_average) < 0.1
    for baseline in ("none", "finetune"):
        assert results[baseline].forgetting > 0.5
        assert memory.final_average > results[baseline].final_average + 0.3


def _hyperparameters(model):
    """The constrained values of the kernel, mean and likelihood parameters, by name."""
    return {name: (p if c is None else c.transform(p)).detach().clone() for name, p, c in constrained_parameters(model)}


def test_finetune_starts_each_task_from_the_previous_hyperparameters(monkeypatch):
    import gpvi.loops.continual as continual

    starts = []

    def recording_fit(model, **options):
        starts.append((_hyperparameters(model), model.features.Z.detach().clone()))
        return gpvi.fit(model, **options)

    monkeypatch.setattr(continual, "fit", recording_fit)
    tasks = _regression_tasks(T=2)
    learner = ContinualLearner(_gaussian, tasks, "finetune")
    learner.learn_next()
    first = _hyperparameters(learner.model)
    learner.learn_next()
    assert set(first) == set(starts[1][0]) and len(first) == 3  # mean, lengthscale, noise
    assert all(not torch.equal(starts[0][0][k], first[k]) for k in first)  # the first fit moved them
    for k in first:
        assert_close(starts[1][0][k], first[k], rtol=1e-12, atol=0)  # and the second fit started there
    assert not torch.equal(starts[1][1], learner.model.features.Z)  # q and Z are the new task's own
    assert learner.model.num_data == tasks[1].X.shape[0]  # the current task only


def test_warm_start_copies_values_between_kernels_scaled_to_other_inputs():
    """Inputs squeezed into [0, 0.02] get a lengthscale constraint scaled to their spread (`default_kernel`):
    equal raw parameters would be other lengthscales, so the values are copied."""
    from gpvi.loops.continual import warm_start

    X = torch.rand(20, 1, dtype=DT)
    wide, narrow = _gaussian(X, torch.sin(X)), _gaussian(0.02 * X, torch.sin(X))
    wide.model.covar_module.lengthscale = 0.3
    wide.likelihood.noise = 0.01
    warm_start(narrow, wide)
    assert narrow.model.covar_module.lengthscale.item() == pytest.approx(0.3, rel=1e-12)
    assert narrow.likelihood.noise.item() == pytest.approx(0.01, rel=1e-12)
    raw = "raw_lengthscale"
    assert not torch.allclose(getattr(narrow.model.covar_module, raw), getattr(wide.model.covar_module, raw))


def test_regression_tasks_with_each_metric():
    tasks = _regression_tasks()
    rmse = {s: ContinualLearner(_gaussian, tasks, s, metric="rmse").run() for s in ("retrain", "finetune")}
    assert rmse["retrain"].metric_name == "rmse"
    assert rmse["retrain"].matrix[2, 0] < 0.2 < rmse["finetune"].matrix[2, 0]  # finetuning forgot [0, 1/3)
    assert rmse["retrain"].forgetting < rmse["finetune"].forgetting
    nlpd = ContinualLearner(_gaussian, tasks, "memory", memory_size=30).run()
    assert nlpd.metric_name == "nlpd" and nlpd.final_average < 0.0  # noise 0.05: good densities are positive


# -- resuming ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("include_model", [True, False])
def test_checkpoint_after_one_task_then_restore_continues_exactly(include_model):
    tasks = _digit_tasks(T=3, n=30, n_test=20)

    def learner():
        return ContinualLearner(
            _softmax(6), tasks, "memory", memory_size=20, seed=5, fit_options=FAST_FIT, update_options=FAST_UPDATE
        )

    whole = learner().run()
    first = learner()
    first.learn_next()
    torch.manual_seed(123)  # the caller's RNG state must not matter
    resumed = learner()
    resumed.restore(first.checkpoint(include_model=include_model))
    assert resumed.num_learned == 1
    result = resumed.run()
    assert_close(result.matrix, whole.matrix, rtol=0, atol=0, equal_nan=True)
    assert_close(result.all_seen, whole.all_seen, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="fresh learner"):
        resumed.restore(first.checkpoint())
    other = ContinualLearner(_softmax(6), tasks, "none", seed=5)
    with pytest.raises(ValueError, match="`checkpoint` was taken from another learner"):
        other.restore(first.checkpoint())


def test_a_built_model_serves_as_the_first_tasks_model():
    tasks = _regression_tasks()
    model = _gaussian(tasks[0].X, tasks[0].y)
    learner = ContinualLearner(model, tasks, "memory", memory_size=7)
    result = learner.run()
    assert learner.model is not model and learner.model.memory_size == 7 and model.stream_state is None
    assert torch.isfinite(result.all_seen).all()
    with pytest.raises(TypeError, match="`model_factory_or_model`: strategy 'retrain' builds a new model"):
        ContinualLearner(model, tasks, "retrain")
    with pytest.raises(ValueError, match="`model_factory_or_model`: a model must be built on the first task"):
        ContinualLearner(_gaussian(tasks[1].X, tasks[1].y), tasks, "memory")


# -- validation -------------------------------------------------------------------------------------
def _bad(change):
    tasks = [tuple(t) for t in _regression_tasks(T=2)]
    kwargs = {}
    if change == "no tasks":
        tasks = []
    elif change == "1-D X":
        tasks[0] = (tasks[0][0][:, 0], *tasks[0][1:])
    elif change == "rows":
        tasks[1] = (tasks[1][0], tasks[1][1][:-1], *tasks[1][2:])
    elif change == "dtype":
        tasks[1] = tuple(t.float() if isinstance(t, torch.Tensor) else t for t in tasks[1])
    elif change == "no test set":
        tasks[1] = tasks[1][:2]
    elif change == "test_tasks twice":
        kwargs["test_tasks"] = [(t[3], t[4]) for t in tasks]
    elif change == "columns":
        tasks[1] = (torch.cat([tasks[1][0], tasks[1][0]], -1), *tasks[1][1:])
    elif change == "labels":
        kwargs["metric"] = "accuracy"
    else:
        kwargs = change
    return tasks, kwargs


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ("no tasks", ValueError, "`tasks` must be a non-empty sequence"),
        ("1-D X", ValueError, r"`tasks\[0\].X` must have 2 dimensions"),
        ("rows", ValueError, r"`tasks\[1\].y` must be `24` or `24 x 1`"),
        ("dtype", TypeError, r"`tasks\[1\].X` is torch.float32"),
        ("no test set", ValueError, r"`tasks\[1\]` has no test set"),
        ("test_tasks twice", ValueError, "`test_tasks`: task 0 holds a test set already"),
        ("columns", ValueError, r"`tasks\[1\].X` has 2 columns"),
        ("labels", ValueError, r"`tasks\[0\].y` must hold class labels"),
        ({"strategy": "rehearsal"}, ValueError, "`strategy` must be one of"),
        ({"memory_size": -1}, ValueError, "`memory_size` must be an int >= 0"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be an int >= 1"),
        ({"memory_selection": "top"}, ValueError, "`memory_selection`"),
        ({"metric": "auc"}, ValueError, "`metric` must be None or one of"),
        ({"fit_options": [1]}, TypeError, "`fit_options` must be a dict"),
        ({"test_tasks": [None]}, ValueError, "`test_tasks` must be a sequence of 2"),
    ],
)
def test_bad_input_is_refused_up_front_naming_the_argument(change, error, match):
    tasks, kwargs = _bad(change)
    with pytest.raises(error, match=match):
        ContinualLearner(_gaussian, tasks, **kwargs)


def test_test_sets_may_come_separately_and_metrics_must_fit_the_model():
    tasks = _regression_tasks(T=2)
    separate = ContinualLearner(_gaussian, [t[:3] for t in tasks], test_tasks=[(t.X_test, t.y_test) for t in tasks])
    assert separate.learn_next().matrix.shape == (1, 2)
    with pytest.raises(ValueError, match="`metric`: 'accuracy' needs a classifier"):
        ContinualLearner(
            _gaussian,
            [(t.X, t.y.abs().round(), t.task_id, t.X_test, t.y_test.abs().round()) for t in tasks],
            metric="accuracy",
        ).learn_next()
    with pytest.raises(TypeError, match="`model_factory_or_model` must be a callable"):
        ContinualLearner("dual-svgp", tasks)


# -- split digits -----------------------------------------------------------------------------------
def test_split_digits_is_class_incremental_seeded_and_disjoint():
    tasks = split_digits(num_tasks=5, classes_per_task=2, seed=1)
    assert [t.task_id for t in tasks] == list(range(5))
    total = 0
    for t, task in enumerate(tasks):
        assert set(task.y[:, 0].tolist()) == set(task.y_test[:, 0].tolist()) == {2.0 * t, 2.0 * t + 1}
        n = task.X.shape[0] + task.X_test.shape[0]
        assert task.X_test.shape[0] == round(0.2 * n) and task.X.shape[1] == 64
        assert 0 <= task.X.min() and task.X.max() <= 1 and task.X.dtype == DT
        total += n
    assert total == 1797
    again, other = split_digits(seed=1), split_digits(seed=2)
    assert all(torch.equal(a.X_test, b.X_test) for a, b in zip(tasks, again, strict=True))
    assert not torch.equal(tasks[0].X_test, other[0].X_test)
    raw = split_digits(num_tasks=1, scale=False, dtype=torch.float32)
    assert raw[0].X.max() == 16 and raw[0].X.dtype == torch.float32
    assert_close(raw[0].X.double() / 16, split_digits(num_tasks=1)[0].X)
    with pytest.raises(ValueError, match="at most 10"):
        split_digits(num_tasks=4, classes_per_task=3)
    with pytest.raises(ValueError, match="`test_fraction`"):
        split_digits(test_fraction=1.0)
