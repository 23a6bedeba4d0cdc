"""Tests for `gpvi.data.classification`: sklearn-bundled sets and the seeded train/test split."""

from __future__ import annotations

import pytest
import torch

from gpvi.data import classification
from gpvi.data.classification import breast_cancer, digits, train_test_split


def test_breast_cancer():
    X, Y = breast_cancer()
    assert X.shape == (569, 30) and Y.shape == (569, 1)
    assert X.dtype == Y.dtype == torch.float64
    assert set(Y.unique().tolist()) == {0.0, 1.0}
    assert int(Y.sum().item()) == 357  # benign (label 1) count in the Wisconsin data
    torch.testing.assert_close(X.mean(0), torch.zeros(30, dtype=torch.float64))
    torch.testing.assert_close(X.std(0, unbiased=False), torch.ones(30, dtype=torch.float64))


def test_breast_cancer_dtype():
    X, Y = breast_cancer(dtype=torch.float32)
    assert X.dtype == Y.dtype == torch.float32


def test_digits_multiclass():
    X, Y = digits()
    assert X.shape == (1797, 64) and Y.shape == (1797, 1)
    assert X.min().item() == 0.0 and X.max().item() == 1.0
    assert set(Y.unique().tolist()) == {float(k) for k in range(10)}


def test_digits_one_vs_rest():
    _, labels = digits()
    X, Y = digits(one_vs_rest=3)
    assert X.shape == (1797, 64) and Y.shape == (1797, 1)
    assert set(Y.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(Y, (labels == 3).double())
    assert 0.08 < Y.mean().item() < 0.12


@pytest.mark.parametrize("bad", [-1, 10, 2.0, True])
def test_digits_rejects_bad_class(bad):
    with pytest.raises(ValueError):
        digits(one_vs_rest=bad)


def test_train_test_split_partition_and_reproducible():
    n = 50
    X = torch.arange(n, dtype=torch.float64).unsqueeze(-1).repeat(1, 2)
    Y = torch.arange(n, dtype=torch.float64).unsqueeze(-1)
    trX, trY, teX, teY = train_test_split(X, Y, test_fraction=0.2, seed=3)
    assert trX.shape == (40, 2) and trY.shape == (40, 1)
    assert teX.shape == (10, 2) and teY.shape == (10, 1)
    assert torch.equal(trX[:, :1], trY) and torch.equal(teX[:, :1], teY)  # rows stay paired
    ids = torch.cat([trY, teY]).squeeze(-1).long()
    assert torch.equal(ids.sort().values, torch.arange(n))  # disjoint, union = all rows
    again = train_test_split(X, Y, test_fraction=0.2, seed=3)
    assert torch.equal(again[3], teY)
    other = train_test_split(X, Y, test_fraction=0.2, seed=4)
    assert not torch.equal(other[3], teY)


def test_train_test_split_keeps_both_sides_nonempty_and_global_rng():
    X, Y = torch.randn(3, 1, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
    state = torch.get_rng_state()
    trX, _, teX, _ = train_test_split(X, Y, test_fraction=0.01)
    assert len(teX) == 1 and len(trX) == 2
    _, _, teX, _ = train_test_split(X, Y, test_fraction=0.99)
    assert len(teX) == 2
    assert torch.equal(state, torch.get_rng_state())


def test_train_test_split_errors():
    X = torch.zeros(10, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="rows"):
        train_test_split(X, torch.zeros(9, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(X, torch.zeros(10, 1, dtype=torch.float64), test_fraction=1.0)
    with pytest.raises(ValueError):
        train_test_split(X, torch.zeros(10, dtype=torch.float64))  # Y must be n x m
    with pytest.raises(TypeError):
        train_test_split(X, torch.zeros(10, 1, dtype=torch.float32))  # mixed dtypes
    with pytest.raises(TypeError):
        train_test_split(X.numpy(), torch.zeros(10, 1, dtype=torch.float64))


def test_public_names():
    assert set(classification.__all__) == {
        "ContinualTask",
        "breast_cancer",
        "digits",
        "split_digits",
        "train_test_split",
    }
