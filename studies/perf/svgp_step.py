"""Performance of one gpvi SVGP training step against gpytorch's own SVGP, and the linear-algebra floor.

    .venv/bin/python studies/perf/svgp_step.py                 # full benchmark (a few minutes)
    .venv/bin/python studies/perf/svgp_step.py --quick         # smoke test (small sizes, seconds)
    .venv/bin/python studies/perf/svgp_step.py --m 256 --repeats 50 --out table.md
    .venv/bin/python studies/perf/svgp_step.py --variants --profile --threads 1   # + variants, op profile

What is timed (see studies/perf/README.md for the method):
- step: forward + backward + Adam step on a random minibatch of B, for `gpvi.SVGP` (objective
  `SVGP.elbo`) and for gpytorch's `ApproximateGP` + `VariationalStrategy` +
  `CholeskyVariationalDistribution` (objective `gpytorch.mlls.VariationalELBO`); both float64,
  same data, same inducing inputs Z, same initial hyperparameters and q. The two models are timed
  in interleaved rounds (alternating which goes first) and the median per-step time is reported.
- predict: posterior mean + variance at 1024 test points in eval mode, no grad; "cold" is the
  first prediction after a parameter change (gpvi: a parameter's version counter is bumped;
  gpytorch: `train(); eval()` clears its caches), "warm" a repeated prediction.
- peak memory: one fresh subprocess per (model, M) measures the peak resident memory of three
  training steps above the resident memory just before them (Linux VmHWM after resetting it).
- floor: a hand-written whitened SVGP step in raw torch (Matérn-5/2 ARD kernel, Cholesky, the
  marginals by either algebra gpvi uses: W = L⁻ᵀ(SSᵀ − I)L⁻¹ by two triangular solves ("floor/W"),
  or A = L⁻¹Kuf with gpytorch's hand-written backward ("floor/A"); Gaussian expected
  log-likelihood, KL, backward, Adam) with the same shapes; floor = the faster of the two;
  "floor fraction" = floor time / gpvi time.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

DTYPE = torch.float64
NUM_TEST = 1024
SQRT5 = math.sqrt(5.0)


# -- data and models ------------------------------------------------------------------------------
def make_data(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """X ~ U[0, 1]^d and y = a smooth function of X plus N(0, 0.1²) noise, `n x d` and `n x 1`."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=gen, dtype=DTYPE)
    w = torch.linspace(1.0, 0.3, d, dtype=DTYPE)
    f = torch.sin(2 * math.pi * X @ w / w.sum() * 2) + 0.5 * torch.cos(3 * X[:, 0]) * X[:, -1]
    y = f + 0.1 * torch.randn(n, generator=gen, dtype=DTYPE)
    return X, y.unsqueeze(-1)


def make_inducing(X: torch.Tensor, m: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return X[torch.randperm(X.shape[0], generator=gen)[:m]].clone()


def initial_values(X: torch.Tensor, m: int) -> dict[str, torch.Tensor]:
    """The shared initial state: gpvi's default lengthscale/noise, gpytorch's default outputscale."""
    d = X.shape[-1]
    gen = torch.Generator().manual_seed(4)
    return {
        "lengthscale": (0.5 * d**0.5 * X.std(0).clamp_min(1e-3)).unsqueeze(0),
        "outputscale": torch.tensor(math.log(2.0), dtype=DTYPE),  # softplus(0), gpytorch's default
        "noise": torch.tensor([0.1], dtype=DTYPE),
        "constant": torch.tensor(0.0, dtype=DTYPE),
        # q(v) away from the prior (as after some training), so that every gradient is non-zero
        "q_mean": 0.3 * torch.randn(m, generator=gen, dtype=DTYPE),
        "q_chol": 0.5 * torch.eye(m, dtype=DTYPE) + 0.02 * torch.randn(m, m, generator=gen, dtype=DTYPE).tril(-1),
    }


@torch.no_grad()
def _set_common(kernel, mean_module, likelihood, init: dict[str, torch.Tensor]) -> None:
    kernel.base_kernel.lengthscale = init["lengthscale"]
    kernel.outputscale = init["outputscale"]
    likelihood.noise = init["noise"]
    mean_module.constant.copy_(init["constant"])


def build_gpvi(X, y, Z, init):
    import gpytorch
    from gpytorch.constraints import GreaterThan

    import gpvi

    # the modules the peers are given (Matérn-5/2 ARD + outputscale, noise > 1e-6, no priors), not gpvi's
    # SingleTaskGP defaults: the benchmark times one step of the same model
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=X.shape[-1]))
    likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=GreaterThan(1e-6))
    model = gpvi.SVGP(X, y, likelihood.to(DTYPE), num_inducing=Z.shape[0], inducing=Z, kernel=kernel.to(DTYPE))
    _set_common(model.model.covar_module, model.model.mean_module, model.likelihood, init)
    model.strategy.set_q(init["q_mean"], init["q_chol"])
    return model


