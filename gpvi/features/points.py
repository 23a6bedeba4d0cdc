"""Inducing points: u_m = f(z_m) at M pseudo-inputs Z (*b, M, D) (Snelson & Ghahramani 2006; Titsias 2009)."""

from __future__ import annotations

import torch
from gpytorch.kernels import Kernel
from gpytorch.means import Mean
from torch import Tensor

from gpvi._validation import check_tensor
from gpvi.core.kernels import cross_covariance
from gpvi.features.base import InducingFeatures


class InducingPoints(InducingFeatures):
    """Point evaluations of f at Z.

    Kuu = k(Z, Z), Kuf = k(Z, X), E[u] = μ(Z).

    Args:
        Z: (*b, M, D) inducing inputs.
        learn_locations: Whether Z is a trainable parameter (else a buffer).
    """

    def __init__(self, Z: Tensor, learn_locations: bool = True) -> None:
        super().__init__()
        check_tensor("Z", Z, ndim=tuple(range(2, 10)), shape_hint="`(*b) x M x D`")
        if learn_locations:
            self.register_parameter("Z", torch.nn.Parameter(Z.detach().clone()))
        else:  # kept as given: a conditioned model's Z may depend on differentiable inputs
            self.register_buffer("Z", Z)

    @property
    def num_inducing(self) -> int:
        return self.Z.shape[-2]

    @property
    def batch_shape(self) -> torch.Size:
        return self.Z.shape[:-2]

    @property
    def locations(self) -> Tensor:
        return self.Z

    def Kuu(self, kernel: Kernel) -> Tensor:
        """k(Z, Z) by `cross_covariance` (centred before scaling: gpytorch's RBF scales first, which in
        float32 far from the origin rounds Kuu to garbage while Kuf stays exact), made symmetric."""
        K = cross_covariance(kernel, self.Z, self.Z)
        return (K + K.mT) / 2

    def Kuf(self, kernel: Kernel, X: Tensor) -> Tensor:
        return cross_covariance(kernel, self.Z, X)

    def prior_mean(self, mean_module: Mean) -> Tensor:
        return mean_module(self.Z)

    def extended(self, Z_new: Tensor) -> InducingPoints:
        """A new feature set [Z; Z_new] (batch shapes broadcast), as a buffer (not trained).

        Z_new keeps its autograd graph (fantasy inputs are differentiated through).
        """
        batch = torch.broadcast_shapes(self.Z.shape[:-2], Z_new.shape[:-2])
        Z = torch.cat(
            [self.Z.detach().expand(*batch, *self.Z.shape[-2:]), Z_new.expand(*batch, *Z_new.shape[-2:])], dim=-2
        )
        return InducingPoints(Z, learn_locations=False)
