"""Tests for `gpvi.data.uci`: real shared data (skipped when absent) and tiny fake data sets."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from gpvi.data import load_uci, uci


def _require(name: str) -> Path:
    """Skip unless the shared UCI copy (or $GPVI_DATA_DIR) holds ``name``; return its folder."""
    if name not in uci.available():
        pytest.skip(
            f"UCI data set {name!r} not found (looked in $GPVI_DATA_DIR or {uci.default_root()}); "
            "the shared data folder is absent on this machine."
        )
    root, _ = uci._resolve_root(None, name)
    return root / name


def _raw(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(folder / "data.csv.gz", delimiter=",")
    mask = np.loadtxt(folder / "test_mask.csv.gz", delimiter=",").astype(bool)
    return data, mask


def _write_fake(root: Path, name: str, n: int = 40, d: int = 3, seed: int = 0) -> np.ndarray:
    """Write a fake data set with ``n`` rows, ``d`` inputs (the last one constant), 10 splits."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, d + 1)) * 3.0 + 5.0
    data[:, d - 1] = 7.0  # constant input column
    mask = np.zeros((n, 10))
    mask[np.arange(n), np.arange(n) % 10] = 1.0
    folder = root / name
    folder.mkdir(parents=True)
    np.savetxt(folder / "data.csv.gz", data, delimiter=",")
    np.savetxt(folder / "test_mask.csv.gz", mask, delimiter=",", fmt="%d")
    return data


# ---------------------------------------------------------------- real data (shared folder)


def test_yacht_shapes_and_dtype():
    _require("yacht")
    data = uci.load("yacht", 0)
    assert data.d == 6
    assert data.train_X.shape[1] == data.test_X.shape[1] == 6
    assert data.train_Y.shape == (data.n_train, 1) and data.test_Y.shape == (data.n_test, 1)
    assert data.n_train + data.n_test == 308
    assert 0.85 < data.n_train / 308 < 0.95
    for t in (data.train_X, data.train_Y, data.test_X, data.test_Y, data.x_mean, data.y_std):
        assert t.dtype == torch.float64 and t.device.type == "cpu"
    assert data.x_mean.shape == data.x_std.shape == (6,)
    assert data.y_mean.shape == data.y_std.shape == (1,)
    assert data.name == "yacht" and data.split == 0


def test_training_split_standardisation():
    _require("yacht")
    data = uci.load("yacht", 2)
    for T in (data.train_X, data.train_Y):
        assert torch.allclose(T.mean(0), torch.zeros(T.shape[1], dtype=T.dtype), atol=1e-10)
        assert torch.allclose(T.std(0, unbiased=False), torch.ones(T.shape[1], dtype=T.dtype), atol=1e-10)
    # Test rows use the training statistics, so they are not exactly standardised themselves.
    assert not torch.allclose(data.test_Y.mean(0), torch.zeros(1, dtype=torch.float64), atol=1e-6)


