"""Tests for `gpvi.data.multitask`: the container, the MagmaClust-style simulator and fertility."""

from __future__ import annotations

import pytest
import torch

from gpvi.data import MultiTaskData, fertility, multitask, simulate_multitask
from gpvi.data.multitask import simulate


def _toy() -> MultiTaskData:
    """Three tasks with 4, 2 and 3 points, unsorted inputs, d = 2."""
    inputs = [
        torch.tensor([[3.0, 0.0], [1.0, 1.0], [2.0, 0.5], [0.0, 2.0]]),
        torch.tensor([[5.0, 1.0], [4.0, 1.0]]),
        torch.tensor([[0.5, 0.0], [2.5, 0.0], [1.5, 0.0]]),
    ]
    outputs = [torch.tensor([30.0, 10.0, 20.0, 0.0]), torch.tensor([50.0, 40.0]), torch.tensor([5.0, 25.0, 15.0])]
    return MultiTaskData(inputs, outputs, labels=torch.tensor([0, 1, 0]), names=["a", "b", "c"])


# ---------------------------------------------------------------- container validation


def test_basic_properties():
    data = _toy()
    assert data.num_tasks == len(data) == 3
    assert data.dim == 2
    assert data.num_points == [4, 2, 3]
    assert "num_tasks=3" in repr(data) and len(repr(data)) < 200


@pytest.mark.parametrize(
    ("inputs", "outputs", "exc", "match"),
    [
        ([torch.zeros(1, 1), torch.zeros(0, 1)], [torch.zeros(1), torch.zeros(0)], ValueError, "Task 1 is empty"),
        ([torch.tensor([[0.0], [1.0], [0.0]])], [torch.zeros(3)], ValueError, "Task 0.*duplicated"),
        ([torch.tensor([[0.0], [1.0]])], [torch.tensor([1.0, float("nan")])], ValueError, "Task 0.*NaN"),
        ([torch.tensor([[0.0], [float("inf")]])], [torch.zeros(2)], ValueError, "Task 0.*NaN or inf"),
        ([torch.zeros(1, 1), torch.rand(3, 1)], [torch.zeros(1), torch.zeros(2)], ValueError, "Task 1.*3 rows"),
        ([torch.zeros(1, 1)], [torch.zeros(1), torch.zeros(1)], ValueError, "`inputs` has 1 tasks"),
        ([torch.zeros(1, 1), torch.zeros(1, 2)], [torch.zeros(1), torch.zeros(1)], ValueError, "Task 1.*d=2"),
        ([torch.zeros(3)], [torch.zeros(3)], ValueError, r"`inputs\[0\]` must be 2-D"),
        ([torch.zeros(3, 1)], [torch.zeros(3, 1)], ValueError, r"`outputs\[0\]` must be 1-D"),
        ([torch.zeros(1, 1, dtype=torch.long)], [torch.zeros(1)], TypeError, "floating"),
        ([], [], ValueError, "at least one task"),
    ],
)
def test_validation_errors(inputs, outputs, exc, match):
    with pytest.raises(exc, match=match):
        MultiTaskData(inputs, outputs)


def test_metadata_validation():
    x, y = [torch.zeros(1, 1), torch.ones(1, 1)], [torch.zeros(1), torch.zeros(1)]
    with pytest.raises(ValueError, match="`labels` must have shape"):
        MultiTaskData(x, y, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="`labels` must be a long"):
        MultiTaskData(x, y, labels=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="`names` has 1"):
        MultiTaskData(x, y, names=["a"])
    with pytest.raises(ValueError, match="`mean_curves`.*columns"):
        MultiTaskData(x, y, grid=torch.zeros(4, 1), mean_curves=torch.zeros(2, 3))


# ---------------------------------------------------------------- long format and splits


def test_to_long_from_long_round_trip():
    data = _toy()
    X, y, ids = data.to_long()
    assert X.shape == (9, 2) and y.shape == (9,) and ids.dtype == torch.long
    assert ids.tolist() == [0] * 4 + [1] * 2 + [2] * 3
    back = MultiTaskData.from_long(X, y, ids, names=data.names)
    assert back.names == data.names
    for a, b in zip(data.inputs + data.outputs, back.inputs + back.outputs, strict=True):
        assert torch.equal(a, b)


