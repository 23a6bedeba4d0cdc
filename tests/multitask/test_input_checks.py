"""The multitask public API names a wrong argument and the form it expects, before any computation."""

from __future__ import annotations

import pytest
import torch

from gpvi.data import MultiTaskData
from gpvi.multitask import MagmaClust, MagmaClustTaskModel, select_num_clusters

DT = torch.float64


def _pairs(M=4, n=6, d=1):
    g = torch.Generator().manual_seed(0)
    X = torch.linspace(0, 1, n, dtype=DT).unsqueeze(-1).expand(n, d).contiguous()
    return [(X, torch.sin(3 * X.sum(-1)) + i + 0.1 * torch.randn(n, generator=g, dtype=DT)) for i in range(M)]


@pytest.fixture(scope="module")
def model():
    return MagmaClust(_pairs(), 2)  # checks run before anything is fitted, so no fit is needed


# -- the tasks --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "form",
    [
        "curves",  # a list of y_i tensors
        "stacked",  # one M x N tensor
        "stacked-pair",  # (X (M, N), Y (M, N)): read row by row before
        "columns",  # a list of N x 1 input tensors: one-point tasks before, then a NaN covariance
        "long-pair",  # (X, y) of one long table
    ],
)
def test_bare_tensors_are_refused_with_the_expected_form(form):
    tasks = _pairs()
    Xs, Ys = torch.stack([X[:, 0] for X, _ in tasks]), torch.stack([y for _, y in tasks])
    given = {
        "curves": [y for _, y in tasks],
        "stacked": Ys,
        "stacked-pair": (Xs, Ys),
        "columns": [X for X, _ in tasks],
        "long-pair": (Xs.reshape(-1), Ys.reshape(-1)),
    }[form]
    with pytest.raises(TypeError, match=r"`tasks.*\(X_i, y_i\) pair") as err:
        MagmaClust(given, 2)
    assert "MultiTaskData" in str(err.value) and "from_long" in str(err.value)


def test_malformed_pairs_are_named():
    X, y = _pairs()[0]
    with pytest.raises(TypeError, match=r"`tasks\[1\]` must be an \(X_i, y_i\) pair of tensors, got a 3-tuple"):
        MagmaClust([(X, y), (X, y, y)], 1)
    with pytest.raises(TypeError, match=r"`tasks\[0\]` must be an \(X_i, y_i\) pair of tensors, got \(list, Tensor\)"):
        MagmaClust([(X.tolist(), y)], 1)


def test_mixed_dtypes_are_refused_not_cast():
    tasks = _pairs()
    mixed = tasks[:2] + [(tasks[2][0].float(), tasks[2][1].float())] + tasks[3:]
    with pytest.raises(TypeError, match=r"Mixed dtypes in `tasks`: task 2 has inputs torch.float32"):
        MagmaClust(mixed, 2)
    with pytest.raises(TypeError, match=r"task 1 has inputs torch.float64 and outputs torch.float32"):
        MagmaClust([tasks[0], (tasks[1][0], tasks[1][1].float())], 1)
    data = MultiTaskData([X for X, _ in tasks], [y for _, y in tasks])
    data.outputs[3] = data.outputs[3].float()
    with pytest.raises(TypeError, match="task 3"):
        MagmaClust(data, 2)


def test_the_accepted_forms_still_build_the_same_model():
    tasks = _pairs()
    a = MagmaClust(tasks, 2)
    b = MagmaClust(tuple((X[:, 0], y.unsqueeze(-1)) for X, y in tasks), 2)  # 1-D inputs, `N x 1` outputs
    c = MagmaClust(MultiTaskData([X for X, _ in tasks], [y for _, y in tasks]), 2)
    for other in (b, c):
        torch.testing.assert_close(other.data.X, a.data.X, rtol=0, atol=0)
        torch.testing.assert_close(other.data.y, a.data.y, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"num_clusters": True}, "`num_clusters` must be a positive int"),
        ({"prior_mean": True}, "`prior_mean` must be 'learned' or a finite number"),
        ({"prior_mean": float("nan")}, "`prior_mean`"),
        ({"jitter": -1e-6}, "`jitter` must be a finite number >= 0"),
        ({"seed": "0"}, "`seed` must be an int"),
    ],
)
def test_bad_constructor_options_are_named(options, match):
    with pytest.raises((TypeError, ValueError), match=match):
        MagmaClust(_pairs(), **{"num_clusters": 2, **options})


@pytest.mark.parametrize(
    ("options", "match"),
    [({"max_iter": -1}, "`max_iter`"), ({"tol": -1.0}, "`tol`"), ({"m_step": "exact"}, "`m_step`")],
)
def test_bad_fit_options_are_named_before_the_em_starts(options, match):
    model = MagmaClust(_pairs(), 2)
    before = model.responsibilities.clone()
    with pytest.raises(ValueError, match=match):
        model.fit(**options)
    torch.testing.assert_close(model.responsibilities, before, rtol=0, atol=0)  # not even the k-means start ran


# -- choosing K -------------------------------------------------------------------------------------
@pytest.fixture
def no_fit(monkeypatch):
    def fit(self, *args, **kwargs):
        raise AssertionError("a model was fitted before the arguments were checked")

    monkeypatch.setattr(MagmaClust, "fit", fit)