def build_gpytorch(X, y, Z, init):
    import gpytorch
    from gpytorch.constraints import GreaterThan

    from gpvi.baselines import GPyTorchSVGP

    model = GPyTorchSVGP(Z.clone().to(DTYPE))
    # the same noise parameterisation as the gpvi model's likelihood (lower bound 1e-6)
    likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=GreaterThan(1e-6)).to(DTYPE)
    _set_common(model.covar_module, model.mean_module, likelihood, init)
    with torch.no_grad():
        q = model.variational_strategy._variational_distribution
        q.variational_mean.copy_(init["q_mean"])
        q.chol_variational_covar.copy_(init["q_chol"])
        model.variational_strategy.variational_params_initialized.fill_(1)
    mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=X.shape[0])
    return model, likelihood, mll


@dataclass
class Stepper:
    """One training step (forward, backward, Adam) and one prediction of one implementation."""

    name: str
    step: Callable[[torch.Tensor], float]
    predict: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    invalidate: Callable[[], None]  # make the next prediction cold
    params: dict[str, torch.Tensor]  # short name (last component; Z for the inducing inputs) -> parameter
    model: object = None


def gpvi_stepper(X, y, Z, init, lr=0.01) -> Stepper:

    model = build_gpvi(X, y, Z, init)
    N = X.shape[0]
    Y = model.model.train_targets
    params = _short_names(model.named_parameters())
    adam = torch.optim.Adam(params.values(), lr=lr)
    kernel_param = model.model.covar_module.base_kernel.raw_lengthscale

    def step(idx):
        model.train()
        adam.zero_grad(set_to_none=True)
        parts = model.elbo(X[idx], Y[idx], num_data=N)
        loss = -parts.elbo / N
        loss.backward()
        adam.step()
        return float(loss.detach())

    def predict(Xt):
        with torch.no_grad():
            post = model.posterior(Xt)
            return post.mean, post.variance

    def invalidate():
        with torch.no_grad():
            kernel_param.add_(0.0)  # bumps the version counter: the eval cache is rebuilt

    return Stepper("gpvi", step, predict, invalidate, params, model)


def gpvi_marginals_predictor(gpvi: Stepper) -> Stepper:
    """gpvi's diagonal-only prediction (`strategy.marginals`, eval-mode cache), for comparison."""
    model = gpvi.model

    def predict(Xt):
        model.eval()
        with torch.no_grad():
            marg = model.strategy.marginals(Xt)
            return marg.prior_mean + marg.centred_mean, marg.var

    return Stepper("gpvi-marginals", gpvi.step, predict, gpvi.invalidate, gpvi.params, model)


def gpytorch_stepper(X, y, Z, init, lr=0.01) -> Stepper:
    model, likelihood, mll = build_gpytorch(X, y, Z, init)
    Y = y[..., 0]
    params = _short_names([*model.named_parameters(), *likelihood.named_parameters()])
    adam = torch.optim.Adam(params.values(), lr=lr)

    def step(idx):
        model.train()
        likelihood.train()
        adam.zero_grad(set_to_none=True)
        loss = -mll(model(X[idx]), Y[idx])
        loss.backward()
        adam.step()
        return float(loss.detach())

    def predict(Xt):
        with torch.no_grad():
            dist = model(Xt)
            return dist.mean, dist.variance

    def invalidate():
        model.train()  # gpytorch clears its prediction caches on train()
        model.eval()

    def eval_predict(Xt):
        if model.training:
            model.eval()
        return predict(Xt)

    return Stepper("gpytorch", step, eval_predict, invalidate, params)


