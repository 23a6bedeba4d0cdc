"""Control for the BO regret comparison: gpvi SVGP (Z = X fixed) fitted exactly like SingleTaskGP.

BoTorch's own kernel and likelihood modules (untransformed bounds) and BoTorch's scipy L-BFGS-B on
the collapsed bound + log prior, so that the fit matches SingleTaskGP's to ~1e-6. Used by
`noisy_scipy_check.toml` (run with ``PYTHONPATH=studies/bo/investigations``); not part of the library.
"""

import torch
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import (
    get_covar_module_with_dim_scaled_prior,
    get_gaussian_likelihood_with_lognormal_prior,
)
from botorch.optim.closures import ForwardBackwardClosure
from botorch.optim.core import scipy_minimize
from botorch.optim.utils import get_parameters_and_bounds

from gpvi.loops.factories import ModelFactory
from gpvi.models import SVGP


class ScipySVGPFactory(ModelFactory):
    name = "svgp-scipy"

    def __init__(self, jitter=None):
        self.jitter = jitter  # Kuu's diagonal jitter (None: gpvi's default, 1e-6 in float64)

    def fit(self, train_X, train_Y, bounds, warm=None):
        d = train_X.shape[-1]
        model = SVGP(
            train_X,
            train_Y,
            likelihood=get_gaussian_likelihood_with_lognormal_prior(),
            kernel=get_covar_module_with_dim_scaled_prior(d),
            num_inducing=train_X.shape[-2],
            learn_inducing=False,
            jitter=self.jitter,
            input_transform=Normalize(d, bounds=bounds),
            outcome_transform=Standardize(1),
        )
        variational = {id(p) for p in model.model.variational_parameters()}
        params, bnds = {}, {}
        for prefix, owner in (("model.", model.model), ("likelihood.", model.likelihood)):
            p_, b_ = get_parameters_and_bounds(owner)
            params.update({prefix + k: v for k, v in p_.items()})
            bnds.update({prefix + k: v for k, v in b_.items()})
        params = {k: p for k, p in params.items() if p.requires_grad and id(p) not in variational}
        n = train_X.shape[-2]
        model.train()
        closure = ForwardBackwardClosure(lambda: -(model.collapsed_elbo() + model.log_prior()) / n, params)
        scipy_minimize(closure, params, bounds={k: v for k, v in bnds.items() if k in params})
        with torch.no_grad():
            model.set_optimal_q()
        model.eval()
        return model


class PerturbedSingleTaskGPFactory(ModelFactory):
    """BoTorch's SingleTaskGP whose fit starts from lengthscales 0.1% off the default: the noise floor.

    Its MAP fit lands within ~1e-6 of SingleTaskGP's, as the SVGP's does; comparing its regrets with
    SingleTaskGP's shows how far two practically equal models drift apart on the same seeds.
    """

    name = "singletaskgp-perturbed"

    def fit(self, train_X, train_Y, bounds, warm=None):
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        model = SingleTaskGP(
            train_X,
            train_Y,
            input_transform=Normalize(train_X.shape[-1], bounds=bounds),
            outcome_transform=Standardize(1),
        )
        with torch.no_grad():
            model.covar_module.raw_lengthscale.mul_(1.001)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model
