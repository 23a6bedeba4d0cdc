"""Cost of one collapsed-bound evaluation (value and gradient) on all data: gpvi against gpytorch.

    .venv/bin/python studies/dual/step_cost.py --datasets elevators kin40k protein --m 256 512

The collapsed (Titsias) bound is the M-step objective of `gpvi.fit(model, objective="collapsed")`,
the recipe of the convergence benchmark: each L-BFGS evaluation is one value and gradient of it on
all N points, in the inputs Z and the hyperparameters. Three ways to compute the same number at the
same parameters (a `gpvi.DualSVGP`'s, k-means Z, Matérn-5/2 ARD + outputscale, constant mean):

- ``gpvi``: `DualSVGP.collapsed_elbo()`: one fused autograd node for the kernel matrix
  (`gpvi.core.kernels.cross_covariance`) and one for Φ = Kuf Kfu and Kuf y
  (`gpvi.core.linalg.gram_and_project`), the rest M×M.
- ``plain-autograd``: the same formula (`gpvi.core.objectives.collapsed_elbo`'s algebra) with
  gpytorch's kernel evaluation and autograd's own products: what the fused nodes replace.
- ``gpytorch-sgpr``: gpytorch's own SGPR, `InducingPointKernel` + `ExactMarginalLogLikelihood`
  (the same bound through linear_operator's Woodbury identity), with gpytorch's fast computations
  switched back on: importing BoTorch switches them off, and then SGPR's log_prob forms and
  factorises the dense N×N covariance (out of memory on kin40k). Its Kuu jitter differs from
  gpvi's, so its bound differs at about 1e-6 relative.

Per method: the median wall time of ``--repeats`` evaluations (after one warm-up) on ``--threads``
threads, float64, and the bound's relative difference from gpvi's (a correctness check).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import gpytorch
import torch

import gpvi
from gpvi.core.linalg import symmetrize, tri_solve
from gpvi.data import uci
from gpvi.progress import echo, track


def _plain_bound(model) -> torch.Tensor:
    """The Titsias bound with gpytorch's kernel evaluation and autograd's products (no fused nodes)."""
    X, y = model.train_X_model, model.model.train_targets
    kernel, noise = model.model.covar_module, model.likelihood.noise
    L = model.strategy.chol_Kuu()
    Kuf = kernel(model.features.Z, X).to_dense()
    r = (y - model.model.mean_module(X)).unsqueeze(-1)
    half = tri_solve(L, Kuf @ Kuf.mT)
    inner = symmetrize(tri_solve(L, half.mT)) / noise
    chol_B = torch.linalg.cholesky(inner + torch.eye(inner.shape[-1], dtype=X.dtype))
    c = tri_solve(chol_B, tri_solve(L, Kuf @ r)).squeeze(-1) / noise
    N = X.shape[-2]
    return (
        -0.5 * N * torch.log(2 * math.pi * noise).squeeze()
        - chol_B.diagonal().log().sum()
        - 0.5 * r.pow(2).sum() / noise.squeeze()
        + 0.5 * c.pow(2).sum()
        - 0.5 * kernel(X, diag=True).sum() / noise.squeeze()
        + 0.5 * inner.diagonal().sum()
    )


class _SGPR(gpytorch.models.ExactGP):
    def __init__(self, model):
        X, y = model.train_X_model, model.model.train_targets
        likelihood = gpytorch.likelihoods.GaussianLikelihood()
        likelihood.noise = model.likelihood.noise.detach()
        super().__init__(X, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.mean_module.constant = model.model.mean_module.constant.detach()
        base = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=X.shape[-1]))
        base.load_state_dict(model.model.covar_module.state_dict())
        self.covar_module = gpytorch.kernels.InducingPointKernel(
            base, inducing_points=model.features.Z.detach().clone(), likelihood=likelihood
        )

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _timed(evaluate, params, repeats: int) -> tuple[float, float]:
    """(median seconds of value + backward, the value)."""
    times, value = [], float("nan")
    for i in range(repeats + 1):
        for p in params:
            p.grad = None
        start = time.perf_counter()
        bound = evaluate()
        (-bound).backward()
        if i:
            times.append(time.perf_counter() - start)
        value = float(bound.detach())
    return statistics.median(times), value


METHODS = ("gpvi", "plain-autograd", "gpytorch-sgpr")


def measure(name: str, M: int, repeats: int, methods=METHODS, split: int = 0) -> list[str]:
    data = uci.load(name, split=split)
    d = data.train_X.shape[-1]  # the modules of the published table: Matérn-5/2 ARD + outputscale, no priors
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=d)).to(data.train_X)
    likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=gpytorch.constraints.GreaterThan(1e-4))
    model = gpvi.DualSVGP(data.train_X, data.train_Y, likelihood.to(data.train_X), num_inducing=M, kernel=kernel)
    model.train()
    params = list(model.parameters())
    sgpr = _SGPR(model)
    sgpr.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(sgpr.likelihood, sgpr)
    N = data.train_X.shape[0]
    X, y = sgpr.train_inputs[0], sgpr.train_targets
    # Importing BoTorch (gpvi does) switches gpytorch's fast computations off globally; without them
    # SGPR's log_prob densifies the N×N covariance and Cholesky-factors it (out of memory on kin40k).
    with gpytorch.settings.fast_computations(log_prob=True, covar_root_decomposition=True, solves=True):
        evaluations = {
            "gpvi": (model.collapsed_elbo, params),
            "plain-autograd": (lambda: _plain_bound(model), params),
            "gpytorch-sgpr": (lambda: mll(sgpr(X), y) * N, list(sgpr.parameters())),
        }
        runs = {m: _timed(*evaluations[m], repeats) for m in dict.fromkeys(("gpvi", *methods))}
    ours = runs["gpvi"]
    return [
        f"| {name} | {N} | {M} | {method} | {seconds:.3f} | {seconds / ours[0]:.2f} | "
        f"{abs(value - ours[1]) / abs(ours[1]):.1e} |"
        for method, (seconds, value) in runs.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["elevators", "kin40k", "protein"])
    parser.add_argument("--m", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="gpvi always runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    print("| data | N | M | method | s per evaluation (median) | ÷ gpvi | bound's relative difference |")
    print("|---|---|---|---|---|---|---|")
    cells = [(name, M) for name in args.datasets for M in args.m]
    for name, M in track(cells, "(data, M)"):  # a bar on stderr (`gpvi.progress`'s rule; GPVI_PROGRESS=0: none)
        echo("\n".join(measure(name, M, args.repeats, args.methods)))


if __name__ == "__main__":
    main()
