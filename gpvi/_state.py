"""Snapshots of a module's state: tensors cloned (detached), other entries (a model's extra state) deep-copied."""

from __future__ import annotations

import copy
from typing import Any

import torch


def clone_state(module: torch.nn.Module, prefix: str = "") -> dict[str, Any]:
    """A copy of ``module.state_dict()`` (the entries whose key starts with ``prefix``) that later changes
    to the module cannot alter; `load_state_dict` restores it."""
    return {
        k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
        for k, v in module.state_dict().items()
        if k.startswith(prefix)
    }


__all__ = ["clone_state"]
