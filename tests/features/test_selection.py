"""Inducing selection: k-means centres and greedy variance reduction (pivoted Cholesky) with fixed points."""

import pytest
import torch
from botorch.models.utils.inducing_point_allocators import GreedyVarianceReduction
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel

from gpvi.features.selection import greedy_variance_indices, kmeans_centres, select_inducing_points

DT = torch.float64


def _kernel(d, lengthscale=0.3, batch=None):
    batch = torch.Size() if batch is None else batch
    kernel = ScaleKernel(MaternKernel(2.5, ard_num_dims=d, batch_shape=batch), batch_shape=batch).to(DT)
    kernel.base_kernel.lengthscale = lengthscale
    return kernel


@pytest.mark.parametrize("lengthscale", [0.1, 0.4, 1.5])
def test_greedy_selection_is_botorchs_without_fixed_points(lengthscale):
    X = torch.rand(200, 3, generator=torch.Generator().manual_seed(0), dtype=DT)
    kernel = _kernel(3, lengthscale)
    ours = X[greedy_variance_indices(X, 30, kernel)]
    theirs = GreedyVarianceReduction().allocate_inducing_points(X, kernel, 30, input_batch_shape=torch.Size())
    assert torch.equal(ours, theirs)
    batched = ScaleKernel(RBFKernel(batch_shape=torch.Size([2])), batch_shape=torch.Size([2])).to(DT)
    theirs = GreedyVarianceReduction().allocate_inducing_points(X, batched, 12, input_batch_shape=torch.Size())
    assert torch.equal(X[greedy_variance_indices(X, 12, batched)], theirs)


def test_fixed_points_are_kept_and_conditioned_on():
    X = torch.rand(300, 2, generator=torch.Generator().manual_seed(1), dtype=DT)
    kernel = _kernel(2)
    fixed = X[:10]
    picked = greedy_variance_indices(X[10:], 15, kernel, fixed=fixed)
    assert len(picked) == 15 and len(set(picked.tolist())) == 15
    # the greedy choice after the fixed points: the largest conditional variance given them (and the
    # picks before it), checked densely for the first new point
    K = kernel(X).to_dense()
    Kf = K[:10, :10] + 1e-10 * torch.eye(10, dtype=DT)
    cond = K.diagonal()[10:] - (K[10:, :10] @ torch.linalg.solve(Kf, K[:10, 10:])).diagonal()
    assert int(picked[0]) == int(torch.argmax(cond))
    # a duplicate of a fixed point is never picked: its conditional variance is zero
    with_dup = torch.cat([fixed[:1], X[10:]])
    assert 0 not in greedy_variance_indices(with_dup, 15, kernel, fixed=fixed).tolist()


def test_selection_stops_when_the_pool_is_spanned():
    X = torch.tensor([[0.0], [0.0], [1.0], [1.0]], dtype=DT)  # two distinct inputs, duplicated
    assert len(greedy_variance_indices(X, 4, _kernel(1))) == 2


def test_kmeans_centres_are_distinct_and_select_dispatches():
    X = torch.rand(100, 2, generator=torch.Generator().manual_seed(2), dtype=DT)
    Z = kmeans_centres(X, 8, seed=0)
    assert Z.shape == (8, 2) and torch.unique(Z, dim=0).shape[0] == 8
    assert torch.equal(select_inducing_points(X, 8, "kmeans", _kernel(2), seed=0), Z)
    assert torch.equal(select_inducing_points(X, 500, "greedy", _kernel(2)), X)  # M >= N: Z = X
    with pytest.raises(ValueError, match="`inducing`"):
        select_inducing_points(X, 8, "nope", _kernel(2))
