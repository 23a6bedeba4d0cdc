"""Do SingleTaskGP and the SVGP factory reach the same MAP hyperparameters on a study's data?

    .venv/bin/python studies/bo/investigations/map_modes.py studies/bo/noisy_qlognei.sqlite --problem Levy-8-noisy \\
        --method singletaskgp-qlognei --seeds 0 1 2 3 4 5 --sizes 40 80 117

For each stored run, the first n evaluations (inputs in the problem's box, outputs negated to the
loop's maximisation sign) are fitted by both factories of the BO loop, as the loop would: BoTorch's
`SingleTaskGP` with `fit_gpytorch_mll` (L-BFGS-B) and gpvi's SVGP with its default recipe (Z = X
while n ≤ 128: the same model, kernel and priors). Printed: both MAP objectives in nats, log
marginal likelihood plus log prior in the standardised space (for the SVGP the collapsed bound,
equal to it at Z = X up to jitter), their difference and both noise variances.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from gpytorch.mlls import ExactMarginalLogLikelihood

from gpvi.loops.factories import make_factory
from gpvi.studies.kinds.bo_problems import make_problem
from gpvi.studies.spec import parse_spec
from gpvi.studies.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db")
    parser.add_argument("--problem", required=True)
    parser.add_argument("--method", required=True, help="whose runs' data to refit")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sizes", nargs="+", type=int, default=[40, 80])
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    warnings.filterwarnings("ignore", module="botorch")
    store = Store(args.db)
    spec = parse_spec(store.meta()["spec"])
    problem = make_problem(next(p for p in spec.problems if p.label == args.problem))
    factories = {"singletaskgp": make_factory("singletaskgp"), "svgp": make_factory("svgp")}
    print("| seed | n | SingleTaskGP MAP | SVGP MAP | SVGP − STGP | noise STGP | noise SVGP |")
    print("|---|---|---|---|---|---|---|")
    for run in store.runs():
        if run.problem != args.problem or run.method != args.method or run.seed not in args.seeds:
            continue
        rows = store.evaluations(run.run_id)
        X = torch.tensor([r["x"] for r in rows])
        Y = -torch.tensor([r["y"] for r in rows]).reshape(-1, 1)
        for n in args.sizes:
            stgp = factories["singletaskgp"].fit(X[:n], Y[:n], problem.bounds)
            svgp = factories["svgp"].fit(X[:n], Y[:n], problem.bounds)
            stgp.train(), svgp.train()
            with torch.no_grad():
                mll = ExactMarginalLogLikelihood(stgp.likelihood, stgp)
                stgp_map = float(mll(stgp(*stgp.train_inputs), stgp.train_targets)) * n
                svgp_map = float(svgp.collapsed_elbo() + svgp.log_prior())
            print(
                f"| {run.seed} | {n} | {stgp_map:.3f} | {svgp_map:.3f} | {svgp_map - stgp_map:+.3f} | "
                f"{stgp.likelihood.noise.item():.4f} | {svgp.likelihood.noise.item():.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
