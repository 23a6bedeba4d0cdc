"""Reproduction: with no memory (memory_size=0) a *sorted* stream ends far worse than the shuffled one.

    OMP_NUM_THREADS=1 .venv/bin/python studies/sequential/repro_memory0.py            # banana, ~1 min
    OMP_NUM_THREADS=1 .venv/bin/python studies/sequential/repro_memory0.py --data breast_cancer

The same streams as `streams.py` (seed 0, 50 batches, M = 100), memory 0, and three variants of
`DualSVGP.update` to locate the step that loses the past: the defaults; ``hyperparameters=False``
(θ kept from the first batch's fit); ``reselect_inducing=False`` (Z kept). Prints test NLPD and
accuracy / RMSE after the last batch, and the NLPD after every 10th batch for the default.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

import gpvi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streams import batches, likelihood, load, model_metrics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="banana")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory", type=int, default=0)
    parser.add_argument("--orders", nargs="+", default=["sorted", "shuffled"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    warnings.simplefilter("ignore")
    data = load(args.data, args.seed)
    variants = {"defaults": {}, "hyperparameters=False": {"hyperparameters": False}}
    variants["reselect_inducing=False"] = {"reselect_inducing": False}
    for order in args.orders:
        stream = batches(data, order, args.seed, 50)
        for name, options in variants.items():
            X0, Y0 = stream[0]
            model = gpvi.DualSVGP(
                X0, Y0, likelihood=likelihood(data), num_inducing=100, memory_size=args.memory, seed=args.seed
            )
            gpvi.fit(model, progress=False)
            trace = []
            for i, (Xb, Yb) in enumerate(stream[1:], start=1):
                model.update(Xb, Yb, **options)
                if name == "defaults" and i % 10 == 0:
                    trace.append(f"{i}: {model_metrics(model, data)['nlpd']:.2f}")
            metrics = {k: round(v, 4) for k, v in model_metrics(model, data).items()}
            print(f"{args.data} {order} memory {args.memory} {name}: {metrics}", flush=True)
            if trace:
                print("   NLPD after batch " + ", ".join(trace), flush=True)


if __name__ == "__main__":
    main()
