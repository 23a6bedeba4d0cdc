"""Approximate posteriors ("strategies") behind one contract (`base`), and the ELBO and step on it.

- `base`: the contract (`PosteriorStrategy`, `Marginals`) and the inducing-feature machinery.
- `svgp`: whitened (or unwhitened) SVGP, q(v) = N(m, S) (Hensman et al.).
- `dual`: q held as Gaussian sites on u − E[u] (t-SVGP, Adam et al. 2021).
- `elbo`: the ELBO and the natural-gradient / CVI step of any strategy.

Adding a family: `gpvi/variational/README.md`.
"""

from gpvi.variational.base import InducingMarginals, InducingStrategy, Marginals, PosteriorStrategy
from gpvi.variational.dual import DualSites, DualSVGPStrategy
from gpvi.variational.elbo import (
    PredictiveParts,
    SiteTarget,
    natural_gradient_step,
    predictive_log_likelihood,
    site_target,
    variational_elbo,
)
from gpvi.variational.svgp import FixedGaussian, WhitenedSVGPStrategy, WhitenedTerms

__all__ = [
    "DualSVGPStrategy",
    "DualSites",
    "FixedGaussian",
    "InducingMarginals",
    "InducingStrategy",
    "Marginals",
    "PosteriorStrategy",
    "PredictiveParts",
    "SiteTarget",
    "WhitenedSVGPStrategy",
    "WhitenedTerms",
    "natural_gradient_step",
    "predictive_log_likelihood",
    "site_target",
    "variational_elbo",
]
