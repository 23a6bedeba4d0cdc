"""The memory-based dual GP (`gpvi.DualSVGP.update`) on streams: accuracy against the offline fit and a
streaming sparse GP peer, and the cost of an update against BoTorch's exact GP.

    OMP_NUM_THREADS=1 .venv/bin/python studies/sequential/streams.py --time-budget 3300   # streams (~55 min)
    OMP_NUM_THREADS=1 .venv/bin/python studies/sequential/streams.py --cost               # cost (~10 min)
    OMP_NUM_THREADS=1 .venv/bin/python studies/sequential/streams.py --report             # README.md + PNGs
    OMP_NUM_THREADS=1 .venv/bin/python studies/sequential/streams.py --smoke --out /tmp/s.jsonl   # seconds

Streams (Chang, Verma, John, Solin & Khan, ICML 2023, "Memory-Based Dual Gaussian Processes for
Sequential Learning"): elevators and bike (UCI split 0, inputs and targets standardised with the
training statistics by `gpvi.data.uci.load`; Gaussian likelihood), banana (``gpvi.data.banana(2000,
seed=0)``) and breast_cancer (569 x 30), each with 20 % held out at random per seed and the inputs
re-standardised with the training rows (Bernoulli likelihood). The training set is cut into
``--num-batches`` (50) batches of (nearly) equal size in one of two orders:

- ``shuffled``: a random permutation (seeded by the seed);
- ``sorted``: ascending along the first principal component of the training inputs (the non-i.i.d.
  case: each batch covers a new slab of input space; the same order for every seed on UCI data).

Methods, M = ``--m`` (100) inducing inputs everywhere:

- ``stream``: ``gpvi.DualSVGP(first batch, memory_size=B, memory_selection=S, seed=seed)``,
  ``gpvi.fit`` on the first batch, then ``model.update(X_b, Y_b)`` for every later batch (library
  defaults: Z re-selected, θ refit by L-BFGS). Budgets B in ``--budgets`` (0, 50, 200, 1000);
  selection S leverage or random (budget 0 has no selection, and a budget that holds the whole
  training set is run once, as "all").
- ``offline``: ``gpvi.DualSVGP(all training data, num_inducing=M, seed=seed)`` and ``gpvi.fit``
  (the upper bound; order-independent, run once per dataset and seed).
- ``peer`` (regression only): ``gpvi.baselines.StreamingSGPR(num_inducing=M, noise=0.1,
  max_iter=100, seed=seed)`` (Bui, Nguyen & Turner 2017, OSGPR-VFE), ``.update`` on the same batches;
  its default kernel (gpytorch's initial lengthscales 0.69 on 17-18 standardised inputs) collapses to
  outputscale ~1e-9 (noise only) on the first batch, so ``peer-gpvi-kernel`` runs it again with
  ``kernel=gpvi.models.priors.default_kernel(X_first_batch, gaussian=False)``: the same starting
  lengthscales as the DualSVGP (dimension-scaled, ~√d), outputscale 1 (its priors are ignored).

Metrics after the last batch: test NLPD per point (regression: the Gaussian predictive with the
noise, in standardised units; classification: −[y log p + (1 − y) log(1 − p)] of ``predict_proba``,
p clipped to [1e-12, 1 − 1e-12]), RMSE (standardised units, and in the original units) or accuracy,
the total streaming time (the first batch's fit and every update; prediction excluded) and the time
of each step (index 0: the fit on the first batch). Each run is one line of ``--out`` (default
``streams.jsonl`` next to this script), appended as soon as it ends: a killed run keeps what it had,
and a rerun skips the runs already there (same dataset, order, method, budget, selection, seed).

Seeds: ``--seeds`` (0..4) for every configuration, except that ``--reduced-seeds`` (default: budget
1000 on the first seed only, budget 50 on the first two) cuts the costly or less important ablations.
The runs go in rounds, one per seed, the most important first; ``--time-budget`` (seconds) stops
starting new runs after that much wall time, so a cut run loses the last seeds of the core rather
than whole configurations.

Cost (``--cost``): a synthetic stream, x ~ U[0, 1]^4, f(x) = sin(2π x₁) + cos(π x₂) x₃ + x₄²,
y = f + 0.1 ε, batch 100, memory 200 (leverage), M = 100, up to n = 20 000: the time of every
update, the peak resident memory of the process (``resource.getrusage(...).ru_maxrss``, which
includes the Python/torch runtime) and the model's own tensors (bytes of ``torch.save(model)``) at
n = 1 000, 5 000, 20 000, and the test NLPD there; then BoTorch's ``SingleTaskGP`` refit on all data
so far (``fit_gpytorch_mll``) at n = 1 000 and 5 000, its exact ``condition_on_observations`` with
100 new points, and one Cholesky of the 20 000 x 20 000 kernel matrix (if the memory allows).
Written to ``--cost-out`` (default ``cost.json`` next to this script).

``--report`` reads the JSONL / JSON files and writes ``README.md`` and the PNGs next to this script
(or to ``--readme`` / ``--figdir``); ``notes.md`` next to the results, if present, is copied into it.
``--smoke``: one seed, 5 batches, 250 training and 100 test points per dataset, budget 50 (leverage),
both orders, with the offline fit and the peer; with ``--cost``: a stream to n = 600 and
SingleTaskGP at n = 200 / 400, no Cholesky at 20 000.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import platform
import resource
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch
from gpytorch.likelihoods import BernoulliLikelihood

import gpvi
from gpvi.progress import echo

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "streams.jsonl"
DEFAULT_COST = HERE / "cost.json"
DATASETS = ("elevators", "bike", "banana", "breast_cancer")
REGRESSION = ("elevators", "bike")
ORDERS = ("sorted", "shuffled")
SELECTIONS = ("leverage", "random")
PEERS = ("peer", "peer-gpvi-kernel")
DT = torch.float64


# -- data -----------------------------------------------------------------------------------------
def load(name: str, seed: int, subsample: tuple[int, int] | None = None) -> dict:
    """Train/test tensors (float64; Y n x 1) of one dataset for one seed, inputs standardised with the training rows."""
    if name in REGRESSION:
        data = gpvi.data.uci.load(name, split=0)
        X, Y, Xt, Yt = data.train_X, data.train_Y, data.test_X, data.test_Y
        y_std = float(data.y_std[0])
    else:
        if name == "banana":
            Xa, Ya = gpvi.data.banana(2000, seed=0)
        elif name == "breast_cancer":
            Xa, Ya = gpvi.data.breast_cancer()
        else:
            raise ValueError(f"unknown dataset {name!r}; one of {DATASETS}")
        X, Y, Xt, Yt = gpvi.data.train_test_split(Xa, Ya, test_fraction=0.2, seed=seed)
        mean, std = X.mean(0), X.std(0, unbiased=False).clamp_min(1e-12)
        X, Xt = (X - mean) / std, (Xt - mean) / std
        y_std = 1.0
    if subsample is not None:
        g = torch.Generator().manual_seed(seed)
        n, t = subsample
        i, j = torch.randperm(X.shape[0], generator=g)[:n], torch.randperm(Xt.shape[0], generator=g)[:t]
        X, Y, Xt, Yt = X[i], Y[i], Xt[j], Yt[j]
    return dict(X=X, Y=Y, test_X=Xt, test_Y=Yt, y_std=y_std, gaussian=name in REGRESSION)


def stream_order(X: torch.Tensor, order: str, seed: int) -> torch.Tensor:
    """Row order of the stream: a seeded permutation, or ascending along the first principal component."""
    if order == "shuffled":
        return torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed))
    if order == "sorted":
        Xc = X - X.mean(0)
        _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)
        pc = Vh[0] * torch.sign(Vh[0][Vh[0].abs().argmax()])  # a fixed sign
        return torch.argsort(Xc @ pc, stable=True)
    raise ValueError(f"unknown order {order!r}")


def batches(data: dict, order: str, seed: int, num_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    idx = stream_order(data["X"], order, seed)
    return [(data["X"][b], data["Y"][b]) for b in torch.tensor_split(idx, num_batches)]


# -- metrics --------------------------------------------------------------------------------------
def gaussian_metrics(mean: torch.Tensor, var: torch.Tensor, y: torch.Tensor, y_std: float) -> dict:
    mean, var, y = mean.reshape(-1), var.reshape(-1), y.reshape(-1)
    nlpd = 0.5 * torch.log(2 * math.pi * var) + 0.5 * (y - mean) ** 2 / var
    rmse = float((y - mean).pow(2).mean().sqrt())
    return dict(nlpd=float(nlpd.mean()), rmse=rmse, rmse_original=rmse * y_std)


def bernoulli_metrics(p: torch.Tensor, y: torch.Tensor) -> dict:
    p, y = p.reshape(-1).clamp(1e-12, 1 - 1e-12), y.reshape(-1)
    nlpd = -(y * p.log() + (1 - y) * (1 - p).log())
    return dict(nlpd=float(nlpd.mean()), accuracy=float(((p > 0.5).to(y) == y).double().mean()))


def model_metrics(model, data: dict) -> dict:
    with torch.no_grad():
        if data["gaussian"]:
            post = model.posterior(data["test_X"], observation_noise=True)
            return gaussian_metrics(post.mean, post.variance, data["test_Y"], data["y_std"])
        return bernoulli_metrics(model.predict_proba(data["test_X"]), data["test_Y"])


# -- runs -----------------------------------------------------------------------------------------
def likelihood(data: dict):
    return None if data["gaussian"] else BernoulliLikelihood()


def run_stream(data: dict, stream: list, budget: int, selection: str, seed: int, m: int) -> dict:
    times = []
    X0, Y0 = stream[0]
    start = time.perf_counter()
    model = gpvi.DualSVGP(
        X0, Y0, likelihood=likelihood(data), num_inducing=m, memory_size=budget, memory_selection=selection, seed=seed
    )
    result = gpvi.fit(model, progress=False)
    times.append(time.perf_counter() - start)
    for Xb, Yb in stream[1:]:
        start = time.perf_counter()
        model.update(Xb, Yb)
        times.append(time.perf_counter() - start)
    memory = model.memory
    out = dict(
        times=times,
        total_time=sum(times),
        first_fit_steps=result.num_steps,
        memory_held=0 if memory is None else int(memory[0].shape[0]),
        num_summarised=model.num_summarised,
        **model_metrics(model, data),
    )
    if data["gaussian"]:
        out["noise"] = float(model.likelihood.noise.mean())
    return out


def run_offline(data: dict, seed: int, m: int) -> dict:
    start = time.perf_counter()
    model = gpvi.DualSVGP(data["X"], data["Y"], likelihood=likelihood(data), num_inducing=m, seed=seed)
    result = gpvi.fit(model, progress=False)
    elapsed = time.perf_counter() - start
    out = dict(total_time=elapsed, steps=result.num_steps, stop_reason=result.stop_reason, **model_metrics(model, data))
    if data["gaussian"]:
        out["noise"] = float(model.likelihood.noise.mean())
    return out


def run_peer(data: dict, stream: list, seed: int, m: int, gpvi_kernel: bool = False) -> dict:
    from gpvi.baselines import StreamingSGPR
    from gpvi.models.priors import default_kernel

    # gpvi_kernel: start from the kernel gpvi's models start from (dimension-scaled lengthscales, outputscale 1)
    kernel = default_kernel(stream[0][0], gaussian=False) if gpvi_kernel else None
    peer = StreamingSGPR(num_inducing=m, kernel=kernel, noise=0.1, max_iter=100, seed=seed)
    times = []
    for Xb, Yb in stream:
        start = time.perf_counter()
        peer.update(Xb, Yb[:, 0])
        times.append(time.perf_counter() - start)
    mean, var = peer.predict_y(data["test_X"])
    outputscale = getattr(peer.kernel, "outputscale", None)
    return dict(
        times=times,
        total_time=sum(times),
        noise=float(peer.noise),
        outputscale=None if outputscale is None else float(outputscale),
        **gaussian_metrics(mean, var, data["test_Y"], data["y_std"]),
    )


# -- the plan -------------------------------------------------------------------------------------
def key(job: dict) -> tuple:
    return (job["data"], job["order"], job["method"], job["budget"], job["selection"], job["seed"])


def plan(args, n_train: dict[str, int]) -> list[dict]:
    """The runs in the order they go, most important first: (0) the core (offline fit; memory 200 leverage and
    random, memory 0, the peer, both orders) on the first ``--core-first`` seeds; (1) the ablations of
    ``--reduced-seeds`` (memory 50, 1000) on their seeds; (2) the core on the other seeds, in ``--late-orders``."""
    reduced = dict(args.reduced_seeds)
    core = sorted((b for b in args.budgets if b not in reduced), key=lambda b: (b != 200, b))
    extra = sorted(b for b in args.budgets if b in reduced)
    jobs = []

    def streams_of(common: dict, budget: int, n: int) -> list[dict]:
        if budget == 0 or budget >= n:
            selections = ["-" if budget == 0 else "all"]
        else:
            selections = list(args.selections)
        return [dict(common, method="stream", budget=budget, selection=s) for s in selections]

    for rank, seed in enumerate(args.seeds):
        late = rank >= args.core_first
        phase = 2 if late else 0
        for name in args.datasets:
            common = dict(data=name, seed=seed, _rank=rank)
            if not args.no_offline:
                jobs.append(dict(common, order="-", method="offline", budget=-1, selection="-", _phase=phase))
            for order in args.orders:
                here = dict(common, order=order)
                if not late or order in args.late_orders:
                    for budget in core:
                        jobs += [dict(j, _phase=phase) for j in streams_of(here, budget, n_train[name])]
                    if name in REGRESSION and not args.no_peer:
                        jobs += [dict(here, method=p, budget=-1, selection="-", _phase=phase) for p in PEERS]
                for budget in extra:
                    if rank < reduced[budget]:
                        jobs += [dict(j, _phase=1) for j in streams_of(here, budget, n_train[name])]
    jobs.sort(key=lambda j: (j["_phase"], j["_rank"]))
    return [{k: v for k, v in j.items() if not k.startswith("_")} for j in jobs]


def run_job(job: dict, args, cache: dict) -> dict:
    name, seed = job["data"], job["seed"]
    if (name, seed) not in cache:
        cache.clear()
        cache[(name, seed)] = load(name, seed, args.subsample)
    data = cache[(name, seed)]
    info = dict(job, N=int(data["X"].shape[0]), N_test=int(data["test_X"].shape[0]), M=args.m)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if job["method"] == "offline":
                res = run_offline(data, seed, args.m)
            else:
                stream = batches(data, job["order"], seed, args.num_batches)
                info["num_batches"] = len(stream)
                if job["method"] in PEERS:
                    res = run_peer(data, stream, seed, args.m, gpvi_kernel=job["method"] == "peer-gpvi-kernel")
                else:
                    selection = "leverage" if job["selection"] in ("-", "all") else job["selection"]
                    res = run_stream(data, stream, job["budget"], selection, seed, args.m)
        if not math.isfinite(res["nlpd"]):
            res["error"] = "non-finite NLPD"
    except Exception as err:  # recorded, the benchmark goes on
        res = dict(error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc()[-3000:])
    return dict(info, **res)


def describe(r: dict) -> str:
    if "error" in r and "nlpd" not in r:
        return f"ERROR {r['error']}"
    metric = f"RMSE {r['rmse']:.4f}" if "rmse" in r else f"acc {r['accuracy']:.4f}"
    return f"NLPD {r['nlpd']:.4f} {metric} time {r['total_time']:.1f} s" + (f" [{r['error']}]" if "error" in r else "")


def warm_up() -> float:
    """The one-time cost of the first optimiser step of a process (torch imports torch._dynamo), paid here."""
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


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def streams(args) -> None:
    out: Path = args.out
    done = {key(r) for r in read_jsonl(out) if "nlpd" in r}
    n_train = {name: load(name, 0, args.subsample)["X"].shape[0] for name in args.datasets}
    jobs = plan(args, n_train)
    todo = [j for j in jobs if key(j) not in done]
    echo(
        f"streams: {len(jobs)} runs planned, {len(jobs) - len(todo)} already in {out}; "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, warm-up {warm_up():.2f} s"
    )
    started = time.perf_counter()
    cache: dict = {}
    for i, job in enumerate(todo):
        elapsed = time.perf_counter() - started
        if args.time_budget is not None and elapsed > args.time_budget:
            echo(f"time budget {args.time_budget:.0f} s spent: {len(todo) - i} runs not started")
            break
        record = run_job(job, args, cache)
        record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        echo(
            f"[{i + 1}/{len(todo)} {elapsed / 60:.1f} min] {job['data']} {job['order']} {job['method']} "
            f"budget {job['budget']} {job['selection']} seed {job['seed']}: {describe(record)}"
        )
    echo(f"streams: done in {(time.perf_counter() - started) / 60:.1f} min")


# -- cost -----------------------------------------------------------------------------------------
def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 4, generator=g, dtype=DT)
    f = torch.sin(2 * math.pi * X[:, 0]) + torch.cos(math.pi * X[:, 1]) * X[:, 2] + X[:, 3] ** 2
    return X, (f + 0.1 * torch.randn(n, generator=g, dtype=DT)).unsqueeze(-1)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def model_bytes(model) -> int | None:
    try:
        buf = io.BytesIO()
        torch.save(model, buf)
        return buf.getbuffer().nbytes
    except Exception:  # noqa: BLE001 (an unpicklable attribute: report nothing)
        return None


def mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def cost(args) -> None:
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    smoke = args.smoke
    n_max, batch, checkpoints = (600, 100, (200, 400, 600)) if smoke else (20_000, 100, (1_000, 5_000, 20_000))
    exact_ns = (200, 400) if smoke else (1_000, 5_000)
    X, Y = synthetic(n_max + 100, seed=0)  # the last 100 points: the conditioning batch
    Xt, Yt = synthetic(1000, seed=1)
    test = dict(test_X=Xt, test_Y=Yt, y_std=1.0, gaussian=True)
    warm = warm_up()
    rss0 = peak_rss_mb()
    echo(f"cost: stream to n = {n_max}, batch {batch}; peak RSS before {rss0:.0f} MB; warm-up {warm:.2f} s")

    record: dict = dict(
        n_max=n_max,
        batch=batch,
        memory=200,
        M=args.m,
        rss_start_mb=rss0,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        machine=platform.processor() or platform.machine(),
        started=datetime.datetime.now().isoformat(timespec="seconds"),
    )
    times, ns, checks = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model = gpvi.DualSVGP(X[:batch], Y[:batch], num_inducing=args.m, memory_size=200, seed=0)
        gpvi.fit(model, progress=False)
        record["first_fit_time"] = time.perf_counter() - start
        for lo in range(batch, n_max, batch):
            start = time.perf_counter()
            model.update(X[lo : lo + batch], Y[lo : lo + batch])
            times.append(time.perf_counter() - start)
            ns.append(lo + batch)
            if lo + batch in checkpoints:
                checks.append(
                    dict(
                        n=lo + batch,
                        peak_rss_mb=peak_rss_mb(),
                        model_bytes=model_bytes(model),
                        **model_metrics(model, test),
                    )
                )
                echo(f"  n = {lo + batch}: {checks[-1]}, last update {times[-1]:.3f} s")
    tenth = max(1, len(times) // 10)
    record.update(
        update_times=times,
        update_n=ns,
        checkpoints=checks,
        first_tenth=sum(times[:tenth]) / tenth,
        last_tenth=sum(times[-tenth:]) / tenth,
    )
    record["tenth_ratio"] = record["last_tenth"] / record["first_tenth"]
    echo(
        f"  update time: first tenth {record['first_tenth']:.3f} s, last tenth {record['last_tenth']:.3f} s, "
        f"ratio {record['tenth_ratio']:.2f}"
    )

    exact = []
    for n in exact_ns:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            gp = SingleTaskGP(X[:n], Y[:n])
            mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
            fit_gpytorch_mll(mll)
            t_fit = time.perf_counter() - start
            gp.eval()
            start = time.perf_counter()
            with torch.no_grad():
                _ = gp.posterior(Xt[:10]).mean  # builds the prediction caches (one Cholesky of the n x n matrix)
            t_cache = time.perf_counter() - start
            metrics = model_metrics(gp, test)
            conds = []
            for rep in range(3):
                Xn, Yn = X[n_max + 0 : n_max + 100], Y[n_max + 0 : n_max + 100] + 0.0 * rep
                start = time.perf_counter()
                with torch.no_grad():
                    fantasy = gp.condition_on_observations(Xn, Yn)
                    _ = fantasy.posterior(Xt[:10]).mean
                conds.append(time.perf_counter() - start)
        near = [t for t, k in zip(times, ns, strict=True) if abs(k - n) <= max(batch * 4, n // 10)]
        row = dict(
            n=n,
            refit_time=t_fit,
            cache_time=t_cache,
            condition_times=conds,
            condition_time=sum(conds) / len(conds),
            stream_update_near_n=sum(near) / len(near),
            peak_rss_mb=peak_rss_mb(),
            **metrics,
        )
        row["refit_over_update"] = t_fit / row["stream_update_near_n"]
        exact.append(row)
        echo(f"  SingleTaskGP n = {n}: {row}")
    record["exact"] = exact

    chol: dict = dict(n=20_000, needed_gb=2 * 20_000**2 * 8 / 1024**3, available_gb=mem_available_gb())
    if smoke:
        chol["skipped"] = "smoke run"
    elif chol["available_gb"] < chol["needed_gb"] + 4:
        chol["skipped"] = f"{chol['available_gb']:.1f} GB available, {chol['needed_gb']:.1f} GB needed (+4 GB margin)"
    else:
        n = 20_000
        kernel = gp.covar_module  # the n = 5 000 fit's hyperparameters
        with torch.no_grad():
            start = time.perf_counter()
            K = kernel(X[:n]).to_dense()
            K.diagonal().add_(float(gp.likelihood.noise.mean()))
            chol["kernel_time"] = time.perf_counter() - start
            start = time.perf_counter()
            L, info = torch.linalg.cholesky_ex(K)
            chol["cholesky_time"] = time.perf_counter() - start
            chol["info"] = int(info)
            del K, L
        chol["peak_rss_mb"] = peak_rss_mb()
    record["cholesky"] = chol
    echo(f"  Cholesky at n = 20 000: {chol}")
    record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    args.cost_out.write_text(json.dumps(record, indent=1))
    echo(f"cost: written to {args.cost_out}")


# -- report ---------------------------------------------------------------------------------------
def mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    mean, se = mean_se(values)
    return f"{mean:.{digits}f}" if math.isnan(se) else f"{mean:.{digits}f} ± {se:.{digits}f}"


def method_label(r: dict) -> str:
    if r["method"] == "stream":
        return f"memory {r['budget']}" + ("" if r["selection"] == "-" else f" {r['selection']}")
    return LABELS[r["method"]]


LABELS = {
    "offline": "offline DualSVGP (all data)",
    "peer": "StreamingSGPR, default kernel",
    "peer-gpvi-kernel": "StreamingSGPR, gpvi's kernel init",
}


def method_rank(r: dict) -> tuple:
    return ({"offline": 0, "stream": 1, "peer": 2, "peer-gpvi-kernel": 3}[r["method"]], r["budget"], r["selection"])


def stream_tables(records: list[dict]) -> tuple[list[str], dict]:
    """Markdown tables per dataset and order; returns the lines and {(data, order, label): {seed: record}}."""
    ok = [r for r in records if "nlpd" in r]
    cells: dict = {}
    for r in sorted(ok, key=method_rank):
        for order in ORDERS if r["method"] == "offline" else [r["order"]]:
            cells.setdefault((r["data"], order), {}).setdefault(method_label(r), {})[r["seed"]] = r
    lines = []
    for data in DATASETS:
        for order in ORDERS:
            if (data, order) not in cells:
                continue
            rows = cells[(data, order)]
            offline = rows.get("offline DualSVGP (all data)", {})
            reg = data in REGRESSION
            second = "RMSE (std. units)" if reg else "accuracy"
            n_train = next(iter(next(iter(rows.values())).values()))["N"]
            lines += [
                f"#### {data}, {order} (N = {n_train} training points)",
                "",
                f"| method | seeds | test NLPD | median NLPD [min, max] | NLPD − offline (paired) | {second} "
                "| total time (s) | mean s / update | in memory / summarised at the end |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for label, by_seed in rows.items():
                rs = list(by_seed.values())
                diffs = [r["nlpd"] - offline[s]["nlpd"] for s, r in by_seed.items() if s in offline]
                diff = "" if label.startswith("offline") else fmt(diffs)
                second_vals = [r["rmse"] if reg else r["accuracy"] for r in rs]
                per_update = [sum(r["times"][1:]) / max(1, len(r["times"]) - 1) for r in rs if "times" in r]
                held = f"{rs[0]['memory_held']} / {rs[0]['num_summarised']}" if r_has(rs, "memory_held") else ""
                lines.append(
                    f"| {label} | {len(rs)} | {fmt([r['nlpd'] for r in rs])} | {spread([r['nlpd'] for r in rs])} "
                    f"| {diff} | {fmt(second_vals)} | "
                    f"{fmt([r['total_time'] for r in rs], 1)} | {fmt(per_update, 3) if per_update else ''} | {held} |"
                )
            lines.append("")
    return lines, cells


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def spread(values: list[float]) -> str:
    return f"{median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def r_has(rs: list[dict], name: str) -> bool:
    return bool(rs) and name in rs[0]


def paired(cells: dict, data: str, order: str, a: str, b: str) -> list[float]:
    """NLPD(a) − NLPD(b) over the seeds both have."""
    ra, rb = cells.get((data, order), {}).get(a, {}), cells.get((data, order), {}).get(b, {})
    return [ra[s]["nlpd"] - rb[s]["nlpd"] for s in ra if s in rb]


def targets(cells: dict) -> list[str]:
    lines = [
        "| target (sorted streams) | data | value (mean ± s.e. over seeds, paired) | median [min, max] | seeds "
        "| met? (by the mean) |",
        "|---|---|---|---|---|---|",
    ]
    for data in DATASETS:
        if (data, "sorted") not in cells:
            continue
        d = paired(cells, data, "sorted", "memory 200 leverage", "offline DualSVGP (all data)")
        if d:
            m, _ = mean_se(d)
            lines.append(
                f"| NLPD(memory 200 leverage) − NLPD(offline) ≤ 0.05 | {data} | {fmt(d)} | {spread(d)} | {len(d)} | "
                f"{'yes' if m <= 0.05 else 'no'} |"
            )
        for budget in (50, 200, 1000):
            d = paired(cells, data, "sorted", f"memory {budget} leverage", f"memory {budget} random")
            if d:
                m, se = mean_se(d)
                verdict = "yes" if m <= 0 else ("no (within noise)" if not math.isnan(se) and m <= 2 * se else "no")
                lines.append(
                    f"| NLPD(leverage) − NLPD(random) ≤ 0, memory {budget} | {data} | {fmt(d)} | {spread(d)} | "
                    f"{len(d)} | {verdict} |"
                )
        for peer in PEERS:
            d = paired(cells, data, "sorted", "memory 200 leverage", LABELS[peer])
            if d:
                m, _ = mean_se(d)
                lines.append(
                    f"| NLPD(memory 200 leverage) − NLPD({LABELS[peer]}) < 0 | {data} | {fmt(d)} | {spread(d)} | "
                    f"{len(d)} | {'yes' if m < 0 else 'no'} |"
                )
    return lines


def cost_table(c: dict) -> list[str]:
    lines = [
        f"Stream: n = {c['batch']} to {c['n_max']}, batch {c['batch']}, memory {c['memory']} (leverage), "
        f"M = {c['M']}, {c['threads']} thread(s), torch {c['torch']}; first fit {c['first_fit_time']:.2f} s; "
        f"peak RSS of the process before the stream {c['rss_start_mb']:.0f} MB.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| mean time per update, first tenth of the stream ({max(1, len(c['update_times']) // 10)} updates) "
        f"| {c['first_tenth']:.3f} s |",
        f"| mean time per update, last tenth | {c['last_tenth']:.3f} s |",
        f"| ratio last / first (target ≤ 1.2) | {c['tenth_ratio']:.2f} |",
        "",
        "| n | peak RSS of the process (MB, ru_maxrss) | model size (torch.save, MB) | stream test NLPD |"
        " stream test RMSE |",
        "|---|---|---|---|---|",
    ]
    for k in c["checkpoints"]:
        size = "–" if k["model_bytes"] is None else f"{k['model_bytes'] / 1024**2:.2f}"
        lines.append(f"| {k['n']} | {k['peak_rss_mb']:.0f} | {size} | {k['nlpd']:.3f} | {k['rmse']:.3f} |")
    lines += [
        "",
        "| n | SingleTaskGP refit (fit_gpytorch_mll, s) | stream update near n (s) | refit ÷ update (target ≥ 20 "
        "at 5 000) | exact posterior cache (s) | condition_on_observations, 100 points (s) | exact GP test NLPD |"
        " peak RSS after (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in c["exact"]:
        lines.append(
            f"| {e['n']} | {e['refit_time']:.2f} | {e['stream_update_near_n']:.3f} | {e['refit_over_update']:.0f}x "
            f"| {e['cache_time']:.3f} | {e['condition_time']:.3f} | {e['nlpd']:.3f} | {e['peak_rss_mb']:.0f} |"
        )
    ch = c["cholesky"]
    lines.append("")
    if "skipped" in ch:
        lines.append(f"Cholesky at n = 20 000: not run ({ch['skipped']}).")
    else:
        lines.append(
            f"One Cholesky of the 20 000 x 20 000 kernel matrix (float64, {ch['needed_gb']:.1f} GB for K and L): "
            f"{ch['cholesky_time']:.1f} s (building K: {ch['kernel_time']:.1f} s; info {ch['info']}); peak RSS "
            f"{ch['peak_rss_mb']:.0f} MB. (A refit evaluates the marginal likelihood and its gradient tens of "
            "times; above 800 points gpytorch does so by CG/Lanczos rather than Cholesky, `max_cholesky_size`.)"
        )
    return lines


def plot_stream_times(records: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in records if "times" in r and r["order"] == "sorted"]
    names = [d for d in DATASETS if any(r["data"] == d for r in sel)]
    if not names:
        return False
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for method, budget, selection, colour, label in [
            ("stream", 200, "leverage", "C0", "memory 200 leverage"),
            ("stream", 0, "-", "C2", "memory 0"),
            ("peer", -1, "-", "C3", "StreamingSGPR, default kernel"),
            ("peer-gpvi-kernel", -1, "-", "C1", "StreamingSGPR, gpvi kernel init"),
        ]:
            rs = [
                r
                for r in sel
                if r["data"] == name and r["method"] == method and r["budget"] == budget and r["selection"] == selection
            ]
            if not rs:
                continue
            for r in rs:
                ax.plot(range(1, len(r["times"])), r["times"][1:], color=colour, alpha=0.25, lw=0.8)
            n = min(len(r["times"]) for r in rs)
            mean = [sum(r["times"][i] for r in rs) / len(rs) for i in range(1, n)]
            ax.plot(range(1, n), mean, color=colour, lw=1.8, label=f"{label} ({len(rs)} seeds)")
        ax.set_title(f"{name}, sorted")
        ax.set_xlabel("batch index")
        ax.set_ylabel("time per update (s)")
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_cost(c: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(c["update_n"], c["update_times"], ".", ms=3, color="C0", alpha=0.5, label="DualSVGP.update (memory 200)")
    k = 10
    smooth = [
        sorted(c["update_times"][max(0, i - k) : i + k + 1])[len(c["update_times"][max(0, i - k) : i + k + 1]) // 2]
        for i in range(len(c["update_times"]))
    ]
    ax.plot(c["update_n"], smooth, color="C0", lw=1.5, label="running median (21 updates)")
    ns = [e["n"] for e in c["exact"]]
    ax.plot(ns, [e["refit_time"] for e in c["exact"]], "s", color="C3", label="SingleTaskGP refit (fit_gpytorch_mll)")
    ax.plot(ns, [e["condition_time"] for e in c["exact"]], "^", color="C1", label="SingleTaskGP condition (100 pts)")
    ch = c["cholesky"]
    if "cholesky_time" in ch:
        ax.plot(ch["n"], ch["cholesky_time"], "x", color="k", ms=8, label="one Cholesky, n = 20 000")
    ax.set_yscale("log")
    ax.set_xlabel("n (points seen)")
    ax.set_ylabel("seconds")
    ax.set_title("time per update vs n (synthetic, d = 4, batch 100)")
    ax.legend(fontsize=7, loc="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args) -> None:
    records = read_jsonl(args.out)
    figdir: Path = args.figdir
    readme: Path = args.readme
    lines = [
        "# Memory-based dual GP on streams",
        "",
        "Generated by `studies/sequential/streams.py --report` from "
        f"`{args.out.name}` ({len(records)} runs) and `{args.cost_out.name}`; see the script's docstring for "
        "the protocol. Chang, Verma, John, Solin & Khan (ICML 2023), *Memory-Based Dual Gaussian Processes "
        "for Sequential Learning*; peer: Bui, Nguyen & Turner (NeurIPS 2017), OSGPR-VFE "
        "(`gpvi.baselines.StreamingSGPR`).",
        "",
        "The loops built on this model (active learning, continual learning on split digits, BO with online "
        "updates) have their studies in [`loops.md`](loops.md).",
        "",
        "## Commands",
        "",
        "```",
        "OMP_NUM_THREADS=1 .venv/bin/python studies/sequential/streams.py --time-budget 3300  # streams.jsonl",
        "OMP_NUM_THREADS=1 .venv/bin/python studies/sequential/streams.py --cost              # cost.json",
        "OMP_NUM_THREADS=1 .venv/bin/python studies/sequential/streams.py --report            # this file + PNGs",
        "```",
        "",
    ]
    notes = args.out.parent / "notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    if records:
        table, cells = stream_tables(records)
        errors = [r for r in records if "error" in r]
        lines += ["## Targets", "", *targets(cells), ""]
        lines += [
            "## Streams",
            "",
            "Mean ± standard error over seeds; NLPD per test point (regression: standardised units with the "
            "noise; classification: Bernoulli log loss). *NLPD − offline* pairs each run with the offline "
            "fit of the same seed. Times: the fit on the first batch plus every update (total), and the updates "
            "alone (per update). The last column: points in the memory / points held only in the frozen "
            "summary after the last batch (first seed).",
            "",
            *table,
        ]
        if errors:
            lines += ["### Runs that failed or gave a non-finite NLPD", ""]
            lines += [
                f"- {r['data']} {r['order']} {r['method']} budget {r['budget']} {r['selection']} seed "
                f"{r['seed']}: `{r['error']}`"
                for r in errors
            ]
            lines.append("")
        if plot_stream_times(records, figdir / "stream_update_times.png"):
            lines += [
                "Time per update against the batch index (sorted order; thin lines: seeds, thick: their mean):",
                "",
                "![time per update, streams](stream_update_times.png)",
                "",
            ]
    if args.cost_out.exists():
        c = json.loads(args.cost_out.read_text())
        plot_cost(c, figdir / "cost_update_times.png")
        lines += ["## Cost", "", *cost_table(c), "", "![time per update vs n](cost_update_times.png)", ""]
    readme.write_text("\n".join(lines))
    echo(f"report: {readme}")


# -- main -----------------------------------------------------------------------------------------
def parse_reduced(text: str) -> tuple[int, int]:
    budget, seeds = text.split("=")
    return int(budget), int(seeds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--orders", nargs="+", default=list(ORDERS), choices=ORDERS)
    parser.add_argument("--budgets", nargs="+", type=int, default=[0, 50, 200, 1000])
    parser.add_argument("--selections", nargs="+", default=list(SELECTIONS), choices=SELECTIONS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--reduced-seeds",
        nargs="*",
        type=parse_reduced,
        default=[(1000, 1), (50, 2)],
        help="BUDGET=K: run that budget on the first K seeds only (default 1000=1 50=2)",
    )
    parser.add_argument("--core-first", type=int, default=3, help="seeds of the core before the ablations")
    parser.add_argument(
        "--late-orders", nargs="+", default=["sorted"], choices=ORDERS, help="orders of the later core seeds"
    )
    parser.add_argument("--num-batches", type=int, default=50)
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument("--no-offline", action="store_true")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--subsample", type=int, nargs=2, default=None, metavar=("N_TRAIN", "N_TEST"))
    parser.add_argument("--time-budget", type=float, default=None, help="start no new run after this many seconds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSONL of the stream runs (appended)")
    parser.add_argument("--cost-out", type=Path, default=DEFAULT_COST)
    parser.add_argument("--cost", action="store_true", help="the cost study instead of the streams")
    parser.add_argument("--report", action="store_true", help="write README.md and the PNGs from the saved results")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    parser.add_argument("--figdir", type=Path, default=HERE)
    parser.add_argument("--smoke", action="store_true", help="1 seed, 5 batches, 250/100 points, budget 50 (seconds)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(DT)
    if args.report:
        report(args)
        return
    if args.smoke:
        args.seeds, args.num_batches, args.budgets, args.selections = [0], 5, [50], ["leverage"]
        args.reduced_seeds, args.subsample = [], args.subsample or (250, 100)
        if (args.cost_out == DEFAULT_COST) if args.cost else (args.out == DEFAULT_OUT):
            parser.error("--smoke needs --out (and --cost-out with --cost) away from the study's results")
    if args.cost:
        cost(args)
    else:
        streams(args)


if __name__ == "__main__":
    sys.exit(main())