def _short_names(named) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in named:
        if p.requires_grad:
            short = name.rsplit(".", 1)[-1]
            out["Z" if short == "inducing_points" else short] = p
    return out


# -- the linear-algebra floor: a hand-written whitened SVGP step in raw torch -----------------
def matern52(A: torch.Tensor, B: torch.Tensor, lengthscale: torch.Tensor, outputscale: torch.Tensor):
    """s · (1 + √5 r + 5r²/3) exp(−√5 r), r = ‖(a − b)/ℓ‖; `|A| x |B|`."""
    a, b = A / lengthscale, B / lengthscale
    d2 = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1) - 2.0 * a @ b.mT
    d2 = d2.clamp_min(1e-30)
    s5r = SQRT5 * d2.sqrt()
    return outputscale * (1.0 + s5r + (5.0 / 3.0) * d2) * torch.exp(-s5r)


FLOOR_VARIANTS = {
    "floor/W": "W = L⁻ᵀ(S_½S_½ᵀ − I)L⁻¹ by two triangular solves, var = Σ Kuf ⊙ W Kuf (gpvi's algebra for M < B/2)",
    "floor/A": "A = L⁻¹Kuf with gpytorch's hand-written backward (ComputePredictiveUpdates), middle S − I "
    "(gpvi's algebra for M >= B/2)",
    "floor/L-inverse": "explicit L⁻¹ = solve(L, I), W = (SᵀL⁻¹)ᵀ(SᵀL⁻¹) − L⁻ᵀL⁻¹ (gpvi before 2026-11-24)",
    "floor/A-autograd": "A = L⁻¹Kuf by one triangular solve, var = Σ (S_½ᵀA)² − Σ A² (autograd)",
}
#: Always timed; "floor" is the faster of the two (the algebra gpvi would pick at best).
FLOOR_ALGEBRAS = ["floor/W", "floor/A"]


def floor_stepper(X, y, Z, init, lr=0.01, jitter=1e-6, variant: str = "floor/W") -> Stepper:
    """A hand-written whitened SVGP step in raw torch; ``variant`` picks the algebra for q(f)."""
    N, M = X.shape[0], Z.shape[0]
    Y = y[..., 0]
    inv_softplus = lambda v: v + torch.log(-torch.expm1(-v))
    params = {
        "raw_lengthscale": inv_softplus(init["lengthscale"][0]),
        "raw_outputscale": inv_softplus(init["outputscale"]),
        "raw_noise": inv_softplus(init["noise"][0] - 1e-6),
        "raw_constant": init["constant"],
        "Z": Z,
        "variational_mean": init["q_mean"],
        "chol_variational_covar": init["q_chol"],
    }
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    adam = torch.optim.Adam(params.values(), lr=lr)
    eye = torch.eye(M, dtype=DTYPE)
    softplus = torch.nn.functional.softplus
    if variant == "floor/A":
        from gpytorch.variational.variational_strategy import ComputePredictiveUpdates

    def step(idx):
        adam.zero_grad(set_to_none=True)
        Xb, yb = X[idx], Y[idx]
        Zp, m = params["Z"], params["variational_mean"]
        ls, os_ = softplus(params["raw_lengthscale"]), softplus(params["raw_outputscale"])
        noise = softplus(params["raw_noise"]) + 1e-6
        L = torch.linalg.cholesky(matern52(Zp, Zp, ls, os_) + jitter * eye)
        S_half = params["chol_variational_covar"].tril()
        Kuf = matern52(Zp, Xb, ls, os_)
        if variant == "floor/L-inverse":
            Linv = torch.linalg.solve_triangular(L, eye, upper=False)
            A = S_half.mT @ Linv
            W = A.mT @ A - Linv.mT @ Linv
            mean = Kuf.mT @ (Linv.mT @ m)
            var = ((W @ Kuf) * Kuf).sum(0)
        elif variant == "floor/W":
            right = torch.linalg.solve_triangular(L, S_half @ S_half.mT - eye, upper=False, left=False)
            W = torch.linalg.solve_triangular(L.mT, right, upper=True)
            weights = torch.linalg.solve_triangular(L.mT, m.unsqueeze(-1), upper=True).squeeze(-1)
            mean = Kuf.mT @ weights
            var = ((W @ Kuf) * Kuf).sum(0)
        elif variant == "floor/A-autograd":
            A = torch.linalg.solve_triangular(L, Kuf, upper=False)
            T = S_half.mT @ A
            mean = A.mT @ m
            var = (T * T).sum(0) - (A * A).sum(0)
        elif variant == "floor/A":
            mean, var = ComputePredictiveUpdates.apply(L, Kuf, S_half @ S_half.mT - eye, m)
        else:
            raise ValueError(variant)
        mean = params["raw_constant"] + mean
        var = os_ + var
        ell = -0.5 * (torch.log(2 * math.pi * noise) + ((yb - mean) ** 2 + var) / noise)
        log_det = 2.0 * S_half.diagonal().abs().log().sum()
        kl = 0.5 * (S_half.pow(2).sum() + m.pow(2).sum() - M - log_det)
        loss = -(ell.sum() * (N / Xb.shape[0]) - kl) / N
        loss.backward()
        adam.step()
        return float(loss.detach())

    def no_predict(Xt):
        raise NotImplementedError

    return Stepper(variant, step, no_predict, lambda: None, params)


