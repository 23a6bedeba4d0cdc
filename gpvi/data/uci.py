"""UCI regression benchmarks with the ten fixed train/test splits used across the GP literature.

The data lives in a folder with one sub-folder per data set::

    <root>/<name>/data.csv.gz       # N x (d + 1), comma separated, no header; last column = target
    <root>/<name>/test_mask.csv.gz  # N x 10 of 0/1; column s marks the TEST rows of split s

The folder is found, in order, from the ``root`` argument, the ``GPVI_DATA_DIR`` environment
variable (the shared data folder that contains ``uci/``, or the ``uci`` folder itself), and finally
``../shared/data/uci`` relative to the repository root.

Inputs and targets are standardised with the statistics of the *training* rows of the chosen split
only (population std, ``ddof=0``); RMSE / NLPD computed on ``test_Y`` are therefore in standardised
units, and :meth:`UCIData.unstandardize_y` maps predictions back.

Example::

    from gpvi.data import uci
    data = uci.load("yacht", split=0)
    data.train_X.shape  # torch.Size([277, 6])
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["ENV_VAR", "N_SPLITS", "UCIData", "available", "default_root", "load"]

ENV_VAR = "GPVI_DATA_DIR"
N_SPLITS = 10
_DATA_FILE = "data.csv.gz"
_MASK_FILE = "test_mask.csv.gz"


@dataclass(frozen=True, eq=False, repr=False)
class UCIData:
    """One train/test split of a UCI data set, standardised with training statistics.

    Attributes:
        train_X: `n x d` standardised training inputs.
        train_Y: `n x 1` standardised training targets.
        test_X: `t x d` test inputs (standardised with the training statistics).
        test_Y: `t x 1` test targets (standardised with the training statistics).
        name: Data set name (the folder name).
        split: Split index in ``0..9``.
        x_mean: `d` training-split input mean.
        x_std: `d` training-split input std (1 where a column is constant).
        y_mean: `1` training-split target mean.
        y_std: `1` training-split target std.
    """

    train_X: Tensor
    train_Y: Tensor
    test_X: Tensor
    test_Y: Tensor
    name: str
    split: int
    x_mean: Tensor
    x_std: Tensor
    y_mean: Tensor
    y_std: Tensor

    @property
    def d(self) -> int:
        """Number of input dimensions."""
        return self.train_X.shape[-1]

    @property
    def n_train(self) -> int:
        """Number of training rows."""
        return self.train_X.shape[0]

    @property
    def n_test(self) -> int:
        """Number of test rows."""
        return self.test_X.shape[0]

    def unstandardize_y(self, y: Tensor) -> Tensor:
        """Map standardised targets (any shape ending in `1`, or a scalar) to original units."""
        return y * self.y_std.to(y) + self.y_mean.to(y)

    def __repr__(self) -> str:
        return (
            f"UCIData(name={self.name!r}, split={self.split}, n_train={self.n_train}, "
            f"n_test={self.n_test}, d={self.d}, dtype={self.train_X.dtype}, "
            f"device={self.train_X.device})"
        )


def default_root() -> Path:
    """The fallback folder ``<repo root>/../shared/data/uci`` (the repo root holds ``gpvi/``)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "uci"


def _env_root(name: str | None = None) -> Path | None:
    """The uci folder named by ``GPVI_DATA_DIR`` (the folder holding ``uci/``, or uci itself)."""
    value = os.environ.get(ENV_VAR)
    if not value:
        return None
    base = Path(value).expanduser()
    if name is not None:
        if (base / "uci" / name).is_dir():
            return base / "uci"
        if (base / name).is_dir():
            return base
    return base / "uci" if (base / "uci").is_dir() else base


def _resolve_root(root: str | os.PathLike | None, name: str | None = None) -> tuple[Path, str]:
    """Return the uci folder to use and a phrase saying where it came from."""
    if root is not None:
        return Path(root).expanduser(), "the `root` argument"
    env = _env_root(name)
    if env is not None:
        return env, f"${ENV_VAR}"
    return default_root(), "the default location"


def _list_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / _DATA_FILE).is_file())


def available(root: str | os.PathLike | None = None) -> list[str]:
    """Sorted names of the data sets found in the uci folder; ``[]`` if the folder is missing."""
    folder, _ = _resolve_root(root)
    if not folder.is_dir():
        return []
    return _list_names(folder)


