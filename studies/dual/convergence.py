"""Convergence speed on UCI regression: gpvi DualSVGP against gpytorch's SVGP (Adam; NGD + Adam).

    .venv/bin/python studies/dual/convergence.py --datasets elevators --splits 0 --m 256 --budget 240
    .venv/bin/python studies/dual/convergence.py --quick          # smoke test (seconds)

For each (dataset, split, M) every method starts from the same state (gpvi's k-means Z with seed 0,
lengthscales 0.5·√d·std, noise 0.1, float64) and trains for ``--budget`` seconds of wall time on
``--threads`` threads. The full-data ELBO per datum is measured every ``--eval-every`` seconds of
training time (the evaluations are not counted):

- ``gpytorch-adam``: gpytorch `VariationalStrategy` + `CholeskyVariationalDistribution`, Adam (lr 0.01)
  on everything, minibatch B.
- ``gpytorch-ngd``: gpytorch `NaturalVariationalDistribution` with `gpytorch.optim.NGD` (lr 0.1)
  on q plus Adam (lr 0.01) on the rest, minibatch B.
- ``dual-collapsed``: `gpvi.DualSVGP` with the closed-form Gaussian recipe
  (``gpvi.fit(model, objective="collapsed")``): the dual sites are exact for every θ, so each
  L-BFGS evaluation's value *is* the full-data ELBO at the E-step optimum; the final E-step
  (ρ = 1, the one that writes the sites) is included in the time.

Reported: the target = the best full-data ELBO any method reached; for each method the wall time
until its ELBO is within 0.1 % of the target (">budget" if never), its final ELBO, test RMSE and
NLPD (standardised units), and the speed-up of dual-collapsed over each peer (time-to-target ratio).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from gpytorch.mlls import VariationalELBO
from gpytorch.optim import NGD

import gpvi
from gpvi.baselines import GPyTorchSVGP, predict_gpytorch_svgp
from gpvi.data import uci
from gpvi.metrics import rmse_nlpd

B = 1024
TOLERANCE = 1e-3


def _gpytorch_run(data, M: int, budget: float, eval_every: float, natural: bool, seed: int = 0):
    X, y = data.train_X, data.train_Y[:, 0]
    N = X.shape[0]
    model, lik = GPyTorchSVGP.from_data(X, num_inducing=M, natural=natural)
    mll = VariationalELBO(lik, model, num_data=N)
    variational = {id(p) for p in model.variational_parameters()}
    hyper = [p for p in [*model.parameters(), *lik.parameters()] if id(p) not in variational or not natural]
    adam = torch.optim.Adam(list({id(p): p for p in hyper}.values()), lr=0.01)
    ngd = NGD(list(model.variational_parameters()), num_data=N, lr=0.1) if natural else None
    gen = torch.Generator().manual_seed(seed)

    def full_elbo() -> float:
        model.train(), lik.train()
        with torch.no_grad():
            return float(sum(mll(model(X[c]), y[c]) * c.numel() for c in torch.arange(N).split(8192)) / N)

    trace, elapsed, next_eval, steps = [(0.0, full_elbo())], 0.0, eval_every, 0
    while elapsed < budget:
        start = time.perf_counter()
        model.train(), lik.train()
        idx = torch.randint(N, (B,), generator=gen)
        if ngd is not None:
            ngd.zero_grad()
        adam.zero_grad()
        (-mll(model(X[idx]), y[idx])).backward()
        if ngd is not None:
            ngd.step()
        adam.step()
        elapsed += time.perf_counter() - start
        steps += 1
        if elapsed >= next_eval or elapsed >= budget:
            trace.append((elapsed, full_elbo()))
            next_eval += eval_every
    mean, var = predict_gpytorch_svgp(model, lik, data.test_X)
    rmse, nlpd = rmse_nlpd(mean, var, data.test_Y[:, 0])
    return trace, steps, rmse, nlpd


def _dual_run(data, M: int, budget: float):
    X, Y = data.train_X, data.train_Y
    model = gpvi.DualSVGP(X, Y, num_inducing=M)
    N = X.shape[0]
    trace = []

    def stop(step, parts):
        trace.append((time.perf_counter() - start, float(parts["elbo"]) / N))
        return trace[-1][0] > budget

    start = time.perf_counter()
    result = gpvi.fit(model, objective="collapsed", max_steps=100_000, callback=stop, progress=False)
    trace.append((time.perf_counter() - start, trace[-1][1]))  # the final E-step's time
    with torch.no_grad():
        post = model.posterior(data.test_X, observation_noise=True)
    rmse, nlpd = rmse_nlpd(post.mean[:, 0], post.variance[:, 0], data.test_Y[:, 0])
    return trace, result.num_steps, rmse, nlpd


def time_to(trace, target: float) -> float:
    """First time at which the ELBO is within TOLERANCE (relative) of ``target``."""
    for t, value in trace:
        if value >= target - TOLERANCE * abs(target):
            return t
    return math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["elevators", "kin40k", "protein"])
    parser.add_argument("--splits", nargs="+", type=int, default=[0])
    parser.add_argument("--m", nargs="+", type=int, default=[256])
    parser.add_argument("--budget", type=float, default=240.0)
    parser.add_argument("--eval-every", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="append JSON lines with the traces here")
    parser.add_argument("--quick", action="store_true", help="yacht, M=16, 3 s per method")
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.splits, args.m, args.budget, args.eval_every = ["yacht"], [0], [16], 3.0, 0.5
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)

    print("| data | split | M | method | steps | final ELBO/N | time to 0.1% (s) | RMSE | NLPD | dual speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.datasets:
        for split in args.splits:
            data = uci.load(name, split=split)
            for M in args.m:
                runs = {
                    "gpytorch-adam": _gpytorch_run(data, M, args.budget, args.eval_every, natural=False),
                    "gpytorch-ngd": _gpytorch_run(data, M, args.budget, args.eval_every, natural=True),
                    "dual-collapsed": _dual_run(data, M, args.budget),
                }
                target = max(max(v for _, v in trace) for trace, *_ in runs.values())
                times = {k: time_to(trace, target) for k, (trace, *_) in runs.items()}
                for method, (trace, steps, rmse, nlpd) in runs.items():
                    t = times[method]
                    ratio = t / times["dual-collapsed"] if method != "dual-collapsed" else 1.0
                    t_txt = f"{t:.1f}" if math.isfinite(t) else f">{args.budget:.0f}"
                    r_txt = f"{ratio:.1f}x" if math.isfinite(ratio) else f">{args.budget / times['dual-collapsed']:.1f}x"
                    print(
                        f"| {name} | {split} | {M} | {method} | {steps} | {trace[-1][1]:.4f} | {t_txt} | "
                        f"{rmse:.4f} | {nlpd:.4f} | {r_txt if method != 'dual-collapsed' else ''} |",
                        flush=True,
                    )
                    if args.out is not None:
                        with args.out.open("a") as fh:
                            record = dict(data=name, split=split, M=M, method=method, trace=trace, target=target)
                            fh.write(json.dumps(record | dict(steps=steps, rmse=rmse, nlpd=nlpd)) + "\n")


if __name__ == "__main__":
    main()
