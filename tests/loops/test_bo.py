"""The ask/tell BO loop: optimisation quality on Branin, determinism, restore, bad input."""

from __future__ import annotations

import pytest
import torch
from botorch.test_functions import Branin

from gpvi.loops import BayesOpt, SVGPFactory

FAST = {"num_restarts": 4, "raw_samples": 128, "maxiter": 100}


@pytest.mark.parametrize("model", ["singletaskgp", "svgp"])
def test_loop_finds_branins_optimum_region(model):
    f = Branin()
    loop = BayesOpt(f.bounds, model, "qlogei", minimize=True, seed=0, acquisition_options=FAST)
    result = loop.run(f, 20)
    assert result.X.shape == (loop.num_initial + 20, 2)
    assert result.best_Y - f.optimal_value < 0.1  # random search with this budget: about 1.7
    minimizers = torch.tensor(f._optimizers, dtype=torch.float64)
    assert torch.cdist(result.best_X[None], minimizers).min() < 0.3


def test_random_search_is_worse_and_modelless():
    f = Branin()
    loop = BayesOpt(f.bounds, acquisition="random", minimize=True, seed=0)
    result = loop.run(f, 20)
    assert loop.model is None and result.best_Y - f.optimal_value > 0.1


@pytest.mark.parametrize("acquisition", ["ucb", "ts", "qlognei"])
def test_other_acquisitions_run_with_svgp(acquisition):
    f = Branin()
    factory = SVGPFactory(max_steps=50, warm_steps=20)
    loop = BayesOpt(f.bounds, factory, acquisition, q=2, minimize=True, seed=1, acquisition_options=FAST)
    result = loop.run(f, 3)
    assert result.X.shape == (loop.num_initial + 6, 2)
    assert bool(((result.X >= f.bounds[0]) & (result.X <= f.bounds[1])).all())


def test_suggest_is_idempotent_and_seeded():
    f = Branin()
    a = BayesOpt(f.bounds, "svgp", minimize=True, seed=3, acquisition_options=FAST)
    b = BayesOpt(f.bounds, "svgp", minimize=True, seed=3, acquisition_options=FAST)
    for _ in range(3):
        Xa = a.suggest()
        torch.testing.assert_close(a.suggest(), Xa)  # asking twice gives the same points
        torch.testing.assert_close(b.suggest(), Xa, rtol=0, atol=0)
        a.observe(Xa, f(Xa))
        b.observe(Xa, f(Xa))


@pytest.mark.parametrize("refit_every", [1, 3])
def test_restore_continues_exactly(refit_every):
    """A loop restored from its batches and checkpoint suggests what the uninterrupted one does."""
    f = Branin()
    factory = SVGPFactory(max_steps=40, warm_steps=15, update_steps=5)
    make = lambda: BayesOpt(f.bounds, factory, minimize=True, seed=2, refit_every=refit_every, acquisition_options=FAST)
    full, batches = make(), []
    for i in range(6):
        X = full.suggest()
        Y = f(X).unsqueeze(-1)
        full.observe(X, Y)
        batches.append((X, Y))
        if i == 3:
            checkpoint = full.checkpoint()
            cut = len(batches)
    resumed = make()
    resumed.restore(batches[:cut], checkpoint)
    for X, Y in batches[cut:]:
        torch.testing.assert_close(resumed.suggest(), X, rtol=0, atol=0)
        resumed.observe(X, Y)
    torch.testing.assert_close(resumed.suggest(), full.suggest(), rtol=0, atol=0)


def test_callable_factory_and_acquisition():
    from botorch.acquisition import PosteriorMean
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.input import Normalize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    def factory(X, Y):
        model = SingleTaskGP(X, Y, input_transform=Normalize(X.shape[-1]))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model

    f = Branin()
    loop = BayesOpt(
        f.bounds, factory, lambda model, X, Y: PosteriorMean(model), minimize=True, acquisition_options=FAST
    )
    assert loop.run(f, 2).X.shape[0] == loop.num_initial + 2


def test_bad_input_is_named():
    f = Branin()
    with pytest.raises(ValueError, match="bounds"):
        BayesOpt(torch.tensor([[1.0, 1.0], [0.0, 2.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="acquisition"):
        BayesOpt(f.bounds, acquisition="ei-typo")
    with pytest.raises(ValueError, match="model"):
        BayesOpt(f.bounds, model_factory="nope")
    with pytest.raises(ValueError, match="acquisition_options"):
        BayesOpt(f.bounds, acquisition_options={"restarts": 3})
    loop = BayesOpt(f.bounds)
    with pytest.raises(ValueError, match="`X`"):
        loop.observe(torch.rand(3, 3, dtype=torch.float64), torch.rand(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="`Y`"):
        loop.observe(torch.rand(3, 2, dtype=torch.float64), torch.rand(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="`Y`"):
        loop.observe(torch.rand(1, 2, dtype=torch.float64), torch.tensor([float("nan")], dtype=torch.float64))
