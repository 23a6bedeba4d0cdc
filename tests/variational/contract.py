"""The shared contract test case every posterior family subclasses (like gpytorch's VariationalTestCase).

A family's test module subclasses `PosteriorContract` and says how to build its model:

    class TestMyFamily(PosteriorContract):
        def build(self, X, Y, Z):         # a gpvi model on (X, Y), Gaussian likelihood, variables at Z,
            return MyGP(X, Y, outcome_transform=None,   # targets as given (the checks' dense algebra)
                        features=InducingPoints(Z, learn_locations=False), jitter=self.jitter)

Every check compares with dense algebra written here, in float64 (the identities of
`../shared/methods`): with its variables at the data and a Gaussian likelihood the optimal q is the
exact GP and the ELBO the exact log marginal likelihood; q -> sites -> q is the identity;
`condition_on_observations` is the exact posterior given all data, and conditioning twice is
conditioning once on both; the minibatch ELBO averaged over
an epoch is the full ELBO; the KL is the dense Gaussian KL; a natural-gradient step of size 1 at the
optimum is a fixed point; state round trips keep predictions. A family without inducing inputs
overrides `build` to ignore Z and, where a check does not apply, the test with a reason.
"""

from __future__ import annotations

import io
import pickle

import torch
from torch.testing import assert_close

from gpvi.core.sites import GaussianSites
from tests.helpers import exact_gp, toy_data

DT = torch.float64


