"""Dense reference computations for the identity tests."""

import torch
from gpytorch.distributions import MultivariateNormal

from gpvi import SVGP


def toy_data(n=15, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.linspace(-3, 3, n, dtype=torch.float64).unsqueeze(-1)
    Y = torch.sin(2 * X) + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return X, Y


def optimal_svgp_at_data(X, Y, noise=0.05, mean=0.3, jitter=1e-10):
    """SVGP with Z = X after one natural-gradient step of size 1 (the optimal q)."""
    model = SVGP(X, Y, outcome_transform=None, num_inducing=X.shape[0], learn_inducing=False, jitter=jitter)
    model.likelihood.noise = noise
    model.model.mean_module.constant.data.fill_(mean)
    model.train()
    model.natural_gradient_step(X, Y[:, 0], step=1.0)
    return model.eval()


def exact_gp(kernel, X, y, noise, mean, Xs):
    """Exact GP log marginal likelihood, predictive mean and covariance (dense algebra)."""
    n = X.shape[0]
    Ky = kernel(X).to_dense() + noise * torch.eye(n, dtype=X.dtype)
    lml = MultivariateNormal(mean * torch.ones(n, dtype=X.dtype), Ky).log_prob(y)
    ks = kernel(Xs, X).to_dense()
    mu = mean + ks @ torch.linalg.solve(Ky, y - mean)
    cov = kernel(Xs).to_dense() - ks @ torch.linalg.solve(Ky, ks.T)
    return lml, mu, cov
