"""One run of a regression study: fit a method on a UCI split, return test metrics.

Methods (``model`` of a ``[[methods]]`` table, options in ``options``):
- "svgp": gpvi's SVGP, natural-gradient steps on q + Adam (options: num_inducing 256,
  max_steps 2000, batch_size 1024, lr 0.01, inducing "kmeans");
- "dual-svgp": gpvi's DualSVGP with its default recipe (Gaussian: L-BFGS on the collapsed bound,
  exact sites; options: num_inducing 256, max_steps 300 evaluations, inducing "kmeans");
- "gpytorch-svgp": gpytorch's own SVGP, Adam on the VariationalELBO (same options);
- "exact": BoTorch's `SingleTaskGP` fitted by `fit_gpytorch_mll`; on more than ``max_n``
  (default 3000) training points it uses a random subset of that size (subset of data);
- "module:callable": ``fn(train_X, train_Y, **options) -> fitted single-output BoTorch model``.

Metrics: test RMSE and NLPD in standardised units (targets standardised with the training split),
fit and prediction wall times, and the peak resident memory of the fit above the memory before it.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from gpvi.metrics import predict, rmse_nlpd


def run_regression(task: dict) -> dict[str, float]:
    """Metrics of one (dataset, method, split) task (see the module docstring)."""
    from gpvi.data import uci

    problem, method = task["problem"], task["method"]
    data = uci.load(problem["name"], split=task["seed"])
    X, Y = data.train_X, data.train_Y
    if problem.get("max_train") is not None and X.shape[0] > problem["max_train"]:
        idx = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(task["seed"]))[: problem["max_train"]]
        X, Y = X[idx], Y[idx]
    options = dict(method.get("options") or {})
    torch.manual_seed(task["seed"])
    baseline = _peak_rss_reset()
    start = time.perf_counter()
    predictor = _fit(method["model"], X, Y, options, task["seed"])
    fit_time = time.perf_counter() - start
    peak = _peak_rss_mb() - baseline
    start = time.perf_counter()
    mean, var = predictor(data.test_X)
    predict_time = time.perf_counter() - start
    rmse, nlpd = rmse_nlpd(mean, var, data.test_Y)
    return {
        "rmse": rmse,
        "nlpd": nlpd,
        "fit_time": fit_time,
        "predict_time": predict_time,
        "peak_memory_mb": peak,
        "n_train": float(X.shape[0]),
    }


def _fit(model: str, X: torch.Tensor, Y: torch.Tensor, options: dict[str, Any], seed: int):
    """Fit ``model`` and return ``predict(test_X) -> (mean, variance with noise)``."""
    if model == "svgp":
        import gpvi

        m = gpvi.SVGP(
            X, Y, num_inducing=options.pop("num_inducing", 256), inducing=options.pop("inducing", "kmeans"), seed=seed
        )
        gpvi.fit(
            m,
            max_steps=options.pop("max_steps", 2000),
            batch_size=options.pop("batch_size", 1024),
            optimizer="ngd",
            lr=options.pop("lr", 0.01),
            early_stopping=False,
            progress=False,
            seed=seed,
            **options,
        )
        return lambda Xt: predict(m, Xt)
    if model == "dual-svgp":
        import gpvi

        m = gpvi.DualSVGP(
            X, Y, num_inducing=options.pop("num_inducing", 256), inducing=options.pop("inducing", "kmeans"), seed=seed
        )
        gpvi.fit(m, max_steps=options.pop("max_steps", 300), progress=False, seed=seed, **options)
        return lambda Xt: predict(m, Xt)
    if model == "gpytorch-svgp":
        from gpvi.baselines import GPyTorchSVGP, fit_gpytorch_svgp, predict_gpytorch_svgp

        base, likelihood = GPyTorchSVGP.from_data(
            X, num_inducing=options.pop("num_inducing", 256), inducing=options.pop("inducing", "kmeans"), seed=seed
        )
        fit_gpytorch_svgp(
            base,
            likelihood,
            X,
            Y,
            steps=options.pop("max_steps", 2000),
            batch_size=options.pop("batch_size", 1024),
            lr=options.pop("lr", 0.01),
            progress=False,
            seed=seed,
            **options,
        )
        return lambda Xt: predict_gpytorch_svgp(base, likelihood, Xt)
    if model == "exact":
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        max_n = options.pop("max_n", 3000)
        if X.shape[0] > max_n:
            idx = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed))[:max_n]
            X, Y = X[idx], Y[idx]
        from botorch.models.transforms.input import Normalize

        m = SingleTaskGP(X, Y, input_transform=Normalize(X.shape[-1]), **options)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(m.likelihood, m))
        return lambda Xt: predict(m, Xt)
    from gpvi.loops.factories import load_object

    m = load_object(model)(X, Y, **options)
    return lambda Xt: predict(m, Xt)


def _read_status_kb(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def _peak_rss_reset() -> float:
    """Reset the peak-RSS counter (Linux: write 5 to clear_refs) and return the current RSS in MB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _read_status_kb("VmRSS") / 1024


def _peak_rss_mb() -> float:
    return _read_status_kb("VmHWM") / 1024


__all__ = ["run_regression"]
