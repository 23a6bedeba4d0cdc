"""The ``gpvi`` command line.

    gpvi demo [--quick] [--db gpvi-demo.sqlite] [--out .] [--no-progress]    the main job: a small BO study
    gpvi study run FILE [--db PATH] [--workers N] [--executor local|dask] [--scheduler ADDRESS] [--no-progress]
    gpvi study report FILE|DB [--out DIR] [--baseline METHOD]
    gpvi study status FILE|DB
    gpvi svgp-demo [--dataset kin40k] [--split 0] [--num-inducing 256] [--steps 2000]
                   [--batch-size 1024] [--quick]                 gpvi's SVGP vs gpytorch's on a UCI set

Each subcommand lives in a ``_add_<name>(subparsers)`` function that registers its parser and
sets ``func`` (the function run with the parsed arguments, returning an exit status); adding a
subcommand means writing one such function and listing it in ``_SUBCOMMANDS``.

``--progress`` / ``--no-progress`` draw or silence the progress bars (default: the rule of
`gpvi.progress.show_progress`: on a terminal, never under pytest, ``GPVI_PROGRESS=0``/``1`` where
no flag is given).

Exit status: 0 on success, 2 on a usage error or when the data cannot be found.
"""

from __future__ import annotations

import argparse
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
# The --progress / --no-progress flags of every subcommand (`gpvi.progress.show_progress`).
_PROGRESS_HELP = (
    "progress bars on stderr: --progress always, --no-progress never (default: on a terminal, "
    "never under pytest; GPVI_PROGRESS=0/1 decides where no flag is given)"
)


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


# -- gpvi svgp-demo ---------------------------------------------------------------------------
def _add_svgp_demo(subparsers: argparse._SubParsersAction) -> None:
    full, quick = _DEMO_FULL, _DEMO_QUICK
    p = subparsers.add_parser(
        "svgp-demo",
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
    p.add_argument(
        "--num-inducing",
        type=_positive_int,
        default=None,
        metavar="M",
        help=f"number of inducing points (default {full['num_inducing']})",
    )
    p.add_argument(
        "--steps", type=_positive_int, default=None, help=f"optimisation steps for each model (default {full['steps']})"
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="B",
        help=f"minibatch size (default {full['batch_size']})",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        default=None,
        help=(
            f"small, fast run ({quick['dataset']}, {quick['steps']} steps, "
            f"M={quick['num_inducing']}); also set by {QUICK_ENV_VAR}=1"
        ),
    )
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and minibatches")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=_PROGRESS_HELP,
    )
    p.set_defaults(func=_run_svgp_demo)


@dataclass
class _Row:
    model: str
    rmse: float
    nlpd: float
    fit_time: float
    steps: int


def _run_svgp_demo(args: argparse.Namespace) -> int:
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
        print(f"gpvi svgp-demo: error: {err}", file=sys.stderr)
        return 2
    X, Y = data.train_X, data.train_Y
    B = min(B, data.n_train)
    print(
        f"gpvi svgp-demo: {data.name} split {data.split}: {data.n_train} train / {data.n_test} test "
        f"rows, d = {data.d}; M = {M} inducing points (k-means), minibatch {B}, {steps} steps each."
    )

    torch.manual_seed(args.seed)
    print("Fitting gpvi SVGP (natural gradients on q + Adam, lr 0.01) ...", flush=True)
    model = gpvi.SVGP(X, Y, num_inducing=M, inducing="kmeans", seed=args.seed)
    res = gpvi.fit(
        model,
        max_steps=steps,
        batch_size=B,
        optimizer="ngd",
        lr=0.01,
        early_stopping=False,
        progress=args.progress,
        seed=args.seed,
    )
    mean, var = _predict_botorch(model, data.test_X)
    rmse, nlpd = _metrics(mean, var, data.test_Y)
    rows = [_Row("gpvi SVGP (NGD + Adam)", rmse, nlpd, res.wall_time, res.num_steps)]

    torch.manual_seed(args.seed)
    print("Fitting gpytorch SVGP (Adam on VariationalELBO, lr 0.01) ...", flush=True)
    base, likelihood = GPyTorchSVGP.from_data(X, num_inducing=M, inducing="kmeans", seed=args.seed)
    res = fit_gpytorch_svgp(
        base, likelihood, X, Y, steps=steps, batch_size=B, lr=0.01, progress=args.progress, seed=args.seed
    )
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


# -- gpvi study ---------------------------------------------------------------------------------
def _add_study(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "study",
        help="run, report on and watch studies (TOML files)",
        description="Run, report on and watch studies declared in TOML files.",
    )
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", title="actions")
    sub.required = True
    run = sub.add_parser(
        "run",
        help="run or resume a study",
        description=(
            "Run every unfinished (problem, method, seed) run of a study, storing each evaluation as it "
            "happens; re-running resumes where it stopped."
        ),
    )
    run.add_argument("file", help="the study's TOML file")
    run.add_argument("--db", default=None, help="SQLite store (default: FILE with .sqlite)")
    run.add_argument("--workers", type=_positive_int, default=1, help="parallel runs (default 1)")
    run.add_argument("--executor", choices=("local", "dask"), default="local", help="local processes or Dask")
    run.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster)")
    run.add_argument("--threads", type=_positive_int, default=None, help="torch threads per worker")
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=_PROGRESS_HELP,
    )
    run.set_defaults(func=_run_study)
    report = sub.add_parser("report", help="markdown table and plots of a study")
    report.add_argument("source", help="the study's TOML file or its SQLite store")
    report.add_argument("--db", default=None, help="SQLite store when SOURCE is a TOML file with a non-default store")
    report.add_argument("--out", default=None, help="output folder (default: <store>-report)")
    report.add_argument(
        "--baseline", default=None, help="method the others are divided by (default: the study's SingleTaskGP method)"
    )
    report.set_defaults(func=_report_study)
    status = sub.add_parser("status", help="progress of a study")
    status.add_argument("source", help="the study's TOML file or its SQLite store")
    status.add_argument("--db", default=None, help="SQLite store when SOURCE is a TOML file")
    status.set_defaults(func=_status_study)