@functools.lru_cache(maxsize=8)
def _read_arrays(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``data.csv.gz`` (`N x (d+1)`) and ``test_mask.csv.gz`` (`N x 10`, bool); cached."""
    path = Path(folder)
    for fname in (_DATA_FILE, _MASK_FILE):
        if not (path / fname).is_file():
            raise FileNotFoundError(f"Missing file {path / fname} for UCI data set {path.name!r}.")
    data = np.loadtxt(path / _DATA_FILE, delimiter=",", dtype=np.float64, ndmin=2)
    mask = np.loadtxt(path / _MASK_FILE, delimiter=",", dtype=np.float64, ndmin=2)
    if data.shape[1] < 2:
        raise ValueError(f"{path / _DATA_FILE} needs at least 2 columns, got {data.shape[1]}.")
    if mask.shape[0] != data.shape[0]:
        raise ValueError(f"{path / _MASK_FILE} has {mask.shape[0]} rows but {path / _DATA_FILE} has {data.shape[0]}.")
    if not np.isin(mask, (0.0, 1.0)).all():
        raise ValueError(f"{path / _MASK_FILE} must contain only 0/1 entries.")
    if not np.isfinite(data).all():
        raise ValueError(f"{path / _DATA_FILE} contains NaN or inf entries.")
    mask_b = mask.astype(bool)
    data.setflags(write=False)
    mask_b.setflags(write=False)
    return data, mask_b


def load(
    name: str,
    split: int = 0,
    root: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> UCIData:
    """Load split ``split`` of UCI data set ``name``, standardised with training statistics.

    Args:
        name: Data set folder name, e.g. ``"yacht"`` (see `gpvi.data.available_uci`).
        split: Which of the ten fixed splits, ``0..9``; its test rows are ~10% of the data.
        root: Folder holding one sub-folder per data set; defaults to ``$GPVI_DATA_DIR`` or
            ``../shared/data/uci`` relative to the repository root.
        dtype: Floating dtype of the returned tensors (float64 by default).
        device: Device of the returned tensors.

    Returns:
        A :class:`UCIData` with `n x d` / `n x 1` training and `t x d` / `t x 1` test tensors.

    Raises:
        FileNotFoundError: The uci folder (or a file of the data set) does not exist.
        ValueError: Unknown ``name``, or ``split`` outside ``0..9``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string, got {name!r}.")
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)):
        raise TypeError(f"`split` must be an int in 0..{N_SPLITS - 1}, got {split!r}.")
    if not 0 <= int(split) < N_SPLITS:
        raise ValueError(f"`split` must be in 0..{N_SPLITS - 1}, got {split}.")
    if not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a floating dtype, got {dtype}.")

    folder, source = _resolve_root(root, name)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"UCI data folder {folder} (from {source}) does not exist. Pass `root=` pointing at a "
            f"folder with one sub-folder per data set, or set the {ENV_VAR} environment variable "
            "(to the shared data folder containing `uci/`, or to the uci folder itself)."
        )
    set_dir = folder / name
    if not set_dir.is_dir() and (folder / name.lower()).is_dir():
        set_dir = folder / name.lower()
    if not set_dir.is_dir():
        names = _list_names(folder)
        raise ValueError(
            f"Unknown UCI data set {name!r} in {folder}; available: {', '.join(names) if names else '(none)'}."
        )

    data, mask = _read_arrays(str(set_dir.resolve()))
    if mask.shape[1] <= split:
        raise ValueError(f"{set_dir / _MASK_FILE} has only {mask.shape[1]} split columns.")
    test = mask[:, split]
    train = ~test
    if train.sum() < 1 or test.sum() < 1:
        raise ValueError(f"Split {split} of {name!r} has an empty train or test set.")

    train_arr, test_arr = data[train], data[test]
    mean = train_arr.mean(axis=0)
    std = train_arr.std(axis=0)
    std = np.where(std > 0, std, 1.0)

    def to_t(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    train_z = (train_arr - mean) / std
    test_z = (test_arr - mean) / std
    return UCIData(
        train_X=to_t(train_z[:, :-1]),
        train_Y=to_t(train_z[:, -1:]),
        test_X=to_t(test_z[:, :-1]),
        test_Y=to_t(test_z[:, -1:]),
        name=set_dir.name,
        split=int(split),
        x_mean=to_t(mean[:-1]),
        x_std=to_t(std[:-1]),
        y_mean=to_t(mean[-1:]),
        y_std=to_t(std[-1:]),
    )
