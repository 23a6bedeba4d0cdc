"""The ``gpvi`` command line.

    gpvi demo [--dataset kin40k] [--split 0] [--num-inducing 256] [--steps 2000]
              [--batch-size 1024] [--quick]

Each subcommand lives in a ``_add_<name>(subparsers)`` function that registers its parser and
sets ``func`` (the function run with the parsed arguments, returning an exit status); adding a
subcommand means writing one such function and listing it in ``_SUBCOMMANDS``.

Exit status: 0 on success, 2 on a usage error or when the data cannot be found.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["build_parser", "main"]

QUICK_ENV_VAR = "GPVI_DEMO_QUICK"

# Presets of `gpvi demo`; explicit flags override them. The full preset runs in about two
# minutes on 2 CPU cores (kin40k: 36,000 training rows, 8 inputs).
_DEMO_FULL = {"dataset": "kin40k", "num_inducing": 256, "steps": 2000, "batch_size": 1024}
_DEMO_QUICK = {"dataset": "yacht", "num_inducing": 64, "steps": 150, "batch_size": 1024}


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per subcommand."""
    from gpvi import __version__

    parser = argparse.ArgumentParser(
        prog="gpvi",
        description="Variational Gaussian processes on PyTorch, built for BoTorch.",
    )
    parser.add_argument("--version", action="version", version=f"gpvi {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    subparsers.required = True
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gpvi`` command line on ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Usage errors raise `SystemExit(2)` from argparse, as usual.
    """
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    return int(args.func(args) or 0)


# -- gpvi demo --------------------------------------------------------------------------------
def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    full, quick = _DEMO_FULL, _DEMO_QUICK
    p = subparsers.add_parser(
        "demo",
        help="fit gpvi's SVGP and gpytorch's SVGP on a UCI data set and compare them",
        description=(
            "Fit gpvi's SVGP (natural-gradient steps on q, Adam on the rest) and gpytorch's "
            "standard SVGP (Adam on VariationalELBO) with the same kernel, initial inducing "
            "points, minibatch size and number of steps on one split of a UCI regression set, "
            "then print test RMSE / NLPD and fit times side by side."
        ),
    )
    p.add_argument("--dataset", default=None, help=f"UCI data set name (default {full['dataset']})")
    p.add_argument("--split", type=int, default=0, help="train/test split, 0..9 (default 0)")
    p.add_argument("--num-inducing", type=_positive_int, default=None, metavar="M",
                   help=f"number of inducing points (default {full['num_inducing']})")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help=f"optimisation steps for each model (default {full['steps']})")
    p.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                   help=f"minibatch size (default {full['batch_size']})")
    p.add_argument("--quick", action="store_true", default=None,
                   help=(f"small, fast run ({quick['dataset']}, {quick['steps']} steps, "
                         f"M={quick['num_inducing']}); also set by {QUICK_ENV_VAR}=1"))
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and minibatches")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress bars (default: only on a terminal)")
    p.set_defaults(func=_run_demo)


@dataclass
class _Row:
    model: str
    rmse: float
    nlpd: float
    fit_time: float
    steps: int


def _run_demo(args: argparse.Namespace) -> int:
    quick = args.quick if args.quick is not None else _env_flag(QUICK_ENV_VAR)
    preset = _DEMO_QUICK if quick else _DEMO_FULL
    dataset = args.dataset or preset["dataset"]
    M = args.num_inducing or preset["num_inducing"]
    steps = args.steps or preset["steps"]
    B = args.batch_size or preset["batch_size"]

    import gpvi
    from gpvi.baselines import GPyTorchSVGP, fit_gpytorch_svgp, predict_gpytorch_svgp
    from gpvi.data import uci

    start = time.perf_counter()
    try:
        data = uci.load(dataset, split=args.split)
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(f"gpvi demo: error: {err}", file=sys.stderr)
        return 2
    X, Y = data.train_X, data.train_Y
    B = min(B, data.n_train)
    print(
        f"gpvi demo: {data.name} split {data.split}: {data.n_train} train / {data.n_test} test "
        f"rows, d = {data.d}; M = {M} inducing points (k-means), minibatch {B}, {steps} steps each."
    )

    torch.manual_seed(args.seed)
    print("Fitting gpvi SVGP (natural gradients on q + Adam, lr 0.01) ...", flush=True)
    model = gpvi.SVGP(X, Y, num_inducing=M, inducing="kmeans", seed=args.seed)
    res = gpvi.fit(model, max_steps=steps, batch_size=B, optimizer="ngd", lr=0.01,
                   early_stopping=False, progress=args.progress, seed=args.seed)
    mean, var = _predict_botorch(model, data.test_X)
    rmse, nlpd = _metrics(mean, var, data.test_Y)
    rows = [_Row("gpvi SVGP (NGD + Adam)", rmse, nlpd, res.wall_time, res.num_steps)]

    torch.manual_seed(args.seed)
    print("Fitting gpytorch SVGP (Adam on VariationalELBO, lr 0.01) ...", flush=True)
    base, likelihood = GPyTorchSVGP.from_data(X, num_inducing=M, inducing="kmeans", seed=args.seed)
    res = fit_gpytorch_svgp(base, likelihood, X, Y, steps=steps, batch_size=B, lr=0.01,
                            progress=args.progress, seed=args.seed)
    mean, var = predict_gpytorch_svgp(base, likelihood, data.test_X)
    rmse, nlpd = _metrics(mean, var, data.test_Y)
    rows.append(_Row("gpytorch SVGP (Adam)", rmse, nlpd, res.wall_time, res.num_steps))

    print()
    print(_table(rows))
    print(
        "RMSE and NLPD are on the test split in standardised units (targets standardised with the "
        "training split's mean and std);\nNLPD is the mean negative log density of the Gaussian "
        "predictive with observation noise (lower is better). "
        f"Total time {time.perf_counter() - start:.1f} s."
    )
    return 0


# -- helpers ----------------------------------------------------------------------------------
@torch.no_grad()
def _predict_botorch(model, X: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Predictive mean and variance (with observation noise), `n` each, computed in chunks."""
    means, variances = [], []
    for i in range(0, X.shape[0], chunk):
        post = model.posterior(X[i : i + chunk], observation_noise=True)
        means.append(post.mean.squeeze(-1))
        variances.append(post.variance.squeeze(-1))
    return torch.cat(means), torch.cat(variances)


def _metrics(mean: Tensor, var: Tensor, y: Tensor) -> tuple[float, float]:
    """(RMSE, mean Gaussian NLPD) of predictive means / variances `n` against targets `y`."""
    y = y.reshape(-1).to(mean)
    mean, var = mean.reshape(-1), var.reshape(-1).clamp_min(1e-12)
    rmse = (mean - y).pow(2).mean().sqrt()
    nlpd = 0.5 * (torch.log(2 * math.pi * var) + (y - mean).pow(2) / var).mean()
    return float(rmse), float(nlpd)


def _table(rows: list[_Row]) -> str:
    header = ("model", "test RMSE", "test NLPD", "fit time (s)", "steps")
    cells = [
        (r.model, f"{r.rmse:.4f}", f"{r.nlpd:.4f}", f"{r.fit_time:.1f}", str(r.steps)) for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = (v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(c) for c in cells)])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo]


if __name__ == "__main__":
    sys.exit(main())