def _run_study(args: argparse.Namespace) -> int:
    from gpvi.studies.runner import run_study
    from gpvi.studies.spec import StudyError

    try:
        outcome = run_study(
            args.file,
            args.db,
            workers=args.workers,
            executor=args.executor,
            scheduler=args.scheduler,
            threads=args.threads,
            progress=args.progress,
        )
    except StudyError as err:
        print(f"gpvi study run: error: {err}", file=sys.stderr)
        return 2
    print(f"{outcome.db}: {outcome.done} runs done, {outcome.failed} failed, {outcome.skipped} already done.")
    return 1 if outcome.failed else 0


def _store_path(source: str, db: str | None) -> str | None:
    from pathlib import Path

    if db is not None:
        return db
    path = Path(source)
    if path.suffix == ".toml":
        path = path.with_suffix(".sqlite")
    return str(path) if path.is_file() else None


def _report_study(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gpvi.studies.report import markdown_report
    from gpvi.studies.store import Store

    path = _store_path(args.source, args.db)
    if path is None:
        print(f"gpvi study report: error: no store found for {args.source!r} (run the study first).", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(path).with_name(Path(path).stem + "-report")
    with Store(path) as store:
        print(markdown_report(store, out, baseline=args.baseline))
    print(f"Report written to {out / 'report.md'}.")
    return 0


def _status_study(args: argparse.Namespace) -> int:
    from gpvi.studies.status import status_text
    from gpvi.studies.store import Store

    path = _store_path(args.source, args.db)
    if path is None:
        print(f"gpvi study status: error: no store found for {args.source!r}.", file=sys.stderr)
        return 2
    with Store(path) as store:
        print(status_text(store))
    return 0


# -- gpvi demo: the main job --------------------------------------------------------------------
def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the main job: a small BO study, its table and regret plot",
        description=(
            "Run a small Bayesian-optimisation study (Branin and Hartmann6; random search, BoTorch's "
            "SingleTaskGP + qLogEI, gpvi's SVGP + qLogEI; 3 seeds x 25 iterations) into a SQLite store, "
            "then print its table and write report.md and the plots. Re-running resumes."
        ),
    )
    p.add_argument("--db", default="gpvi-demo.sqlite", help="SQLite store (default ./gpvi-demo.sqlite)")
    p.add_argument("--out", default="gpvi-demo-report", help="report folder (default ./gpvi-demo-report)")
    p.add_argument("--workers", type=_positive_int, default=2, help="parallel runs (default 2)")
    p.add_argument(
        "--quick",
        action="store_true",
        default=None,
        help=f"1 seed x 5 iterations (smoke test); also set by {QUICK_ENV_VAR}=1",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=_PROGRESS_HELP,
    )
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gpvi.studies.report import markdown_report
    from gpvi.studies.runner import run_study
    from gpvi.studies.spec import parse_spec
    from gpvi.studies.store import Store

    quick = args.quick if args.quick is not None else _env_flag(QUICK_ENV_VAR)
    text = demo_study_text(quick)
    spec = parse_spec(text, source="gpvi demo")
    start = time.perf_counter()
    print(
        f"gpvi demo: study {spec.name!r}: {len(spec.problems)} problems x {len(spec.methods)} methods x "
        f"{len(spec.seeds)} seeds x {spec.budget} iterations into {args.db} ({args.workers} workers) ...",
        flush=True,
    )
    outcome = run_study(spec, args.db, workers=args.workers, progress=args.progress)
    with Store(args.db) as store:
        print(markdown_report(store, Path(args.out)))
    print(f"Report and plots in {Path(args.out) / 'report.md'}; total {time.perf_counter() - start:.0f} s.")
    return 1 if outcome.failed else 0


def demo_study_text(quick: bool = False) -> str:
    """The TOML of `gpvi demo`'s study (``quick``: 1 seed x 5 iterations)."""
    from importlib.resources import files

    text = files("gpvi.studies").joinpath("demo.toml").read_text()
    if quick:
        text = text.replace("seeds = 3", "seeds = 1").replace("budget = 25", "budget = 5")
        text = text.replace('name = "demo"', 'name = "demo-quick"')
    return text


# -- helpers ----------------------------------------------------------------------------------
def _predict_botorch(model, X: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    from gpvi.metrics import predict

    return predict(model, X, chunk)


def _metrics(mean: Tensor, var: Tensor, y: Tensor) -> tuple[float, float]:
    from gpvi.metrics import rmse_nlpd

    return rmse_nlpd(mean, var, y)


def _table(rows: list[_Row]) -> str:
    header = ("model", "test RMSE", "test NLPD", "fit time (s)", "steps")
    cells = [(r.model, f"{r.rmse:.4f}", f"{r.nlpd:.4f}", f"{r.fit_time:.1f}", str(r.steps)) for r in rows]
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


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo, _add_study, _add_svgp_demo]


if __name__ == "__main__":
    sys.exit(main())