def test_from_long_groups_by_first_appearance():
    X = torch.arange(6.0).unsqueeze(-1)
    y = torch.arange(6.0) * 10
    ids = torch.tensor([7, 2, 7, 9, 2, 9])
    data = MultiTaskData.from_long(X, y, ids)
    assert data.num_tasks == 3
    assert [x.squeeze(-1).tolist() for x in data.inputs] == [[0.0, 2.0], [1.0, 4.0], [3.0, 5.0]]
    assert [o.tolist() for o in data.outputs] == [[0.0, 20.0], [10.0, 40.0], [30.0, 50.0]]
    with pytest.raises(TypeError, match="task_ids"):
        MultiTaskData.from_long(X, y, ids.double())
    with pytest.raises(ValueError, match="must match"):
        MultiTaskData.from_long(X, y[:5], ids)


def test_subset_keeps_metadata():
    data = _toy()
    sub = data.subset([2, 0])
    assert sub.names == ["c", "a"] and sub.labels.tolist() == [0, 0]
    assert torch.equal(sub.inputs[0], data.inputs[2])
    with pytest.raises(ValueError, match="indices"):
        data.subset([3])


def test_split_tasks_sizes_and_determinism():
    data = simulate(num_tasks=20, num_clusters=2, num_points=5, seed=1)
    train, test = data.split_tasks(test_fraction=0.4, seed=3)
    assert (train.num_tasks, test.num_tasks) == (12, 8)
    train2, test2 = data.split_tasks(test_fraction=0.4, seed=3)
    assert torch.equal(train.labels, train2.labels) and torch.equal(test.labels, test2.labels)
    for a, b in zip(test.outputs, test2.outputs, strict=True):
        assert torch.equal(a, b)
    # together the two parts are exactly the original tasks
    all_y = sorted(float(o[0]) for o in train.outputs + test.outputs)
    assert all_y == sorted(float(o[0]) for o in data.outputs)
    _, test3 = data.split_tasks(test_fraction=0.4, seed=4)
    assert not all(torch.equal(a, b) for a, b in zip(test.outputs, test3.outputs, strict=True))
    with pytest.raises(ValueError, match="test_fraction"):
        data.split_tasks(test_fraction=1.0)


def test_split_points_sorts_and_splits():
    data = _toy()
    observed, held_out = data.split_points(2)
    assert observed.num_points == [2, 2, 2] and held_out.num_points == [2, 0, 1]
    assert observed.inputs[0][:, 0].tolist() == [0.0, 1.0]
    assert observed.outputs[0].tolist() == [0.0, 10.0]
    assert held_out.inputs[0][:, 0].tolist() == [2.0, 3.0] and held_out.outputs[0].tolist() == [20.0, 30.0]
    assert held_out.inputs[1].shape == (0, 2)  # task 1 fully observed: empty held-out part
    assert observed.outputs[1].tolist() == [40.0, 50.0]
    assert held_out.names == data.names and torch.equal(held_out.labels, data.labels)
    # fraction: round(0.5 * [4, 2, 3]) = [2, 1, 2]
    observed, held_out = data.split_points(0.5)
    assert observed.num_points == [2, 1, 2] and held_out.num_points == [2, 1, 1]
    # at least one observed point even for tiny fractions
    observed, _ = data.split_points(0.01)
    assert observed.num_points == [1, 1, 1]
    # only the held-out object may hold empty tasks
    with pytest.raises(ValueError, match="Task 0 is empty"):
        MultiTaskData([torch.zeros(0, 1)], [torch.zeros(0)])
    for bad, exc in ((0, ValueError), (1.5, ValueError), (True, TypeError), ("2", TypeError)):
        with pytest.raises(exc, match="num_observed"):
            data.split_points(bad)


# ---------------------------------------------------------------- simulation


