"""Large non-Gaussian data: DualSVGP's default fit (`gpvi.fit`, recipe "cvi-em") against gpytorch's SVGP.

    .venv/bin/python studies/dual/classification_scale.py --datasets kin40k protein --splits 0 1 2 --budget 300
    .venv/bin/python studies/dual/classification_scale.py --quick          # smoke test (seconds)
    .venv/bin/python studies/dual/classification_scale.py --report studies/dual/classification_scale.json

Data: UCI regression sets turned into binary classification, y = 1 where the target exceeds the
median of the *training* targets of the split (the same threshold for the test rows); inputs
standardised with the training statistics (`gpvi.data.uci.load`), float64.

Model (the same for every method; only the inference differs): probit `BernoulliLikelihood`,
`ConstantMean`, gpvi's default kernel for a non-Gaussian likelihood
(`gpvi.models.priors.default_kernel(X, gaussian=False)`: ScaleKernel(RBF, ARD) with BoTorch's
dimension-scaled LogNormal lengthscale prior and a Gamma(2, 0.15) outputscale prior), M inducing
inputs Z chosen once by gpvi's k-means (`select_inducing_points`, seed 0) as every method's start,
and trained by every method (each library's default: gpytorch's SVGP learns Z, and gpvi's "cvi-em"
moves Z in the M-steps that hold the per-datum sites).

Methods, ``--budget`` seconds of wall time each on ``--threads`` threads:

- ``dual-default``: ``gpvi.fit(gpvi.DualSVGP(X, y, likelihood=BernoulliLikelihood(), inducing=Z))``
  with no option but a callback that records (time, ELBO per datum) after each EM iteration and
  stops the fit at the budget. The default recipe is "cvi-em" (full-data CVI E-steps, L-BFGS
  M-steps); its own ELBO (``parts.elbo``) is the traced value, its time includes everything inside
  ``gpvi.fit``.
- ``gpytorch-adam``: gpytorch `VariationalStrategy` + `CholeskyVariationalDistribution`, Adam
  (lr 0.01) on q and the hyperparameters, minibatch B = 1024, `VariationalELBO(num_data=N)`.
- ``gpytorch-ngd``: `NaturalVariationalDistribution` + `gpytorch.optim.NGD` (lr 0.1) on q, Adam
  (lr 0.01) on the hyperparameters, B = 1024.

The traced quantity, the same for all three: the full-data ELBO *including the log prior of the
hyperparameters*, per datum, (Σ_n E_q[log p(y_n | f_n)] − KL[q(u) ‖ p(u)] + log p(θ)) / N: the
objective every method maximises (gpytorch's `VariationalELBO` adds the registered priors too). The
expected log-likelihoods are evaluated with gpvi's adaptive quadrature for all (the dual's own
value; for the peers `gpvi.core.likelihoods.expected_log_prob` on q(f_n) of the gpytorch model; the
peers *train* on gpytorch's 20-node Gauss–Hermite rule). The peers' ELBO is measured on all data
every ``--eval-every`` seconds of training time (evaluations not counted).

Reported per (data, split): for each method the steps (EM iterations for the dual), the best ELBO
per datum within the budget, the time until the ELBO is within 0.1 % (relative) of the best value
any method reached within the budget (inf if never), the ratios of the peers' times to the dual's,
test NLPD (mean −log p(y* | x*), probit predictive Φ(μ/√(1 + σ²))) and accuracy, and the dual's
stop reason. Traces go to ``--out`` (default ``classification_scale.json`` next to this script;
with ``--quick`` nothing is written unless ``--out`` is given), rewritten after every block.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

import torch
from gpytorch.likelihoods import BernoulliLikelihood
from gpytorch.mlls import VariationalELBO

import gpvi
from gpvi.baselines import GPyTorchSVGP, predict_gpytorch_svgp
from gpvi.core.likelihoods import expected_log_prob
from gpvi.data import uci
from gpvi.features.selection import select_inducing_points
from gpvi.models.priors import default_kernel
from gpvi.progress import echo, track

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convergence import TOLERANCE, time_to, train_gpytorch_svgp  # noqa: E402  (the Gaussian benchmark's)

METHODS = ("dual-default", "gpytorch-ngd", "gpytorch-adam")
DEFAULT_OUT = Path(__file__).resolve().parent / "classification_scale.json"


# -- data -----------------------------------------------------------------------------------------
def load(name: str, split: int, subsample: int | None = None) -> dict:
    """Train/test tensors of one split, targets binarised at the training median (float64 0/1)."""
    data = uci.load(name, split=split)
    X, y, Xt, yt = data.train_X, data.train_Y[:, 0], data.test_X, data.test_Y[:, 0]
    threshold = y.median()
    y, yt = (y > threshold).to(X), (yt > threshold).to(X)
    if subsample is not None and subsample < X.shape[0]:
        idx = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(0))[:subsample]
        X, y = X[idx], y[idx]
    return dict(X=X, y=y, test_X=Xt, test_y=yt)


def test_metrics(mean: torch.Tensor, var: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(test NLPD, accuracy) of the probit predictive p(y* = 1) = Φ(μ / √(1 + σ²))."""
    normal = torch.distributions.Normal(0.0, 1.0)
    z = mean / (1.0 + var).sqrt()
    log_p = torch.where(y > 0.5, normal.cdf(z).log(), normal.cdf(-z).log())  # log Φ(±z)
    log_p = torch.where(torch.isfinite(log_p), log_p, torch.full_like(log_p, -30.0))
    return float(-log_p.mean()), float(((z > 0).to(y) == y).double().mean())


