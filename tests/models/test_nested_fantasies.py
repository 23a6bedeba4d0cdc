"""Conditioning a conditioned model: independent of the original, conditionable again, exact.

Before, `c.condition_on_observations(...)` on a conditioned model raised a deepcopy error, BoTorch's
`fantasize` on a fantasy model (multi-step lookahead) hit it too, and a backward pass through a
fantasy model wrote `.grad` into the original model's parameters.
"""

import torch
from botorch.sampling import SobolQMCNormalSampler
from torch.testing import assert_close

from tests.helpers import exact_gp, optimal_svgp_at_data, toy_data

DT = torch.float64
NOISE, MEAN = 0.05, 0.3


def _levels():
    A = torch.tensor([[0.5], [3.5]], dtype=DT)
    B = torch.tensor([[-1.2]], dtype=DT)
    C = torch.tensor([[2.2], [-3.3], [0.1]], dtype=DT)
    ys = [
        torch.tensor([[1.0], [-1.0]], dtype=DT),
        torch.tensor([[0.3]], dtype=DT),
        torch.tensor([[0.2], [0.4], [-0.6]], dtype=DT),
    ]
    return [A, B, C], ys


def test_three_levels_deep_is_the_exact_posterior_on_the_union():
    X, Y = toy_data()
    model = optimal_svgp_at_data(X, Y, noise=NOISE, mean=MEAN)
    Xs = torch.linspace(-4, 4, 9, dtype=DT).unsqueeze(-1)
    inputs, targets = _levels()
    current, seen_X, seen_Y = model, [X], [Y]
    for depth, (Xn, Yn) in enumerate(zip(inputs, targets, strict=True), start=1):
        current = current.condition_on_observations(Xn, Yn)
        seen_X.append(Xn)
        seen_Y.append(Yn)
        _, mu, cov = exact_gp(model.model.covar_module, torch.cat(seen_X), torch.cat(seen_Y)[:, 0], NOISE, MEAN, Xs)
        post = current.posterior(Xs)
        assert_close(post.mean[:, 0], mu, rtol=1e-6, atol=1e-7, msg=f"depth {depth}")
        assert_close(post.mvn.covariance_matrix, cov, rtol=1e-6, atol=1e-7, msg=f"depth {depth}")


def test_gradients_flow_to_new_inputs_and_never_into_the_original():
    X, Y = toy_data()
    model = optimal_svgp_at_data(X, Y, noise=NOISE, mean=MEAN)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    A = torch.tensor([[0.5], [3.5]], dtype=DT, requires_grad=True)
    B = torch.tensor([[-1.2]], dtype=DT, requires_grad=True)
    nested = model.condition_on_observations(A, torch.ones(2, 1, dtype=DT))
    nested = nested.condition_on_observations(B, torch.zeros(1, 1, dtype=DT))
    nested.posterior(torch.tensor([[0.0], [1.0]], dtype=DT)).variance.sum().backward()
    assert A.grad is not None and A.grad.abs().sum() > 0
    assert B.grad is not None and B.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key

    # finite differences of the nested posterior variance in B
    def variance_at(b):
        first = model.condition_on_observations(A.detach(), torch.ones(2, 1, dtype=DT))
        second = first.condition_on_observations(b, torch.zeros(1, 1, dtype=DT))
        return second.posterior(torch.tensor([[0.0], [1.0]], dtype=DT)).variance.sum().detach()

    h = 1e-6
    fd = (variance_at(B.detach() + h) - variance_at(B.detach() - h)) / (2 * h)
    assert_close(B.grad[0, 0], fd, rtol=1e-4, atol=1e-8)


def test_botorch_fantasize_on_a_fantasy_model():
    X, Y = toy_data()
    model = optimal_svgp_at_data(X, Y, noise=NOISE, mean=MEAN)
    first = model.fantasize(torch.rand(2, 1, dtype=DT), SobolQMCNormalSampler(torch.Size([3])))
    second = first.fantasize(torch.rand(1, 1, dtype=DT), SobolQMCNormalSampler(torch.Size([2])))
    assert second.batch_shape == torch.Size([2, 3])
    post = second.posterior(torch.rand(5, 1, dtype=DT))
    assert post.mean.shape == (2, 3, 5, 1) and (post.variance > 0).all()


def test_botorch_fantasize_with_an_observation_noise_tensor():
    """BoTorch passes ``noise`` expanded to Y's shape without the sample dimension: it broadcasts."""
    X, Y = toy_data()
    model = optimal_svgp_at_data(X, Y, noise=NOISE, mean=MEAN)
    noise = torch.full((3, 1), 0.01, dtype=DT)
    fantasy = model.fantasize(
        torch.rand(3, 1, dtype=DT), SobolQMCNormalSampler(torch.Size([4])), observation_noise=noise
    )
    assert fantasy.batch_shape == torch.Size([4])
    assert (fantasy.posterior(torch.rand(5, 1, dtype=DT)).variance > 0).all()
