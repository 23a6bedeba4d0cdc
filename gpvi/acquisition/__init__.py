"""Acquisition functions for active learning on any model: gpvi's and BoTorch's, regression and classification.

Three ways to use one acquisition (names in `ACQUISITION_NAMES`; higher is better for all):

- score a pool: ``acquisition_scores(name, model, X)`` (`n x d` in, `(n,)` out; the plain
  functions `predictive_variance`, `predictive_entropy`, `bald`, `integrated_variance`);
- optimise over a box: ``make_acquisition(name, model)`` gives a BoTorch `AcquisitionFunction`
  (`PredictiveVariance`, `PredictiveEntropy`, `BALD`, or BoTorch's qNegIntegratedPosteriorVariance)
  for ``optimize_acqf``;
- pick a batch from a pool: ``select_batch(model, X, name, k)`` (greedy, conditioning the model on
  each pick's most likely outcome).

=============  ==========================================  ======================  =========================
name           score at x                                  models                  reference
=============  ==========================================  ======================  =========================
"variance"     Σ_m Var[f_m(x)] (output units)              any                     uncertainty sampling
"entropy"      H[p̄(y | x)]                                 classifiers             uncertainty sampling
"bald"         H[p̄(y | x)] − E_{q(f(x))} H[p(y | f)]       classifiers             Houlsby et al. (2011)
"nipv"         −mean_r Var[f(r) | a noisy y(x)]            Gaussian likelihoods    Seo et al. (2000)
=============  ==========================================  ======================  =========================

Class probabilities of any classifier: ``gpvi.acquisition.class_probabilities(model, X)`` (`n x C`);
on gpvi models ``model.predict_proba(X)`` is the same numbers (Bernoulli `n x 1` = p(y = 1); softmax
`n x C` up to Monte Carlo error: both average softmax(f) over draws of the same marginal q(f(x)),
``class_probabilities`` with fixed seeded draws).

Modules: `scores` (the plain functions), `botorch` (the acquisition-function classes), `batch`
(`select_batch`), `marginals` (expectations over the latent marginals: quadrature, fixed draws,
Laplace sites). Only ``model.posterior``, ``predict_proba`` and ``condition_on_observations`` are used.
"""

from gpvi.acquisition.batch import condition_on_guess, select_batch
from gpvi.acquisition.botorch import BALD, PredictiveEntropy, PredictiveVariance, make_acquisition
from gpvi.acquisition.scores import (
    ACQUISITION_NAMES,
    acquisition_scores,
    bald,
    class_probabilities,
    integrated_variance,
    predictive_entropy,
    predictive_variance,
)

__all__ = [
    "ACQUISITION_NAMES",
    "BALD",
    "PredictiveEntropy",
    "PredictiveVariance",
    "acquisition_scores",
    "bald",
    "class_probabilities",
    "condition_on_guess",
    "integrated_variance",
    "make_acquisition",
    "predictive_entropy",
    "predictive_variance",
    "select_batch",
]
