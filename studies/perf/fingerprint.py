"""A numerical fingerprint of gpvi's main paths: print it for two checkouts and diff, after a restructuring.

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before .venv/bin/python studies/perf/fingerprint.py > before.txt
    .venv/bin/python studies/perf/fingerprint.py > after.txt
    diff before.txt after.txt                       # empty: the same numbers to 12 digits

One line per path, 12 significant digits: SVGP with the adam, ngd, collapsed, minibatch-ngd recipes,
unwhitened and with 2 outputs; fantasies; update + refit; DualSVGP with Bernoulli ELBO and EP
M-steps, its Gaussian default, a minibatch ELBO fit and a Student-t full GP; greedy inducing points;
gpytorch's SVGP baseline; BayesOpt with "svgp" and "dual-svgp"; MagmaClust's ELBO per iteration,
VBIC and a new task's predictive. Every draw is seeded (torch's own generator is not seeded the same
in every process on every machine). About 5 s on 2 cores. The first line on stderr names the
gpvi that ran.
"""

from __future__ import annotations

import inspect
import sys

import torch
from botorch.test_functions import Branin
from gpytorch.likelihoods import BernoulliLikelihood, StudentTLikelihood

import gpvi
from gpvi.baselines import GPyTorchSVGP, fit_gpytorch_svgp
from gpvi.data import simulate_multitask
from gpvi.multitask import MagmaClust


def line(name: str, *values: float) -> None:
    print(name, " ".join(f"{float(v):.12g}" for v in values), flush=True)


def absorb(model, X, Y, steps: int, **options) -> None:
    """Append (X, Y) and refit ``steps`` steps; before 2026-12 `update` did both itself."""
    if "max_steps" in inspect.signature(type(model).update).parameters:
        model.update(X, Y, max_steps=steps, progress=False, **options)
    else:
        model.update(X, Y)
        gpvi.fit(model, max_steps=steps, progress=False, **options)


def main() -> None:
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    print("gpvi from", gpvi.__file__, file=sys.stderr)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(300, 3, generator=g)
    Y = torch.sin(6 * X[:, :1]) + X[:, 1:2] ** 2 + 0.05 * torch.randn(300, 1, generator=g)
    Xt = torch.rand(20, 3, generator=g)

    def moments(model):
        post = model.posterior(Xt)
        return float(post.mean.sum()), float(post.variance.sum())

    for optimizer in ("adam", "ngd"):
        torch.manual_seed(0)
        m = gpvi.SVGP(X, Y, num_inducing=32)
        r = gpvi.fit(m, max_steps=60, optimizer=optimizer, progress=False)
        line(f"svgp-{optimizer}", r.final_elbo, r.num_steps, *moments(m))
    torch.manual_seed(0)
    m = gpvi.SVGP(X, Y, num_inducing=32)
    r = gpvi.fit(m, max_steps=40, objective="collapsed", progress=False)
    line("svgp-collapsed", r.final_elbo, r.num_steps, *moments(m))
    torch.manual_seed(0)
    m = gpvi.SVGP(X, Y, num_inducing=32)
    r = gpvi.fit(m, max_steps=60, batch_size=64, optimizer="ngd", progress=False)
    line("svgp-ngd-minibatch", r.final_elbo, r.num_steps, *moments(m))
    torch.manual_seed(0)
    m = gpvi.SVGP(X, Y, num_inducing=32, whiten=False)
    r = gpvi.fit(m, max_steps=30, optimizer="ngd", progress=False)
    line("svgp-unwhiten-ngd", r.final_elbo, *moments(m))
    torch.manual_seed(0)
    m = gpvi.SVGP(X, torch.cat([Y, torch.cos(3 * X[:, :1])], -1), num_inducing=16)
    r = gpvi.fit(m, max_steps=30, optimizer="ngd", progress=False)
    line("svgp-2out", r.final_elbo, *moments(m))
    fantasy = m.condition_on_observations(torch.rand(4, 3, generator=g), torch.randn(4, 2, generator=g))
    line("svgp-condition", *moments(fantasy))

    labels = (Y[:, 0] > Y.median()).double().unsqueeze(-1)
    for objective in ("elbo", "ep"):
        torch.manual_seed(0)
        m = gpvi.DualSVGP(X, labels, likelihood=BernoulliLikelihood(), num_inducing=24)
        r = gpvi.fit(m, objective=objective, max_steps=25, progress=False)
        line(f"dual-bern-{objective}", r.final_objective, r.num_steps, *moments(m))
    torch.manual_seed(0)
    m = gpvi.DualSVGP(X, Y, num_inducing=24)
    r = gpvi.fit(m, max_steps=30, progress=False)
    line("dual-gauss-default", r.final_elbo, r.num_steps, *moments(m))
    absorb(m, torch.rand(5, 3, generator=g), torch.randn(5, 1, generator=g), 5)
    line("dual-update", *moments(m))
    torch.manual_seed(0)
    m = gpvi.DualSVGP(X, Y, num_inducing=24)
    r = gpvi.fit(m, max_steps=20, objective="elbo", batch_size=100, progress=False)
    line("dual-gauss-elbo-mb", r.final_elbo, r.num_steps, *moments(m))
    torch.manual_seed(0)
    m = gpvi.DualSVGP(X[:60], Y[:60], full_gp=True, likelihood=StudentTLikelihood())
    r = gpvi.fit(m, max_steps=15, progress=False)
    line("dual-studentt-full", r.final_objective, *moments(m))
    torch.manual_seed(0)
    m = gpvi.SVGP(X, Y, num_inducing=20)
    absorb(m, torch.rand(5, 3, generator=g), torch.randn(5, 1, generator=g), 5, optimizer="ngd")
    line("svgp-update", *moments(m))
    torch.manual_seed(0)
    line("greedy-Z", gpvi.SVGP(X, Y, num_inducing=20, inducing="greedy").features.locations.sum())

    torch.manual_seed(0)

    base, likelihood = GPyTorchSVGP.from_data(X, num_inducing=16)
    r = fit_gpytorch_svgp(base, likelihood, X, Y, steps=20, batch_size=100, progress=False)
    line("gpytorch-svgp", r.history[-1]["elbo"])

    f = Branin()
    for factory in ("svgp", "dual-svgp"):
        loop = gpvi.BayesOpt(f.bounds.double(), model_factory=factory, minimize=True, seed=1, num_initial=6)
        result = loop.run(lambda x: f(x), 3, progress=False)
        line(f"bo-{factory}", result.best_Y, result.X.sum())

    data = simulate_multitask(num_tasks=12, num_clusters=2, num_points=15, common_grid=False, seed=0)
    torch.manual_seed(0)
    model = MagmaClust(data, num_clusters=2)
    history = model.fit(max_iter=5, progress=False)
    elbo = history.column("elbo") if hasattr(history, "column") else history.elbo
    line("magma", *elbo, model.vbic())
    pred = model.predict(data.inputs[0][:5], data.outputs[0][:5], data.inputs[0][5:10])
    line("magma-pred", pred.mean.sum(), pred.variance().sum())


if __name__ == "__main__":
    main()