# -- the dual default -------------------------------------------------------------------------------
def dual_run(data: dict, Z: torch.Tensor, budget: float) -> dict:
    X, y = data["X"], data["y"]
    N = X.shape[0]
    model = gpvi.DualSVGP(X, y.unsqueeze(-1), likelihood=BernoulliLikelihood(), inducing=Z)
    with torch.no_grad():
        trace = [(0.0, float(model.elbo().elbo) / N)]  # q = prior: the peers' starting value too

    def record(step, parts) -> bool:
        trace.append((time.perf_counter() - start, float(parts.elbo) / N))
        return trace[-1][0] >= budget

    start = time.perf_counter()
    result = gpvi.fit(model, callback=record)
    total = time.perf_counter() - start
    with torch.no_grad():
        mean, var = _chunked(lambda x: _latent(model.posterior(x)), data["test_X"])
    nlpd, acc = test_metrics(mean, var, data["test_y"])
    iters = result.num_steps
    return dict(
        trace=trace,
        steps=iters,
        time=total,
        stop_reason=result.stop_reason,
        s_per_step=total / max(iters, 1),
        nlpd=nlpd,
        accuracy=acc,
    )


def _latent(post) -> tuple[torch.Tensor, torch.Tensor]:
    return post.mean[..., 0], post.variance[..., 0]


