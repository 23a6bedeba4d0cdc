"""Input checks shared by every public entry point.

Each check raises a `ValueError` or `TypeError` that names the argument and the expected shape or
range, before any computation happens (nothing is silently dropped or cast).
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(
    name: str,
    value: object,
    *,
    ndim: int | tuple[int, ...] | None = None,
    min_rows: int = 1,
    shape_hint: str = "",
    finite: bool = True,
) -> Tensor:
    """Check that ``value`` is a finite floating-point tensor with the given number of dimensions.

    Args:
        name: The argument's name, used in error messages.
        value: The object to check.
        ndim: Allowed number of dimensions (an int, or a tuple of allowed ints); None allows any.
        min_rows: Minimum size of the second-to-last dimension (the data dimension) for ndim >= 2,
            or of the only dimension for 1-D tensors.
        shape_hint: Human-readable expected shape, e.g. "`n x d`", quoted in messages.
        finite: Reject NaN and inf entries.

    Returns:
        The tensor, unchanged.
    """
    hint = f" of shape {shape_hint}" if shape_hint else ""
    if not isinstance(value, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor{hint}, got {type(value).__name__}.")
    if value.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"`{name}` must be a floating-point tensor, float64 (recommended) or float32, got dtype {value.dtype}; "
            f"convert it with `{name}.double()`."
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if value.dim() not in allowed:
            extra = f" (use `{name}.unsqueeze(-1)` for a 1-D tensor)" if 2 in allowed and value.dim() == 1 else ""
            raise ValueError(
                f"`{name}` must have {' or '.join(map(str, allowed))} dimensions{hint}, "
                f"got shape {tuple(value.shape)}{extra}."
            )
    rows = value.shape[-2] if value.dim() >= 2 else (value.shape[0] if value.dim() == 1 else 1)
    if rows < min_rows or value.numel() == 0:
        raise ValueError(f"`{name}` is empty{hint}: got shape {tuple(value.shape)}.")
    if finite and not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).sum().item()
        raise ValueError(f"`{name}` contains {bad} NaN or inf entries; remove or impute them first.")
    return value


def check_same_dtype(**tensors: Tensor) -> None:
    """Raise a `TypeError` when the named tensors do not share one dtype."""
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        desc = ", ".join(f"`{n}` is {d}" for n, d in dtypes.items())
        raise TypeError(f"Mixed dtypes: {desc}; convert them to one dtype (float64 recommended).")


def check_train_data(train_X: object, train_Y: object) -> tuple[Tensor, Tensor]:
    """Validate BoTorch-style training data: ``train_X`` `n x d`, ``train_Y`` `n x m`."""
    X = check_tensor("train_X", train_X, ndim=2, shape_hint="`n x d`")
    Y = check_tensor("train_Y", train_Y, ndim=2, shape_hint="`n x m`")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"`train_X` has {X.shape[0]} rows but `train_Y` has {Y.shape[0]}; "
            "they must have the same number n of rows (`train_X`: `n x d`, `train_Y`: `n x m`)."
        )
    check_same_dtype(train_X=X, train_Y=Y)
    return X, Y


def reject_unknown(options: dict, allowed: set[str], where: str) -> None:
    """Raise `TypeError` for keyword options that ``where`` does not accept."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"{where} got unexpected option(s) {unknown}; allowed: {sorted(allowed)}.")
