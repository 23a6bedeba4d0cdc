"""Scoped torch defaults: code whose result must not depend on the caller's global settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Set torch's default dtype inside the block and restore the caller's after it.

    Some library code takes the default dtype whatever its arguments say: BoTorch's test functions
    build their constants with ``torch.tensor(...)`` before casting (Hartmann's 0.05 and 1.2 lose
    digits in float32), and torch's scrambled Sobol engine draws at the default precision.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
