"""The default `gpvi.fit`, timed against the recipes it replaced and the targets of the first-hour issue.

    OMP_NUM_THREADS=1 .venv/bin/python studies/defaults/default_fit.py            # ~5 minutes
    OMP_NUM_THREADS=1 .venv/bin/python studies/defaults/default_fit.py --quick    # a smoke run

Cases (each model built from data with its defaults, one thread, wall time of `gpvi.fit` alone):
- Gaussian, synthetic n = 2000, d = 4, M = 128: the default against the collapsed recipe named
  explicitly (target: within 2x) and against the old default (Adam, 1000 steps).
- Bernoulli, n = 400, d = 2, M = 64, SVGP and DualSVGP: the default ("cvi-em") against "ngd" for
  1000 steps (the old route); target: converged in under 3 s.
- UCI elevators split 0, DualSVGP (M = 256, k-means Z): the default against 1000 evaluations of
  the collapsed bound (what the default ran before it had a stopping rule); target: converged in
  under 30 s at the same test NLPD.
Prints one markdown table: case, method, time, stop reason, steps, final objective, test metric.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch
from gpytorch.likelihoods import BernoulliLikelihood

import gpvi
from gpvi.progress import echo

DT = torch.float64


def _timed(model, **options):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MaxStepsWarning of the fixed-budget runs
        result = gpvi.fit(model, progress=False, **options)
    return result, time.perf_counter() - start


def _nlpd(model, X, Y) -> float:
    with torch.no_grad():
        post = model.posterior(X, observation_noise=True)
    m, v, y = post.mean[:, 0], post.variance[:, 0], Y[:, 0]
    return float((0.5 * torch.log(2 * math.pi * v) + 0.5 * (y - m) ** 2 / v).mean())


def _xent(model, X, p_true) -> float:
    p = model.predict_proba(X)[:, 0].clamp(1e-12, 1 - 1e-12)
    return float(-(p_true * p.log() + (1 - p_true) * (1 - p).log()).mean())


def gaussian(quick: bool) -> list[tuple]:
    n, M = (300, 32) if quick else (2000, 128)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n + 1000, 4, generator=g, dtype=DT)
    Y = torch.sin(6 * X[:, :1]) + X[:, 1:2] ** 2 + 0.1 * torch.randn(n + 1000, 1, generator=g, dtype=DT)
    rows = []
    for method, options in [
        ("default", {}),
        ("collapsed", {"recipe": "collapsed"}),
        ("adam x1000", {"recipe": "adam"}),
    ]:
        model = gpvi.SVGP(X[:n], Y[:n], num_inducing=M)
        result, t = _timed(model, **options)
        rows.append((f"Gaussian n={n} M={M}", method, t, result, f"NLPD {_nlpd(model, X[n:], Y[n:]):.4f}"))
    return rows


def bernoulli(quick: bool) -> list[tuple]:
    n = 100 if quick else 400
    g = torch.Generator().manual_seed(1)
    X = torch.rand(n + 2000, 2, generator=g, dtype=DT)
    p = torch.sigmoid(3 * (torch.sin(6 * X[:, 0]) + torch.cos(5 * X[:, 1])))
    Y = (torch.rand(n + 2000, generator=g, dtype=DT) < p).to(DT).unsqueeze(-1)
    rows = []
    for cls in (gpvi.SVGP, gpvi.DualSVGP):
        for method, options in [("default", {}), ("ngd x1000", {"recipe": "ngd", "max_steps": 100 if quick else 1000})]:
            model = cls(X[:n], Y[:n], likelihood=BernoulliLikelihood(), num_inducing=64)
            result, t = _timed(model, **options)
            metric = f"cross-entropy {_xent(model, X[n:], p[n:]):.4f}"
            rows.append((f"Bernoulli n={n} {cls.__name__}", method, t, result, metric))
    return rows


def elevators(quick: bool) -> list[tuple]:
    from gpvi.data.uci import load

    data = load("elevators", 0)
    X, Y = data.train_X, data.train_Y
    if quick:
        X, Y = X[:1000], Y[:1000]
    M = 32 if quick else 256
    Z = gpvi.DualSVGP(X, Y, num_inducing=M, seed=0).features.Z.detach().clone()
    rows = []
    for method, options in [("default", {}), ("collapsed x1000", {"recipe": "collapsed", "tol": 0.0})]:
        model = gpvi.DualSVGP(X, Y, inducing=Z.clone())
        result, t = _timed(model, **({**options, "max_steps": 100} if quick and options else options))
        rows.append(
            (
                f"elevators N={X.shape[0]} M={M} DualSVGP",
                method,
                t,
                result,
                f"NLPD {_nlpd(model, data.test_X, data.test_Y):.4f}",
            )
        )
    return rows


def warm_up() -> float:
    """The one-time cost of a process's first optimiser step (torch.optim imports torch._dynamo then, ~1 s),
    paid here so that the cases time the fits alone; returned for the table."""
    start = time.perf_counter()
    p = torch.zeros(2, requires_grad=True)
    lbfgs = torch.optim.LBFGS([p], max_iter=2)

    def closure():
        lbfgs.zero_grad()
        loss = (p - 1).pow(2).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", nargs="+", default=["gaussian", "bernoulli", "elevators"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    echo(
        f"first optimiser step of the process (torch imports torch._dynamo): {warm_up():.2f} s, not in the times below"
    )
    echo("| case | method | time s | stop reason | steps | final objective | test |")
    echo("|---|---|---|---|---|---|---|")
    for case in args.cases:
        for name, method, t, result, metric in globals()[case](args.quick):
            echo(
                f"| {name} | {method} | {t:.2f} | {result.stop_reason} | {result.num_steps} | "
                f"{result.final_objective:.6g} ({result.objective_name}) | {metric} |"
            )


if __name__ == "__main__":
    main()
