"""Inducing features: the only thing a variational strategy needs to know about u.

A feature set defines M linear functionals u_m = L_m[f] of the GP and gives

    Kuu = Cov(u, u)        (*b, M, M)
    Kuf = Cov(u, f(X))     (*b, M, N)
    E[u]                   (*b, M)     (μ(Z) for point evaluations; 0 for most inter-domain features)

Strategies are written against these three methods (the design of GPflow's Kuu/Kuf dispatch), so
spherical or other inter-domain features plug into SVGP without touching it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from gpytorch.kernels import Kernel
from gpytorch.means import Mean
from gpytorch.module import Module
from torch import Tensor


class InducingFeatures(Module, ABC):
    """Abstract set of M inducing features."""

    @property
    @abstractmethod
    def num_inducing(self) -> int:
        """M, the number of features."""

    @property
    @abstractmethod
    def batch_shape(self):
        """Batch shape of the feature parameters."""

    @abstractmethod
    def Kuu(self, kernel: Kernel) -> Tensor:
        """Cov(u, u), dense (*b, M, M), without jitter."""

    @abstractmethod
    def Kuf(self, kernel: Kernel, X: Tensor) -> Tensor:
        """Cov(u, f(X)) for X (*b, N, D), dense (*b, M, N)."""

    @abstractmethod
    def prior_mean(self, mean_module: Mean) -> Tensor:
        """E[u] under the prior, (*b, M)."""

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the features' parameters or buffers (torch's default when they have none)."""
        for t in list(self.parameters()) + list(self.buffers()):
            return t.dtype
        return torch.get_default_dtype()

    @property
    def locations(self) -> Tensor | None:
        """Input-space locations (*b, M, D) if the features are point evaluations, else None."""
        return None