def test_simulate_shapes_and_metadata():
    data = simulate(num_tasks=12, num_clusters=3, num_points=15, seed=0)
    assert data.num_tasks == 12 and data.dim == 1
    assert all(x.shape == (15, 1) and x.dtype == torch.float64 for x in data.inputs)
    assert all(y.shape == (15,) and y.dtype == torch.float64 for y in data.outputs)
    assert data.grid.shape == (201, 1) and data.mean_curves.shape == (3, 201)
    assert data.labels.shape == (12,) and data.labels.dtype == torch.long
    assert torch.bincount(data.labels).tolist() == [4, 4, 4]
    assert all(bool((x[1:, 0] > x[:-1, 0]).all()) for x in data.inputs)  # sorted, distinct
    assert float(data.grid.min()) == 0.0 and float(data.grid.max()) == 10.0
    assert simulate_multitask is multitask.simulate


def test_simulate_reproducible_and_seed_dependent():
    a, b, c = simulate(seed=5), simulate(seed=5), simulate(seed=6)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.mean_curves, b.mean_curves)
    assert all(torch.equal(x, y) for x, y in zip(a.outputs, b.outputs, strict=True))
    assert not torch.allclose(a.mean_curves, c.mean_curves)
    assert not all(torch.allclose(x, y) for x, y in zip(a.outputs, c.outputs, strict=True))


def test_simulate_does_not_touch_global_rng():
    state = torch.random.get_rng_state()
    simulate(num_tasks=6, num_clusters=2, num_points=5, seed=0)
    assert torch.equal(state, torch.random.get_rng_state())


def test_simulate_common_versus_irregular_grid():
    common = simulate(num_tasks=10, num_clusters=2, num_points=20, common_grid=True, seed=2)
    assert all(torch.equal(x, common.inputs[0]) for x in common.inputs)
    irregular = simulate(num_tasks=10, num_clusters=2, num_points=20, common_grid=False, seed=2)
    assert len({tuple(x.squeeze(-1).tolist()) for x in irregular.inputs}) == 10
    grid_values = set(irregular.grid.squeeze(-1).tolist())
    assert all(set(x.squeeze(-1).tolist()) <= grid_values for x in irregular.inputs)


@pytest.mark.parametrize("shared_mean_hp", [True, False])
@pytest.mark.parametrize("shared_task_hp", [True, False])
def test_simulate_hyperparameter_sharing(shared_mean_hp, shared_task_hp):
    data = simulate(
        num_tasks=8,
        num_clusters=4,
        num_points=10,
        common_grid=False,
        shared_mean_hp=shared_mean_hp,
        shared_task_hp=shared_task_hp,
        seed=3,
    )
    assert set(data.labels.tolist()) == {0, 1, 2, 3}
    assert all(torch.isfinite(y).all() for y in data.outputs)
    # cluster means are GP draws around lines with intercepts in [20, 30] and |slope| <= 2
    assert -20.0 - 15.0 < float(data.mean_curves.min()) and float(data.mean_curves.max()) < 50.0 + 15.0


def test_simulate_custom_grid_2d():
    g = torch.stack(torch.meshgrid(torch.linspace(0, 1, 6), torch.linspace(0, 1, 5), indexing="ij"), -1)
    data = simulate(num_tasks=4, num_clusters=2, num_points=7, grid=g.reshape(-1, 2), seed=0)
    assert data.dim == 2 and data.grid.shape == (30, 2) and data.mean_curves.shape == (2, 30)