# -- timing ---------------------------------------------------------------------------------------
def time_steps(steppers: list[Stepper], batches: list[torch.Tensor], warmup: int) -> dict[str, list[float]]:
    """Per-step seconds of each stepper, in interleaved rounds (the order alternates every round)."""
    for i in range(warmup):
        for s in steppers:
            s.step(batches[i % len(batches)])
    times: dict[str, list[float]] = {s.name: [] for s in steppers}
    for r, idx in enumerate(batches):
        order = steppers if r % 2 == 0 else steppers[::-1]
        for s in order:
            t0 = time.perf_counter()
            s.step(idx)
            times[s.name].append(time.perf_counter() - t0)
    return times


def time_predictions(steppers: list[Stepper], Xt: torch.Tensor, repeats: int) -> dict[str, list[float]]:
    """Cold and warm prediction times of each stepper, interleaved."""
    for s in steppers:  # first call: any lazy setup
        s.invalidate()
        s.predict(Xt)
    times: dict[str, list[float]] = {}
    for r in range(repeats):
        order = steppers if r % 2 == 0 else steppers[::-1]
        for s in order:
            s.invalidate()
            t0 = time.perf_counter()
            s.predict(Xt)
            t1 = time.perf_counter()
            s.predict(Xt)
            t2 = time.perf_counter()
            times.setdefault(f"{s.name}/cold", []).append(t1 - t0)
            times.setdefault(f"{s.name}/warm", []).append(t2 - t1)
    return times


def _grad_gap(a: Stepper, b: Stepper) -> float:
    """Max over parameters of max|∇a − ∇b| / max|∇b| after one step of each."""
    if sorted(a.params) != sorted(b.params):
        raise RuntimeError(f"parameter sets differ: {sorted(a.params)} vs {sorted(b.params)}")
    return max(
        float((a.params[k].grad - b.params[k].grad).abs().max() / b.params[k].grad.abs().max().clamp_min(1e-12))
        for k in a.params
    )


def check_agreement(X, y, Z, init, idx, variants: list[str]) -> dict[str, tuple[float, float]]:
    """(|Δloss|, max relative gradient gap) of gpytorch and of each floor against gpvi at the shared start.

    A learning rate of 0 leaves the parameters where they are; the gradients are those of the step.
    """
    ref = gpvi_stepper(X, y, Z, init, lr=0.0)
    loss = ref.step(idx)
    out = {}
    others = [gpytorch_stepper(X, y, Z, init, lr=0.0)] + [
        floor_stepper(X, y, Z, init, lr=0.0, variant=v) for v in variants
    ]
    for other in others:
        other_loss = other.step(idx)
        out[other.name] = (abs(other_loss - loss), _grad_gap(other, ref))
    return out


