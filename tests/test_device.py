"""Device-agnostic: every path of the posterior contract runs on a CUDA device and agrees with the CPU.

Skipped without a GPU (CI runs on CPUs); run on a GPU machine with ``pytest tests/test_device.py``.
"""

from __future__ import annotations

import pytest
import torch
from gpytorch.likelihoods import BernoulliLikelihood

import gpvi
from gpvi.features.selection import greedy_variance_indices

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _paths(device: str) -> dict[str, list[float]]:
    """Fits (the default recipes, cvi-em, collapsed, ngd, cvi), predictions, class probabilities,
    fantasies, updates, site stores and selection on ``device``."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(300, 3, generator=g, dtype=torch.float64)
    Y = torch.sin(6 * X[:, :1]) + 0.05 * torch.randn(300, 1, generator=g, dtype=torch.float64)
    X, Y, Xt = X.to(device), Y.to(device), X[:20].to(device) + 0.01
    out = {}
    for recipe in ("ngd", "collapsed"):
        model = gpvi.SVGP(X, Y, num_inducing=24)
        result = gpvi.fit(model, recipe=recipe, max_steps=20, progress=False)
        post = model.posterior(Xt)
        assert post.mean.device.type == device
        fantasy = model.condition_on_observations(Xt[:3], Y[:3]).posterior(Xt)
        model.update(Xt[:4], Y[:4])
        out[recipe] = [result.final_elbo, float(post.mean.sum()), float(fantasy.variance.sum()),
                       float(model.posterior(Xt).mean.sum())]  # fmt: skip
    default = gpvi.SVGP(X, Y, num_inducing=24)  # the default recipe (collapsed, with its stopping rule)
    result = gpvi.fit(default, progress=False)
    out["default"] = [result.final_elbo, float(default.posterior(Xt, observation_noise=True).variance.sum())]
    for cls in (gpvi.SVGP, gpvi.DualSVGP):  # cvi-em: held per-datum sites, L-BFGS on inducing proxies
        clf = cls(X[:120], (Y[:120] > 0).double(), likelihood=BernoulliLikelihood(), num_inducing=12)
        result = gpvi.fit(clf, max_steps=4, progress=False)
        proba = clf.predict_proba(Xt)
        assert proba.device.type == device and proba.shape == (20, 1)
        out[f"cvi-em {cls.__name__}"] = [result.final_elbo, float(proba.sum())]
    wide = gpvi.SVGP(1e3 * X[:100], Y[:100], num_inducing=10)  # default_kernel's rescaled prior and transform
    out["rescaled"] = [gpvi.fit(wide, max_steps=15, progress=False).final_elbo]
    dual = gpvi.DualSVGP(X, (Y > 0).double(), likelihood=BernoulliLikelihood(), num_inducing=16)
    out["dual"] = [
        gpvi.fit(dual, "cvi", objective=obj, max_steps=8, progress=False).final_objective for obj in ("elbo", "ep")
    ]
    sites = dual.point_sites
    assert sites.inputs.device.type == device
    Kuf = dual.features.Kuf(dual.model.covar_module, sites.inputs)
    out["sites"] = [float(sites.project(Kuf, dual.strategy.chol_Kuu()).prec.sum())]
    out["greedy"] = [float(i) for i in greedy_variance_indices(X, 10, dual.model.covar_module, fixed=X[:4])]
    return out


def test_the_contract_runs_on_cuda_and_agrees_with_the_cpu():
    cpu, cuda = _paths("cpu"), _paths("cuda")
    for key in cpu:
        # L-BFGS paths amplify the devices' different summation orders: 1e-4, not round-off
        torch.testing.assert_close(torch.tensor(cuda[key]), torch.tensor(cpu[key]), rtol=1e-4, atol=1e-4, msg=key)


def test_a_bo_loop_and_magmaclust_run_on_cuda():
    from botorch.test_functions import Branin

    from gpvi.data import simulate_multitask
    from gpvi.multitask import MagmaClust

    f = Branin().to(device="cuda", dtype=torch.float64)
    result = gpvi.BayesOpt(f.bounds, "svgp", minimize=True, seed=0, num_initial=6).run(f, 2)
    assert result.X.device.type == "cuda" and result.X.shape == (8, 2)
    data = simulate_multitask(num_tasks=8, num_clusters=2, num_points=10, seed=0)
    data.inputs, data.outputs = [x.cuda() for x in data.inputs], [y.cuda() for y in data.outputs]
    model = MagmaClust(data, num_clusters=2)
    elbo = gpvi.fit(model, max_steps=3).column("elbo")
    assert model.hyperpost.mean.device.type == "cuda" and elbo[-1] >= elbo[0]