def random_sites(M: int, seed: int = 0) -> GaussianSites:
    """Proper sites with a non-trivial precision: η ~ N(0, I), H = A Aᵀ / M."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(M, M, generator=g, dtype=DT)
    return GaussianSites(torch.randn(M, generator=g, dtype=DT), A @ A.T / M)


class PosteriorContract:
    """Known-answer checks of the posterior contract (see the module docstring)."""

    jitter = 1e-10
    noise = 0.05
    mean = 0.3

    def build(self, X: torch.Tensor, Y: torch.Tensor, Z: torch.Tensor):
        """The family's model on (X `n x 1`, Y `n x 1`), Gaussian likelihood, its variables at Z (fixed)."""
        raise NotImplementedError

    def model(self, X, Y, Z=None):
        model = self.build(X, Y, X if Z is None else Z)
        model.likelihood.noise = self.noise
        model.model.mean_module.constant.data.fill_(self.mean)
        return model

    def optimal(self, X, Y, Z=None):
        model = self.model(X, Y, Z)
        model.set_optimal_q()
        return model.eval()

    # -- the checks ---------------------------------------------------------------------------------
    def test_optimal_q_with_variables_at_the_data_is_the_exact_gp(self):
        X, Y = toy_data()
        model = self.optimal(X, Y)
        Xs = torch.linspace(-4, 4, 7, dtype=DT).unsqueeze(-1)
        lml, mu, cov = exact_gp(model.model.covar_module, X, Y[:, 0], self.noise, self.mean, Xs)
        model.train()
        elbo = model.elbo().elbo - model.log_prior()
        model.eval()
        assert_close(elbo, lml, rtol=1e-6, atol=0)
        assert_close(model.collapsed_elbo(), lml, rtol=1e-6, atol=0)
        post = model.posterior(Xs)
        assert_close(post.mean[:, 0], mu, rtol=1e-6, atol=1e-8)
        assert_close(post.mvn.covariance_matrix, cov, rtol=1e-6, atol=1e-8)
        noisy = model.posterior(Xs, observation_noise=True)
        assert_close(noisy.variance[:, 0], cov.diag() + self.noise, rtol=1e-6, atol=1e-8)

    def test_sites_round_trip(self):
        X, Y = toy_data()
        model = self.model(X, Y, X[::3])
        sites = random_sites(X[::3].shape[0])
        with torch.no_grad():
            model.strategy.set_sites(sites)
            back = model.strategy.sites()
        assert_close(back.eta, sites.eta, rtol=1e-9, atol=1e-10)
        assert_close(back.prec, sites.prec, rtol=1e-9, atol=1e-10)
        before = model.eval().posterior(X).mvn
        with torch.no_grad():
            model.strategy.set_sites(model.strategy.sites())
        after = model.posterior(X).mvn
        assert_close(after.mean, before.mean, rtol=1e-10, atol=1e-12)
        assert_close(after.covariance_matrix, before.covariance_matrix, rtol=1e-9, atol=1e-12)

    def test_condition_on_observations_is_the_exact_posterior_given_all_data(self):
        X, Y = toy_data()
        model = self.optimal(X, Y)
        Xn = torch.tensor([[0.5], [3.5]], dtype=DT)
        Yn = torch.tensor([[1.0], [-1.0]], dtype=DT)
        Xs = torch.linspace(-4, 4, 9, dtype=DT).unsqueeze(-1)
        kernel = model.model.covar_module
        _, mu, cov = exact_gp(kernel, torch.cat([X, Xn]), torch.cat([Y, Yn])[:, 0], self.noise, self.mean, Xs)
        post = model.condition_on_observations(Xn, Yn).posterior(Xs)
        assert_close(post.mean[:, 0], mu, rtol=1e-6, atol=1e-7)
        assert_close(post.mvn.covariance_matrix, cov, rtol=1e-6, atol=1e-7)

    def test_conditioning_twice_is_conditioning_once_on_both(self):
        X, Y = toy_data()
        model = self.optimal(X, Y, X[::2])
        A, B = torch.tensor([[0.5], [3.5]], dtype=DT), torch.tensor([[-1.2]], dtype=DT)
        yA, yB = torch.tensor([[1.0], [-1.0]], dtype=DT), torch.tensor([[0.3]], dtype=DT)
        Xs = torch.linspace(-4, 4, 9, dtype=DT).unsqueeze(-1)
        twice = model.condition_on_observations(A, yA).condition_on_observations(B, yB).posterior(Xs).mvn
        once = model.condition_on_observations(torch.cat([A, B]), torch.cat([yA, yB])).posterior(Xs).mvn
        assert_close(twice.mean, once.mean, rtol=1e-8, atol=1e-10)
        assert_close(twice.covariance_matrix, once.covariance_matrix, rtol=1e-8, atol=1e-10)

    def test_minibatch_elbo_over_an_epoch_equals_the_full_elbo(self):
        X, Y = toy_data(24)
        model = self.model(X, Y, X[::4])
        with torch.no_grad():
            model.strategy.set_sites(random_sites(X[::4].shape[0], seed=1))
        model.train()
        Xm, Ym = model.training_data()
        full = model.elbo()
        batches = [model.elbo(Xm[i], Ym[i], num_data=24, index=i) for i in torch.randperm(24).split(6)]
        assert_close(torch.stack([b.elbo for b in batches]).mean(), full.elbo, rtol=1e-10, atol=1e-10)
        assert_close(torch.stack([b.expected_log_lik for b in batches]).mean(), full.expected_log_lik)

    def test_kl_is_the_dense_gaussian_kl(self):
        X, Y = toy_data()
        Z = X[::3]
        model = self.model(X, Y, Z)
        sites = random_sites(Z.shape[0], seed=2)
        with torch.no_grad():
            model.strategy.set_sites(sites)
        model.eval()
        with torch.no_grad():
            L = model.strategy.chol_Kuu()
            K = L @ L.T  # Kuu + jitter, the prior of the strategy's variables
            # q(u − μ) from the sites in the strategy's own coordinates, then in u-space, densely
            if model.strategy.site_space == "whitened":
                prec_v = torch.eye(K.shape[0], dtype=DT) + sites.prec
                S_v = torch.linalg.inv(prec_v)
                m_u, S_u = L @ S_v @ sites.eta, L @ S_v @ L.T
            else:
                S_u = torch.linalg.inv(torch.linalg.inv(K) + sites.prec)
                m_u = S_u @ sites.eta
            dense = 0.5 * (
                torch.trace(torch.linalg.solve(K, S_u))
                + m_u @ torch.linalg.solve(K, m_u)
                - K.shape[0]
                + torch.logdet(K)
                - torch.logdet(S_u)
            )
            assert_close(model.strategy.kl_divergence(), dense, rtol=1e-8, atol=1e-10)

    def test_a_natural_gradient_step_of_size_one_at_the_optimum_is_a_fixed_point(self):
        X, Y = toy_data()
        model = self.optimal(X, Y, X[::2])
        before = model.strategy.sites()
        model.train()
        Xm, Ym = model.training_data()
        model.natural_gradient_step(Xm, Ym, step=1.0)
        after = model.strategy.sites()
        assert_close(after.eta, before.eta, rtol=1e-8, atol=1e-8)
        assert_close(after.prec, before.prec, rtol=1e-8, atol=1e-8)

    def test_state_dict_and_pickle_round_trips_keep_predictions(self):
        X, Y = toy_data()
        model = self.optimal(X, Y, X[::2])
        Xs = torch.linspace(-4, 4, 7, dtype=DT).unsqueeze(-1)
        expected = model.posterior(Xs).mvn
        twin = self.model(X, Y, X[::2])
        twin.load_state_dict(model.state_dict())
        buffer = io.BytesIO()
        pickle.dump(model, buffer)
        for other in (twin.eval(), pickle.loads(buffer.getvalue())):
            got = other.posterior(Xs).mvn
            assert_close(got.mean, expected.mean, rtol=1e-12, atol=1e-12)
            assert_close(got.covariance_matrix, expected.covariance_matrix, rtol=1e-12, atol=1e-12)
