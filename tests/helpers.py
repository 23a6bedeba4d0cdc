"""Dense reference computations for the identity tests."""

import functools

import torch
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood, SoftmaxLikelihood

import gpvi


def plain(cls):
    """``cls`` (a gpvi model class) built with the identity tests' prior-free modules when none are given.

    The default modules are SingleTaskGP's, whose priors add log p(θ) to every ELBO; the identities
    compare the ELBO with a dense log marginal likelihood, so these models take a Matérn-5/2 ARD
    kernel in a `ScaleKernel` and a Gaussian likelihood (noise 0.1, at least 1e-4), neither with a prior.
    """

    @functools.wraps(cls)
    def build(train_X, train_Y, likelihood=None, *args, kernel=None, **options):
        gaussian = likelihood is None or isinstance(likelihood, GaussianLikelihood)
        batch = torch.Size([train_Y.shape[-1]]) if gaussian and train_Y.shape[-1] > 1 else torch.Size()
        if kernel is None and not isinstance(likelihood, SoftmaxLikelihood):
            d = train_X.shape[-1]
            kernel = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=d, batch_shape=batch), batch_shape=batch)
        if likelihood is None:
            likelihood = GaussianLikelihood(batch_shape=batch, noise_constraint=GreaterThan(1e-4))
            likelihood.noise = 0.1
        return cls(train_X, train_Y, likelihood, *args, kernel=kernel, **options)

    return build


SVGP = plain(gpvi.SVGP)
DualSVGP = plain(gpvi.DualSVGP)


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


def study_rows(db) -> list[tuple]:
    """Every stored evaluation of a study database, with its run's (problem, method, seed), in a fixed order."""
    import sqlite3

    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT r.problem, r.method, r.seed, e.idx, e.iteration, e.x, e.y, e.y_true, e.best, e.n_train "
            "FROM evaluations e JOIN runs r USING (run_id) ORDER BY r.problem, r.method, r.seed, e.idx"
        ).fetchall()