@pytest.mark.parametrize(
    ("candidates", "options", "match"),
    [
        ([1, 2, 9], {}, r"`candidates` has K = 9, larger than the number of tasks \(4\)"),
        ([2, 0], {}, "`candidates` must hold positive ints K, got 0"),
        ([1, True], {}, "`candidates` must hold positive ints K, got True"),
        ([], {}, "`candidates` is empty"),
        ([1, 2, 2], {}, r"`candidates` repeats K = \[2\]"),
        ([1, 2], {"max_iter": 0.5}, "`max_iter`"),
        ([1, 2], {"hypothesis": "H??"}, "`hypothesis`"),
    ],
)
def test_select_num_clusters_checks_every_k_before_fitting_any(no_fit, candidates, options, match):
    with pytest.raises(ValueError, match=match):
        select_num_clusters(_pairs(), candidates, **options)


def test_select_num_clusters_refuses_bare_tensors_before_fitting(no_fit):
    with pytest.raises(TypeError, match=r"\(X_i, y_i\) pair"):
        select_num_clusters([y for _, y in _pairs()], [1, 2])


# -- a new task -------------------------------------------------------------------------------------
def test_predict_names_a_wrong_input_dimension(model):
    X, y = _pairs()[0]
    X2 = torch.rand(5, 2, dtype=DT)
    with pytest.raises(ValueError, match=r"`X_pred` must be `P x d` with d = 1 .* got shape \(5, 2\)"):
        model.predict(X[:3], y[:3], X2)
    with pytest.raises(ValueError, match=r"`X_pred` must be `P x d` with d = 1"):
        model.predict(None, None, X2)
    with pytest.raises(ValueError, match=r"`X_obs` must be `n x d` with d = 1 .* got shape \(3, 2\)"):
        model.predict(X2[:3], y[:3], X)
    with pytest.raises(ValueError, match=r"`X_obs` must be `n x d` with d = 1"):
        model.cluster_probabilities(X2[:3], y[:3])
    with pytest.raises(ValueError, match=r"`points` must be `P x d` with d = 1"):
        model.extend(X2)
    with pytest.raises(ValueError, match=r"`X_pred` must be `P x d`"):
        model.predict(X[:3], y[:3], X.unsqueeze(0))  # 3-D


def test_a_one_d_input_is_one_column_only_when_d_is_one():
    model2 = MagmaClust(_pairs(d=2), 1)
    X, y = _pairs(d=2)[0]
    with pytest.raises(ValueError, match=r"d = 2 .*1-D tensor is read as one column only when d = 1"):
        model2.predict(X[:3], y[:3], torch.rand(4, dtype=DT))


def test_predict_names_bad_observations_and_points(model):
    X, y = _pairs()[0]
    with pytest.raises(ValueError, match="`X_obs` has 3 rows and `y_obs` 4"):
        model.predict(X[:3], y[:4], X)
    with pytest.raises(ValueError, match=r"`y_obs` must be `n` or `n x 1`"):
        model.predict(X[:3], torch.rand(3, 2, dtype=DT), X)
    with pytest.raises(ValueError, match="`y_obs` is None but `X_obs` is not"):
        model.predict(X[:3], None, X)
    with pytest.raises(ValueError, match="`y_obs` contains"):
        model.predict(X[:3], torch.full((3,), float("nan"), dtype=DT), X)
    with pytest.raises(ValueError, match="`X_pred` contains NaN"):
        model.predict(X[:3], y[:3], X * float("nan"))
    with pytest.raises(TypeError, match="`X_pred` must be a floating-point tensor"):
        model.predict(X[:3], y[:3], torch.arange(4))
    with pytest.raises(TypeError, match=r"`X_pred` is torch.float32 but the model is torch.float64"):
        model.predict(X[:3], y[:3], X.float())
    with pytest.raises(TypeError, match=r"`y_obs` is torch.float32"):
        model.predict(X[:3], y[:3].float(), X)


def test_valid_prediction_inputs_still_work(model):
    X, y = _pairs()[0]
    a = model.predict(X[:3], y[:3], X[3:])
    b = model.predict(X[:3, 0], y[:3].unsqueeze(-1), X[3:, 0])  # 1-D inputs for d = 1, `n x 1` outputs
    torch.testing.assert_close(a.means, b.means, rtol=0, atol=0)
    assert model.predict(X[:3], y[:3], X[:0]).means.shape == (2, 0)


def test_the_botorch_task_model_names_wrong_shapes(model):
    X, y = _pairs()[0]
    with pytest.raises(ValueError, match=r"`train_X` must be `n x d` with d = 1"):
        MagmaClustTaskModel(model, torch.rand(3, 2, dtype=DT), y[:3, None])
    with pytest.raises(ValueError, match=r"`train_Y` must be `n x 1` with n = 3"):
        MagmaClustTaskModel(model, X[:3], y[:3])
    task_model = MagmaClustTaskModel(model, X[:3], y[:3, None])
    with pytest.raises(ValueError, match=r"`X` must be `\(\*b\) x q x d` with d = 1"):
        task_model.posterior(torch.rand(4, 1, 2, dtype=DT))
    assert task_model.posterior(X[3:].unsqueeze(-2)).mean.shape == (3, 1, 1)