def _chunked(fn, X: torch.Tensor, size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [fn(X[i : i + size]) for i in range(0, X.shape[0], size)]
    return torch.cat([m for m, _ in parts]), torch.cat([v for _, v in parts])


# -- gpytorch's SVGP ------------------------------------------------------------------------------
def gpytorch_run(data: dict, Z: torch.Tensor, budget: float, eval_every: float, natural: bool, seed: int = 0):
    """convergence.py's `_gpytorch_run` loop for a Bernoulli likelihood and the gpvi kernel (Z learned)."""
    X, y = data["X"], data["y"]
    N = X.shape[0]
    kernel = default_kernel(X, gaussian=False)
    model = GPyTorchSVGP(Z.clone(), kernel=kernel, natural=natural, learn_inducing_locations=True)
    lik = BernoulliLikelihood().to(X)
    mll = VariationalELBO(lik, model, num_data=N)  # for its registered priors

    def full_elbo() -> float:  # the quantity gpvi's parts.elbo is: ELL (gpvi's rule) − KL + log p(θ)
        model.train(), lik.train()
        with torch.no_grad():
            ell = sum(
                expected_log_prob(lik, y[c], f.mean, f.variance).sum()
                for c in torch.arange(N).split(8192)
                for f in [model(X[c])]
            )
            kl = model.variational_strategy.kl_divergence()
            log_prior = sum(prior.log_prob(closure(m)).sum() for _, m, prior, closure, _ in mll.named_priors())
            return float(ell - kl + log_prior) / N

    trace, steps = train_gpytorch_svgp(model, lik, X, y, budget, eval_every, natural, full_elbo, seed)
    elapsed = trace[-1][0]  # training time: the last trace point is taken when the budget runs out
    mean, var = predict_gpytorch_svgp(model, None, data["test_X"])
    nlpd, acc = test_metrics(mean, var, data["test_y"])
    return dict(
        trace=trace,
        steps=steps,
        time=elapsed,
        stop_reason="budget",
        s_per_step=elapsed / steps,
        nlpd=nlpd,
        accuracy=acc,
    )


# -- tables ---------------------------------------------------------------------------------------
def within(trace, budget: float):
    """The trace points inside the budget (the dual's last EM iteration may end after it)."""
    return [(t, v) for t, v in trace if t <= budget] or trace[:1]


def times_to_best(records: list[dict], budget: float) -> dict[str, float]:
    """Per method: the time to within TOLERANCE of the best ELBO any method reached in the budget."""
    target = max(v for r in records for _, v in within(r["trace"], budget))
    return {r["method"]: time_to(within(r["trace"], budget), target) for r in records}


def _ratio(peer: float, dual: float, budget: float) -> str:
    """peer ÷ dual; a time that is inf (never within 0.1 %) counts as the budget, giving a bound."""
    if math.isinf(peer) and math.isinf(dual):
        return "–"
    if math.isinf(peer):
        return f">{budget / dual:.1f}x"
    if math.isinf(dual):
        return f"<{peer / budget:.2f}x"
    return f"{peer / dual:.1f}x"


def _t(t: float) -> str:
    return f"{t:.1f}" if math.isfinite(t) else "inf"


HEADER = [
    "| data | split | N | M | method | steps | s/step | best ELBO/N | time to 0.1% of best (s) | ÷ dual "
    "| test NLPD | accuracy | stop |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def table(records: list[dict], budget: float) -> list[str]:
    """Markdown rows for one (data, split) block (one per method)."""
    times = times_to_best(records, budget)
    lines = []
    for r in records:
        best = max(v for _, v in within(r["trace"], budget))
        ratio = "" if r["method"] == "dual-default" else _ratio(times[r["method"]], times["dual-default"], budget)
        lines.append(
            f"| {r['data']} | {r['split']} | {r['N']} | {r['M']} | {r['method']} | {r['steps']} | "
            f"{r['s_per_step']:.3g} | {best:.5f} | {_t(times[r['method']])} | {ratio} | {r['nlpd']:.4f} | "
            f"{r['accuracy']:.4f} | {r['stop_reason']} |"
        )
    return lines


SUMMARY_HEADER = [
    "| data | split | t dual (s) | t NGD+Adam (s) | t Adam (s) | NGD+Adam ÷ dual | Adam ÷ dual "
    "| NLPD dual / NGD / Adam | accuracy dual / NGD / Adam | dual stop, iterations |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def summary(groups: dict[tuple, list[dict]], budget: float) -> list[str]:
    lines = list(SUMMARY_HEADER)
    for (name, split), records in groups.items():
        times = times_to_best(records, budget)
        by = {r["method"]: r for r in records}
        d, n, a = times["dual-default"], times["gpytorch-ngd"], times["gpytorch-adam"]
        lines.append(
            f"| {name} | {split} | {_t(d)} | {_t(n)} | {_t(a)} | {_ratio(n, d, budget)} | {_ratio(a, d, budget)} | "
            + " / ".join(f"{by[m]['nlpd']:.4f}" for m in METHODS)
            + " | "
            + " / ".join(f"{by[m]['accuracy']:.4f}" for m in METHODS)
            + f" | {by['dual-default']['stop_reason']}, {by['dual-default']['steps']} |"
        )
    return lines


PEER_HEADER = [
    "| data | split | peer | peer's best ELBO/N | peer reaches it (s) | dual reaches it (s) | peer ÷ dual |",
    "|---|---|---|---|---|---|---|",
]


def peer_speedups(groups: dict[tuple, list[dict]], budget: float) -> list[str]:
    """convergence.py's measure: the time each peer needs to reach its own best ELBO within the budget,
    and the time the dual default needs to reach that value (inf if it does not within the budget)."""
    lines = list(PEER_HEADER)
    for (name, split), records in groups.items():
        by = {r["method"]: r for r in records}
        dual = within(by["dual-default"]["trace"], budget)
        for peer in ("gpytorch-ngd", "gpytorch-adam"):
            trace = within(by[peer]["trace"], budget)
            best = max(v for _, v in trace)
            t_peer = next(t for t, v in trace if v >= best)
            t_dual = next((t for t, v in dual if v >= best), math.inf)
            ratio = f"{t_peer / t_dual:.2f}x" if math.isfinite(t_dual) else "<" + f"{t_peer / budget:.2f}x"
            lines.append(f"| {name} | {split} | {peer} | {best:.5f} | {t_peer:.0f} | {_t(t_dual)} | {ratio} |")
    return lines


def report(records: list[dict], budget: float) -> None:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["data"], r["split"]), []).append(r)
    print("\n".join(HEADER))
    for group in groups.values():
        print("\n".join(table(group, budget)))
    print()
    print("\n".join(summary(groups, budget)))
    print()
    print("\n".join(peer_speedups(groups, budget)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["kin40k", "protein"])
    parser.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--m", type=int, default=256)
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--eval-every", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--subsample", type=int, default=None, help="use this many training rows (random)")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON of all traces (default {DEFAULT_OUT.name})")
    parser.add_argument("--quick", action="store_true", help="kin40k split 0, 2000 rows, M = 16, 2 s per method")
    parser.add_argument("--report", type=Path, nargs="+", default=None, help="only tabulate these JSON files")
    args = parser.parse_args()
    if args.report is not None:
        saved = [json.loads(path.read_text()) for path in args.report]
        report([r for part in saved for r in part["records"]], saved[0]["budget"])
        return
    out = args.out
    if args.quick:
        args.datasets, args.splits, args.m, args.budget, args.eval_every = ["kin40k"], [0], 16, 2.0, 0.5
        args.subsample = 2000
    elif out is None:
        out = DEFAULT_OUT
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)

    started = datetime.datetime.now().isoformat(timespec="seconds")
    echo(f"classification_scale: {vars(args)}, started {started}, torch {torch.__version__}")
    echo("\n".join(HEADER))
    records: list[dict] = []
    for name, split in track([(n, s) for n in args.datasets for s in args.splits], "(data, split)"):
        data = load(name, split, args.subsample)
        X = data["X"]
        Z = select_inducing_points(X, args.m, "kmeans", default_kernel(X, gaussian=False), seed=0)
        block = []
        for method in args.methods:
            if method == "dual-default":
                run = dual_run(data, Z, args.budget)
            else:
                run = gpytorch_run(data, Z, args.budget, args.eval_every, natural=method == "gpytorch-ngd")
            block.append(dict(data=name, split=split, N=X.shape[0], M=Z.shape[0], method=method, **run))
        echo("\n".join(table(block, args.budget)))
        records += block
        if out is not None:
            payload = dict(args={k: str(v) for k, v in vars(args).items()}, started=started, budget=args.budget)
            out.write_text(json.dumps(dict(payload, tolerance=TOLERANCE, records=records)))
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["data"], r["split"]), []).append(r)
    if set(args.methods) == set(METHODS):
        echo("")
        echo("\n".join(summary(groups, args.budget)))


if __name__ == "__main__":
    main()
