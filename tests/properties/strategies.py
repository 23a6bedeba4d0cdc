"""Hypothesis strategies for the property tests of `tests.properties.test_models`.

Every random tensor is drawn from a `torch.Generator` seeded by a drawn integer, so an example is
fully described by the values hypothesis prints (and shrinks): seed, shapes, scales, shifts, dtype
and the degeneracies switched on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Scales of X and Y: 1e-6 .. 1e6 by decades.
SCALE_EXPONENTS = st.integers(min_value=-6, max_value=6)
#: Shifts of X and Y: 0 or ±10^k, k = -6 .. 6.
SHIFTS = st.one_of(
    st.just(0.0),
    st.builds(lambda sign, k: sign * 10.0**k, st.sampled_from([-1.0, 1.0]), st.integers(min_value=-6, max_value=6)),
)


class Dataset:
    """Training data and the points to predict at / condition on, with how they were made.

    Not a dataclass, so that hypothesis prints the `build_dataset` call that replays it, not the tensors.
    """

    def __init__(self, X, Y, X_test, X_new, Y_new, info: dict) -> None:
        self.X: torch.Tensor = X  # n x d
        self.Y: torch.Tensor = Y  # n x m
        self.X_test: torch.Tensor = X_test  # (*b) x q x d
        self.X_new: torch.Tensor = X_new  # n' x d (for condition_on_observations)
        self.Y_new: torch.Tensor = Y_new  # n' x m
        self.info = info

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example: a call that replays it
        return "build_dataset(" + ", ".join(f"{k}={v!r}" for k, v in self.info.items()) + ")"

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def m(self) -> int:
        return self.Y.shape[1]


def _targets(U: torch.Tensor, m: int, g: torch.Generator, noise: float) -> torch.Tensor:
    """A smooth function of unit-scaled inputs U (`n x d`), m outputs, plus Gaussian noise."""
    w = torch.linspace(1.0, 2.0, U.shape[1], dtype=torch.float64)
    base = torch.stack([torch.sin(3.0 * (U * w).sum(-1) + k) for k in range(m)], dim=-1)
    return base + noise * torch.randn(base.shape, generator=g, dtype=torch.float64)


@st.composite
def datasets(
    draw,
    *,
    max_n: int = 60,
    max_d: int = 4,
    max_m: int = 2,
    min_n: int = 1,
    dtypes: tuple[str, ...] = ("float32", "float64"),
    extreme_scales: bool = True,
    labels: bool = False,
    x_scale_exponents: st.SearchStrategy[int] = SCALE_EXPONENTS,
    x_shifts: st.SearchStrategy[float] = SHIFTS,
) -> Dataset:
    """Valid data: n in [min_n, max_n], d in [1, max_d], m in [1, max_m], scales, shifts, dtype and degeneracies.

    ``labels=True`` gives Bernoulli labels in {0, 1} (m = 1; possibly all equal) instead of real targets.
    """
    n = draw(st.integers(min_value=min_n, max_value=max_n), label="n")
    d = draw(st.integers(min_value=1, max_value=max_d), label="d")
    m = 1 if labels else draw(st.integers(min_value=1, max_value=max_m), label="m")
    dtype_name = draw(st.sampled_from(dtypes), label="dtype")
    seed = draw(st.integers(min_value=0, max_value=2**16), label="seed")
    if extreme_scales:
        x_exp, x_shift = draw(x_scale_exponents, label="x_scale_exp"), draw(x_shifts, label="x_shift")
        y_exp, y_shift = draw(SCALE_EXPONENTS, label="y_scale_exp"), draw(SHIFTS, label="y_shift")
    else:
        x_exp, x_shift, y_exp, y_shift = 0, 0.0, 0, 0.0
    duplicates = draw(st.integers(min_value=0, max_value=max(n - 1, 0)), label="duplicate_rows")
    constant_cols = draw(st.lists(st.integers(0, d - 1), max_size=d, unique=True), label="constant_columns")
    constant_y = draw(st.booleans(), label="constant_targets")
    noise = draw(st.sampled_from([0.0, 0.1]), label="noise")  # 0.0: noise-free targets
    q = draw(st.integers(min_value=1, max_value=5), label="q")
    far = draw(st.sampled_from([0.0, 3.0, 100.0]), label="test_offset")  # test inputs beyond the data
    batch = draw(st.sampled_from([(), (2,)]), label="test_batch")
    n_new = draw(st.integers(min_value=1, max_value=3), label="n_new")
    new_from_train = draw(st.booleans(), label="new_points_duplicate_training_rows")

    return build_dataset(
        n,
        d,
        m,
        dtype_name,
        seed,
        x_exp,
        x_shift,
        y_exp,
        y_shift,
        duplicates,
        constant_cols,
        constant_y,
        noise,
        labels,
        q,
        batch,
        far,
        n_new,
        new_from_train,
    )


def build_dataset(
    n: int,
    d: int,
    m: int,
    dtype_name: str,
    seed: int,
    x_exp: int = 0,
    x_shift: float = 0.0,
    y_exp: int = 0,
    y_shift: float = 0.0,
    duplicates: int = 0,
    constant_cols: list[int] | tuple[int, ...] = (),
    constant_y: bool = False,
    noise: float = 0.0,
    labels: bool = False,
    q: int = 1,
    batch: tuple[int, ...] = (),
    far: float = 0.0,
    n_new: int = 1,
    new_from_train: bool = False,
) -> Dataset:
    """The dataset `datasets` draws for these values (deterministic: use it to replay an example)."""
    g = torch.Generator().manual_seed(seed)
    U = torch.rand(n, d, generator=g, dtype=torch.float64)
    if duplicates:  # the last rows repeat earlier ones
        src = torch.randint(0, n - duplicates, (duplicates,), generator=g)
        U[n - duplicates :] = U[src]
    for j in constant_cols:
        U[:, j] = 0.5
    if labels:
        Y = (_targets(U, 1, g, noise) > 0).double()
        if constant_y:
            Y = torch.full_like(Y, float(seed % 2))
    else:
        Y = _targets(U, m, g, noise)
        if constant_y:
            Y = torch.full_like(Y, 0.3)
        Y = Y * 10.0**y_exp + y_shift
    U_test = torch.rand(*batch, q, d, generator=g, dtype=torch.float64) + far
    U_new = (
        U[:n_new].clone() if new_from_train and n >= n_new else torch.rand(n_new, d, generator=g, dtype=torch.float64)
    )
    Y_new = (
        (_targets(U_new, m, g, noise) > 0).double() if labels else _targets(U_new, m, g, noise) * 10.0**y_exp + y_shift
    )
    for Uk in (U_test, U_new):
        for j in constant_cols:
            Uk[..., j] = 0.5

    def scale(U_: torch.Tensor) -> torch.Tensor:
        return U_ * 10.0**x_exp + x_shift

    dtype = DTYPES[dtype_name]
    info = dict(
        n=n,
        d=d,
        m=m,
        dtype_name=dtype_name,
        seed=seed,
        x_exp=x_exp,
        x_shift=x_shift,
        y_exp=y_exp,
        y_shift=y_shift,
        duplicates=duplicates,
        constant_cols=list(constant_cols),
        constant_y=constant_y,
        noise=noise,
        labels=labels,
        q=q,
        batch=tuple(batch),
        far=far,
        n_new=n_new,
        new_from_train=new_from_train,
    )  # build_dataset(**info) replays it
    return Dataset(
        scale(U).to(dtype),
        Y.to(dtype),
        scale(U_test).to(dtype),
        scale(U_new).to(dtype),
        Y_new.to(dtype),
        info,
    )


# -- bad inputs ---------------------------------------------------------------------------------------
#: Classes of bad array input. Each maps (a good `n x k` tensor, a generator) to a bad value and the
#: exception type a checked entry point must raise (with the argument's name, backticked, in the message).
def _with(value: float):
    def corrupt(T: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        T = T.clone()
        flat = T.view(-1)
        k = int(torch.randint(0, flat.numel(), (1,), generator=g))
        flat[k] = value
        return T

    return corrupt


BAD_ARRAYS: dict[str, tuple] = {
    "nan": (_with(math.nan), ValueError),
    "+inf": (_with(math.inf), ValueError),
    "-inf": (_with(-math.inf), ValueError),
    "empty-rows": (lambda T, g: T[:0], ValueError),
    "zero-columns": (lambda T, g: T[:, :0], ValueError),
    "1-D": (lambda T, g: T[:, 0], ValueError),
    "0-D": (lambda T, g: T[0, 0], ValueError),
    "integer-dtype": (lambda T, g: (T * 10).long(), TypeError),
    "bool-dtype": (lambda T, g: T > T.mean(), TypeError),
    "complex-dtype": (lambda T, g: T.to(torch.complex128), TypeError),
    "list": (lambda T, g: T.tolist(), TypeError),
    "numpy": (lambda T, g: T.numpy(), TypeError),
    "none": (lambda T, g: None, TypeError),
    "float16-dtype": (lambda T, g: T.half(), TypeError),  # no Cholesky in half precision on CPU
    "bfloat16-dtype": (lambda T, g: T.bfloat16(), TypeError),
}


def describe(x: object) -> str:
    """A short description of a (bad) value for assertion messages."""
    if isinstance(x, torch.Tensor):
        return f"Tensor(shape={tuple(x.shape)}, dtype={x.dtype})"
    if isinstance(x, np.ndarray):
        return f"ndarray(shape={x.shape})"
    return type(x).__name__