# -- profile: where a step spends its time, by class of operation --------------------------------
OP_CLASSES = [
    "GEMM M×M·M×M",
    "GEMM with M²B flops",
    "triangular solve, M×B right-hand side",
    "triangular solve, M×M or vector right-hand side",
    "Cholesky",
    "elementwise / copy on M×B",
    "elementwise / copy / tril on M×M",
    "small GEMM (kernel distances, mat-vec)",
    "other aten ops",
]


def _op_class(key: str, shapes: list, M: int, B: int) -> str:
    mats = [tuple(x) for x in shapes if isinstance(x, list) and len(x) == 2]
    if key in ("aten::mm", "aten::bmm", "aten::addmm"):
        if len(mats) >= 2 and mats[0] == (M, M) and mats[1] == (M, M):
            return OP_CLASSES[0]
        if len(mats) >= 2 and min(min(mats[0]), min(mats[1])) >= M and B in {d for m in mats for d in m}:
            return OP_CLASSES[1]
        return OP_CLASSES[7]
    if key == "aten::linalg_solve_triangular":
        return OP_CLASSES[2] if len(mats) > 1 and B in mats[1] else OP_CLASSES[3]
    if key == "aten::linalg_cholesky_ex":
        return OP_CLASSES[4]
    if (M, B) in mats or (B, M) in mats:
        return OP_CLASSES[5]
    if (M, M) in mats:
        return OP_CLASSES[6]
    return OP_CLASSES[8]


def profile_steps(steppers: list[Stepper], batches: list[torch.Tensor], M: int, B: int) -> dict:
    """Profiler self time (ms per step) and op count per step of each class, interleaved rounds."""
    from torch.profiler import ProfilerActivity, profile

    out = {s.name: {c: [0.0, 0.0] for c in OP_CLASSES} for s in steppers}
    for r, idx in enumerate(batches):
        for s in steppers if r % 2 == 0 else steppers[::-1]:
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                s.step(idx)
            for e in prof.key_averages(group_by_input_shape=True):
                if e.key.startswith("aten::"):
                    cell = out[s.name][_op_class(e.key, e.input_shapes, M, B)]
                    cell[0] += e.self_cpu_time_total / 1e3 / len(batches)
                    cell[1] += e.count / len(batches)
    return out