def test_rows_partition_and_match_mask():
    folder = _require("yacht")
    raw, mask = _raw(folder)
    data = uci.load("yacht", 4)
    train = torch.cat([data.train_X, data.train_Y], -1) * torch.cat([data.x_std, data.y_std]) + torch.cat(
        [data.x_mean, data.y_mean]
    )
    test = torch.cat([data.test_X, data.test_Y], -1) * torch.cat([data.x_std, data.y_std]) + torch.cat(
        [data.x_mean, data.y_mean]
    )
    # Same rows, same order, as the mask column selects; together they are all rows exactly once.
    np.testing.assert_allclose(test.numpy(), raw[mask[:, 4]], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(train.numpy(), raw[~mask[:, 4]], rtol=1e-12, atol=1e-12)
    assert len(train) + len(test) == len(raw)
    np.testing.assert_allclose(data.unstandardize_y(data.test_Y).numpy(), raw[mask[:, 4], -1:])


def test_splits_differ_and_tile_the_data():
    _require("yacht")
    s0, s3 = uci.load("yacht", 0), uci.load("yacht", 3)
    assert s0.test_X.shape != s3.test_X.shape or not torch.equal(s0.test_X, s3.test_X)
    assert not torch.equal(s0.x_mean, s3.x_mean)
    # The ten test sets partition the rows (each row is a test row exactly once).
    assert sum(uci.load("yacht", s).n_test for s in range(10)) == 308


def test_parse_is_cached():
    _require("yacht")
    uci.load("yacht", 0)
    before = uci._read_arrays.cache_info()
    for s in range(1, 6):
        uci.load("yacht", s)
    after = uci._read_arrays.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 5


def test_dtype_and_repr():
    _require("servo")
    data = load_uci("servo", 1, dtype=torch.float32)
    assert data.train_X.dtype == data.test_Y.dtype == data.y_std.dtype == torch.float32
    text = repr(data)
    assert "servo" in text and "split=1" in text and "d=4" in text and len(text) < 200


def test_available_lists_shared_sets():
    _require("yacht")
    names = uci.available()
    assert names == sorted(names)
    assert {"yacht", "servo", "kin40k"} <= set(names)


# ---------------------------------------------------------------- fake data (tmp folders)


def test_root_argument_with_fake_dataset(tmp_path):
    raw = _write_fake(tmp_path, "toy", n=40, d=3)
    data = uci.load("toy", 0, root=tmp_path)
    assert data.n_train == 36 and data.n_test == 4 and data.d == 3
    train_raw = raw[np.arange(40) % 10 != 0]
    np.testing.assert_allclose(data.x_mean.numpy(), train_raw[:, :3].mean(0))
    # The constant column gets std 1 (so it standardises to zeros, not NaN).
    assert data.x_std[2].item() == 1.0
    assert torch.all(data.train_X[:, 2] == 0) and torch.isfinite(data.test_X).all()
    assert uci.available(tmp_path) == ["toy"]


def test_env_var_parent_and_uci_folder(tmp_path, monkeypatch):
    _write_fake(tmp_path / "uci", "toy")
    monkeypatch.setenv(uci.ENV_VAR, str(tmp_path))  # the folder that contains uci/
    assert uci.load("toy", 1).name == "toy"
    assert uci.available() == ["toy"]
    monkeypatch.setenv(uci.ENV_VAR, str(tmp_path / "uci"))  # the uci folder itself
    assert uci.load("toy", 2).n_test == 4
    assert uci.available() == ["toy"]


def test_root_argument_beats_env_var(tmp_path, monkeypatch):
    _write_fake(tmp_path / "a", "toy", n=20)
    _write_fake(tmp_path / "b", "toy", n=50)
    monkeypatch.setenv(uci.ENV_VAR, str(tmp_path / "a"))
    assert uci.load("toy").n_train + uci.load("toy").n_test == 20
    assert uci.load("toy", root=tmp_path / "b").n_test == 5


def test_missing_folder_raises_file_not_found(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere") as info:
        uci.load("yacht", 0, root=missing)
    assert "root=" in str(info.value) and uci.ENV_VAR in str(info.value)
    assert uci.available(missing) == []


def test_missing_env_folder_names_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(uci.ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match="gone"):
        uci.load("yacht")


def test_unknown_name_lists_available(tmp_path):
    _write_fake(tmp_path, "alpha")
    _write_fake(tmp_path, "beta")
    with pytest.raises(ValueError, match="alpha, beta"):
        uci.load("gamma", root=tmp_path)


def test_missing_mask_file(tmp_path):
    _write_fake(tmp_path, "toy")
    (tmp_path / "toy" / "test_mask.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="test_mask"):
        uci.load("toy", root=tmp_path)


def test_mask_row_mismatch(tmp_path):
    _write_fake(tmp_path, "toy", n=30)
    with gzip.open(tmp_path / "toy" / "test_mask.csv.gz", "wt") as fh:
        fh.write("1,0,0,0,0,0,0,0,0,0\n" * 29)
    with pytest.raises(ValueError, match="rows"):
        uci.load("toy", root=tmp_path)


@pytest.mark.parametrize("split", [-1, 10, 42])
def test_bad_split(tmp_path, split):
    _write_fake(tmp_path, "toy")
    with pytest.raises(ValueError, match="split"):
        uci.load("toy", split, root=tmp_path)


def test_split_type_error(tmp_path):
    _write_fake(tmp_path, "toy")
    with pytest.raises(TypeError):
        uci.load("toy", 1.5, root=tmp_path)  # type: ignore[arg-type]


def test_frozen(tmp_path):
    _write_fake(tmp_path, "toy")
    data = uci.load("toy", root=tmp_path)
    with pytest.raises(AttributeError):
        data.split = 3  # type: ignore[misc]
