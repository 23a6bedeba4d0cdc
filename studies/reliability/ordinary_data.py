"""Fits on ordinary data a new user brings: targets off unit scale, and noise-free targets.

    python studies/reliability/ordinary_data.py            # this checkout
    PYTHONPATH=<other checkout> python studies/reliability/ordinary_data.py   # another one, same data

Part 1 (scale): SVGP (M = 32) on n = 200 noisy points of sin(6x₀)cos(3x₁) on [0, 1]², targets
a·y + b; the default fit (`gpvi.fit(model)`) and the collapsed one; relative RMSE (RMSE / std of the
test targets, 500 test points) next to BoTorch's SingleTaskGP. Part 2 (noise-free): the collapsed
fit of SVGP and the default fit of DualSVGP on the noiseless function, 6 seeds at (n, M) =
(100, 32), (500, 128), (300, 300): how many fits end without an exception or a failure, and the
median relative RMSE. Every fit is seeded; stdout is the table.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from gpytorch.mlls import ExactMarginalLogLikelihood

import gpvi

try:  # bars on stderr (`gpvi.progress`'s rule; GPVI_PROGRESS=0: none)
    from gpvi.progress import echo, track
except ImportError:  # another checkout (PYTHONPATH) from before the helpers: no bars

    def track(iterable, desc):
        return iterable

    echo = print


def truth(X: torch.Tensor) -> torch.Tensor:
    return torch.sin(6 * X[:, :1]) * torch.cos(3 * X[:, 1:])


def data(n: int, seed: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, dtype=torch.float64, generator=g)
    return X, truth(X) + noise * torch.randn(n, 1, dtype=torch.float64, generator=g)


def relative_rmse(model, Xt, Yt) -> float:
    with torch.no_grad():
        mean = model.posterior(Xt).mean
    return ((mean - Yt).pow(2).mean().sqrt() / Yt.std()).item()


def attempt(build, train, Xt, Yt) -> tuple[str, float]:
    """(outcome, relative RMSE): outcome "ok", the stop reason of a failed fit, or the exception's name."""
    torch.manual_seed(0)
    try:
        model = build()
        result = train(model)
    except Exception as error:  # noqa: BLE001 - the table reports it
        return type(error).__name__, float("nan")
    reason = getattr(result, "stop_reason", "ok")
    outcome = reason if reason in ("non-finite", "not-psd") else "ok"
    return outcome, relative_rmse(model, Xt, Yt)


def scale_table() -> None:
    X, Y = data(200, 0, 0.05)
    Xt = torch.rand(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    print("| a·y + b | SVGP default fit | SVGP collapsed | SingleTaskGP |")
    print("|---|---|---|---|")
    for a, b in track([(1.0, 0.0), (1.0, 10.0), (100.0, 1000.0), (1e-3, 0.0), (1e4, -1e6)], "scales"):
        Ys, Yts = a * Y + b, a * truth(Xt) + b
        cells = []
        for train in (lambda m: gpvi.fit(m), lambda m: gpvi.fit(m, objective="collapsed")):
            outcome, rmse = attempt(lambda Ys=Ys: gpvi.SVGP(X, Ys, num_inducing=32), train, Xt, Yts)
            cells.append(f"{rmse:.3f}" if outcome == "ok" else outcome)
        gp = SingleTaskGP(X, Ys)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
        cells.append(f"{relative_rmse(gp, Xt, Yts):.3f}")
        echo(f"| {a:g}·y + {b:g} | " + " | ".join(cells) + " |")


def noise_free_table() -> None:
    print("\n| model, fit | n | M | fits without failure | median relative RMSE | s per fit |")
    print("|---|---|---|---|---|---|")
    Xt = torch.rand(400, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(99))
    cases = [
        ("SVGP, collapsed", gpvi.SVGP, lambda m: gpvi.fit(m, objective="collapsed")),
        ("DualSVGP, default", gpvi.DualSVGP, lambda m: gpvi.fit(m)),
    ]
    for label, cls, train in cases:
        for n, M in track([(100, 32), (500, 128), (300, 300)], f"{label}: (n, M)"):
            outcomes, rmses, start = [], [], time.perf_counter()
            for seed in range(6):
                X, Y = data(n, seed, 0.0)
                build = lambda X=X, Y=Y, cls=cls, M=M, seed=seed: cls(X, Y, num_inducing=M, seed=seed)
                outcome, rmse = attempt(build, train, Xt, truth(Xt))
                outcomes.append(outcome)
                if outcome == "ok":
                    rmses.append(rmse)
            median = f"{statistics.median(rmses):.2e}" if rmses else "–"
            failures = sorted({o for o in outcomes if o != "ok"})
            note = f" ({', '.join(failures)})" if failures else ""
            seconds = (time.perf_counter() - start) / 6
            echo(f"| {label} | {n} | {M} | {outcomes.count('ok')}/6{note} | {median} | {seconds:.1f} |")


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    print(f"gpvi from {gpvi.__file__}", file=sys.stderr)
    scale_table()
    noise_free_table()