def profile_report(args, X, y) -> list[str]:
    out = [
        "",
        "Profile of one step (torch.profiler self CPU time, ms per step, with the number of ops "
        "per step; views excluded from the times but not from 'other' counts):",
    ]
    for m in args.m:
        Z, init = make_inducing(X, m), initial_values(X, m)
        gen = torch.Generator().manual_seed(5)
        batches = [torch.randperm(args.n, generator=gen)[: args.batch] for _ in range(args.warmup + 10)]
        floor = floor_stepper(X, y, Z, init, variant="floor/A" if 2 * m >= args.batch else "floor/W")
        steppers = [gpvi_stepper(X, y, Z, init), gpytorch_stepper(X, y, Z, init), floor]
        time_steps(steppers, batches[: args.warmup], args.warmup)  # warm-up, same allocator history
        prof = profile_steps(steppers, batches[args.warmup :], m, args.batch)
        names = [s.name for s in steppers]
        out += [
            "",
            f"M={m}, B={args.batch}:",
            "",
            "| op class | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for c in OP_CLASSES:
            out.append(f"| {c} | " + " | ".join(f"{prof[n][c][0]:.1f} ({prof[n][c][1]:.0f})" for n in names) + " |")
        out.append("| total | " + " | ".join(f"{sum(v[0] for v in prof[n].values()):.1f}" for n in names) + " |")
    return out


# -- memory: one subprocess per (implementation, M) ----------------------------------------------
def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_hwm() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _tensor_peak_bytes(step: Callable[[], object]) -> int:
    """Peak of live tensor bytes allocated during ``step`` (torch.profiler allocation records)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    records = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    return peak


def memory_child(args) -> None:
    """Run in a fresh process: peak memory of 3 training steps of one implementation."""
    X, y = make_data(args.n, args.d, seed=0)
    m = args.m[0]
    Z = make_inducing(X, m)
    init = initial_values(X, m)
    make = gpvi_stepper if args.memory_child == "gpvi" else gpytorch_stepper
    stepper = make(X, y, Z, init)
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randperm(args.n, generator=gen)[: args.batch] for _ in range(5)]
    stepper.step(batches[0])  # warm-up: Adam state, lazy initialisation
    tensor_peak = _tensor_peak_bytes(lambda: stepper.step(batches[1]))
    gc.collect()
    base = _proc_status_kb("VmRSS")
    reset = _reset_hwm()
    for idx in batches[2:5]:
        stepper.step(idx)
    peak = _proc_status_kb("VmHWM")
    print(json.dumps({"rss_peak_mb": (peak - base) / 1024, "tensor_peak_mb": tensor_peak / 2**20, "hwm_reset": reset}))


def measure_memory(impl: str, m: int, args) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-child",
        impl,
        "--m",
        str(m),
        "--n",
        str(args.n),
        "--batch",
        str(args.batch),
        "--d",
        str(args.d),
    ]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    # A fixed mmap threshold turns off glibc's dynamic threshold, so freed tensors above 128 KiB go
    # back to the OS at once and the resident set follows live tensor memory.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- report ---------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    import gpytorch

    return (
        f"torch {torch.__version__}, gpytorch {gpytorch.__version__}, python {platform.python_version()}, "
        f"threads {torch.get_num_threads()}, CPU {cpu_model()} ({os.cpu_count()} logical cores)"
    )


def med_ms(values: list[float]) -> float:
    return 1e3 * statistics.median(values)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def run(args) -> str:
    import gpvi  # noqa: F401  (gpvi's warnings filter precedes gpytorch)

    load_start = os.getloadavg()
    started = time.perf_counter()
    X, y = make_data(args.n, args.d, seed=0)
    Xt = torch.rand(NUM_TEST, args.d, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    header = (
        "| M | gpvi step ms | gpytorch step ms | ratio gpvi/gpytorch | gpvi predict ms (cold/warm) "
        "| gpytorch predict ms (cold/warm) | predict ratio (cold/warm) | peak MB gpvi | peak MB gpytorch "
        "| memory ratio | floor ms | floor fraction |"
    )
    lines = [header, "|" + "---|" * 12]
    variant_names = [v for v in FLOOR_VARIANTS if args.variants or v in FLOOR_ALGEBRAS]
    variant_lines = [
        "| M | " + " | ".join(f"{v} ms" for v in ["gpvi", "gpytorch", *variant_names]) + " |",
        "|---|" + "---|" * (2 + len(variant_names)),
    ]
    notes = []
    for m in args.m:
        Z = make_inducing(X, m)
        init = initial_values(X, m)
        gen = torch.Generator().manual_seed(2)
        batches = [torch.randperm(args.n, generator=gen)[: args.batch] for _ in range(args.repeats)]
        agree = check_agreement(X, y, Z, init, batches[0], variant_names)
        steppers = [gpvi_stepper(X, y, Z, init), gpytorch_stepper(X, y, Z, init)]
        floors = [floor_stepper(X, y, Z, init, variant=v) for v in variant_names]
        st = time_steps(steppers + floors, batches, args.warmup)
        pt = time_predictions(steppers + [gpvi_marginals_predictor(steppers[0])], Xt, max(5, args.repeats // 2))
        if args.no_memory:
            mem = {impl: {"rss_peak_mb": float("nan"), "tensor_peak_mb": float("nan")} for impl in ("gpvi", "gpytorch")}
        else:
            mem = {impl: measure_memory(impl, m, args) for impl in ("gpvi", "gpytorch")}
        g, t = med_ms(st["gpvi"]), med_ms(st["gpytorch"])
        floor_name = min(FLOOR_ALGEBRAS, key=lambda v: med_ms(st[v]))
        f = med_ms(st[floor_name])
        gc_, gw = med_ms(pt["gpvi/cold"]), med_ms(pt["gpvi/warm"])
        tc, tw = med_ms(pt["gpytorch/cold"]), med_ms(pt["gpytorch/warm"])
        mg, mt = mem["gpvi"]["rss_peak_mb"], mem["gpytorch"]["rss_peak_mb"]
        lines.append(
            f"| {m} | {g:.1f} | {t:.1f} | {_ratio(g, t):.2f} | {gc_:.1f} / {gw:.1f} | {tc:.1f} / {tw:.1f} "
            f"| {_ratio(gc_, tc):.2f} / {_ratio(gw, tw):.2f} | {mg:.1f} | {mt:.1f} | {_ratio(mg, mt):.2f} "
            f"| {f:.1f} | {_ratio(f, g):.2f} |"
        )
        cells = " | ".join(f"{med_ms(st[v]):.1f}" for v in ["gpvi", "gpytorch", *variant_names])
        variant_lines.append(f"| {m} | {cells} |")
        notes.append(
            f"M={m}: step-time IQR gpvi {_iqr_ms(st['gpvi'])}, gpytorch {_iqr_ms(st['gpytorch'])}, "
            f"floor ({floor_name}) {_iqr_ms(st[floor_name])}; gpvi `strategy.marginals` (diagonal only) predict "
            f"{med_ms(pt['gpvi-marginals/cold']):.1f} / {med_ms(pt['gpvi-marginals/warm']):.1f} ms (cold/warm); "
            f"tensor peak (torch.profiler) gpvi {mem['gpvi']['tensor_peak_mb']:.1f} MB, "
            f"gpytorch {mem['gpytorch']['tensor_peak_mb']:.1f} MB; agreement with gpvi at the shared start "
            "(|Δloss|, max rel. gradient gap): "
            + ", ".join(f"{k} ({dl:.0e}, {dg:.0e})" for k, (dl, dg) in agree.items())
        )
    setup = (
        f"N={args.n}, D={args.d}, B={args.batch}, float64, {args.repeats} timed steps per model "
        f"(interleaved, after {args.warmup} warm-up), predictions at {NUM_TEST} test points "
        f"({max(5, args.repeats // 2)} repeats)"
    )
    load_end = os.getloadavg()
    setup += (
        f"; load average (1 min) {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; "
        f"{time.perf_counter() - started:.0f} s"
    )
    out = [machine_line(), setup, "", *lines, "", *("- " + n for n in notes)]
    if args.profile:
        out += profile_report(args, X, y)
    out += [
        "",
        "Step time (median ms) of the floor variants (floor = the faster of floor/W and floor/A):",
        "",
        *variant_lines,
        "",
        *(f"- {k}: {v}" for k, v in FLOOR_VARIANTS.items() if k in variant_names),
    ]
    return "\n".join(out)


def _iqr_ms(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"[{1e3 * q[0]:.1f}, {1e3 * q[2]:.1f}] ms"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="training points N")
    p.add_argument("--d", type=int, default=8, help="input dimension D")
    p.add_argument("--batch", type=int, default=1024, help="minibatch size B")
    p.add_argument("--m", type=int, nargs="+", default=[256, 512], help="numbers of inducing points")
    p.add_argument("--repeats", type=int, default=30, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up steps per model")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument(
        "--variants",
        action="store_true",
        help="also time alternative raw-torch formulations of the step (see FLOOR_VARIANTS)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile one step of gpvi, gpytorch and the floor by class of operation",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default, left untouched)"
    )
    p.add_argument("--out", type=str, default=None, help="also write the table to this file")
    p.add_argument("--memory-child", choices=["gpvi", "gpytorch"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.batch, args.m, args.repeats, args.warmup = 2000, 256, [32], 6, 2
        # one thread: a smoke test must not stall on a busy machine (OpenMP barriers under contention)
        args.threads = 1 if args.threads is None else args.threads
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        import gpvi  # noqa: F401

        memory_child(args)
        return
    report = run(args)
    print(report)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(report + "\n")


if __name__ == "__main__":
    main()