def test_simulate_cluster_means_match_mean_curves():
    K = 3
    data = simulate(num_tasks=60 * K, num_clusters=K, num_points=30, noise_sd_range=(0.0, 0.1), seed=0)
    idx = torch.searchsorted(data.grid[:, 0].contiguous(), data.inputs[0][:, 0].contiguous())
    assert torch.allclose(data.grid[idx], data.inputs[0])
    Y = torch.stack(data.outputs)  # M x N (common grid)
    spread = float((data.mean_curves[:, idx].max(0).values - data.mean_curves[:, idx].min(0).values).mean())
    for k in range(K):
        emp = Y[data.labels == k].mean(0)
        err = (emp - data.mean_curves[k, idx]).abs()
        # task processes have variance <= e^2, so the mean of 60 tasks has sd <= ~0.35
        assert float(err.mean()) < 0.6 and float(err.max()) < 1.5, (k, err)
    assert spread > 1.0  # the check above is meaningful: clusters differ by more than the error


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(num_points=202), ValueError, "num_points"),
        (dict(num_points=0), ValueError, "num_points"),
        (dict(num_clusters=0), ValueError, "num_clusters"),
        (dict(num_tasks=2, num_clusters=3), ValueError, "num_tasks"),
        (dict(num_tasks=2.0), TypeError, "num_tasks"),
        (dict(noise_sd_range=(0.5, 0.1)), ValueError, "noise_sd_range"),
        (dict(noise_sd_range=(-1.0, 0.1)), ValueError, "noise_sd_range"),
        (dict(grid=torch.zeros(5)), ValueError, "grid"),
        (dict(grid=torch.zeros(40, 1), num_points=3), ValueError, "duplicated"),
        (dict(seed=1.0), TypeError, "seed"),
        (dict(common_grid=1), TypeError, "common_grid"),
    ],
)
def test_simulate_argument_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        simulate(**kwargs)


# ---------------------------------------------------------------- fertility (shared data)


@pytest.fixture(scope="module")
def fert() -> MultiTaskData:
    try:
        return fertility()
    except FileNotFoundError as e:
        pytest.skip(f"fertility data not available: {e}")


def test_fertility_countries(fert):
    assert 180 <= fert.num_tasks <= 219
    assert fert.dim == 1 and fert.names is not None and len(fert.names) == fert.num_tasks
    X, y, _ = fert.to_long()
    assert X.dtype == y.dtype == torch.float64
    assert float(X.min()) >= 1960 and float(X.max()) <= 2013
    assert 0.0 < float(y.min()) and float(y.max()) < 10.0
    assert min(fert.num_points) >= 2
    assert any(n < 52 for n in fert.num_points)  # some countries have missing years
    assert "France" in fert.names and "Andorra" in fert.names
    france = fert.inputs[fert.names.index("France")]
    assert bool((france[1:, 0] > france[:-1, 0]).all())


def test_fertility_drops_aggregates(fert):
    banned = (
        "income", "World", "IDA", "IBRD", "dividend", "Euro area", "small states", "Sub-Saharan",
        "OECD", "Latin America & Caribbean", "Caribbean small", "& ", "members", "Fragile",
    )  # fmt: skip
    for name in fert.names:
        assert not any(b in name for b in banned), name
    everything = fertility(drop_aggregates=False, min_points=1)
    assert everything.num_tasks > fert.num_tasks
    assert any("OECD" in n for n in everything.names)


def test_fertility_min_points_and_missing_file(fert, tmp_path, monkeypatch):
    strict = fertility(min_points=40)
    assert strict.num_tasks < fert.num_tasks and min(strict.num_points) >= 40
    with pytest.raises(ValueError, match="min_points"):
        fertility(min_points=0)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        fertility(tmp_path)
    monkeypatch.setenv("GPVI_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="fertility.csv"):
        fertility()


def test_fertility_root_and_env_var(tmp_path, monkeypatch):
    folder = tmp_path / "fertility"
    folder.mkdir()
    (folder / "fertility.csv").write_text(
        "Country Name,Country Code,1960,1961,1962\n"
        'A,AAA,1.5,,2.5\n"Bahamas, The",BHS,3.0,2.0,1.0\nWorld,WLD,2.0,2.0,2.0\nB,BBB,,4.0,\n'
    )
    for data in (fertility(tmp_path), fertility(folder)):
        assert data.names == ["A", "Bahamas, The"]
        assert data.inputs[0].squeeze(-1).tolist() == [1960.0, 1962.0]
        assert data.outputs[1].tolist() == [3.0, 2.0, 1.0]
    monkeypatch.setenv("GPVI_DATA_DIR", str(tmp_path))
    assert fertility(drop_aggregates=False, min_points=1).names == ["A", "Bahamas, The", "World", "B"]
