"""Known-answer tests for `gpvi.baselines.StreamingSGPR` (Bui, Nguyen & Turner 2017, OSGPR-VFE).

Every reference value is computed densely in numpy from explicit N x N matrices, independently of
the whitened/precision form the implementation uses: Titsias' bound and SGPR posterior for one
batch, the paper's collapsed online bound with its explicit D_a and Δ_a for a second batch.
Jitter convention (see the class docstring): inducing covariances get ``jitter`` on the diagonal,
and a kept inducing input is the same variable in a and b, so K_ab gets ``jitter`` where a row of
Z_a equals a row of Z_b.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pytest
import torch

from gpvi.baselines import StreamingSGPR

JITTER = 1e-6


def _K(kernel, A: torch.Tensor, B: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return kernel(A, B).to_dense().numpy()


def _data(n: int, d: int = 1, seed: int = 0, lo: float = 0.0, hi: float = 6.0):
    gen = torch.Generator().manual_seed(seed)
    X = lo + (hi - lo) * torch.rand(n, d, generator=gen, dtype=torch.float64)
    y = torch.sin(1.3 * X).sum(-1) + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
    return X, y


def _log_normal(y: np.ndarray, C: np.ndarray) -> float:
    sign, logdet = np.linalg.slogdet(C)
    assert sign > 0
    return float(-0.5 * y @ np.linalg.solve(C, y) - 0.5 * logdet - 0.5 * len(y) * math.log(2 * math.pi))


def _Kbb_chol(kernel, Z) -> np.ndarray:
    return np.linalg.cholesky(_K(kernel, Z, Z) + JITTER * np.eye(len(Z)))


def _titsias_dense(kernel, s2: float, Z, X, y) -> float:
    """log N(y | 0, Q_ff + σ²I) − tr(K_ff − Q_ff) / (2σ²), with the N x N matrices."""
    V = np.linalg.solve(_Kbb_chol(kernel, Z), _K(kernel, Z, X))
    Qff, Kff = V.T @ V, _K(kernel, X, X)
    yn = y.numpy()
    return _log_normal(yn, Qff + s2 * np.eye(len(yn))) - np.trace(Kff - Qff) / (2 * s2)


def _sgpr_posterior_dense(kernel, s2: float, Z, X, y, Xs):
    """Titsias' optimal q(b) = N(m, S) and the SGPR latent predictive mean/variance at Xs.

    N x N (DTC) form, well conditioned because C = Q_ff + σ²I ≥ σ²I: b | y under
    y = K_fb K_bb⁻¹ b + N(0, σ²I) gives m = K_bf C⁻¹ y, S = K_bb − K_bf C⁻¹ K_fb, and
    f_* has mean Q_*f C⁻¹ y and variance k_** − Q_*f C⁻¹ Q_f*.
    """
    L = _Kbb_chol(kernel, Z)
    V, Vs = np.linalg.solve(L, _K(kernel, Z, X)), np.linalg.solve(L, _K(kernel, Z, Xs))
    C = V.T @ V + s2 * np.eye(len(X))
    Kbf, yn = _K(kernel, Z, X), y.numpy()
    m = Kbf @ np.linalg.solve(C, yn)
    S = L @ L.T - Kbf @ np.linalg.solve(C, Kbf.T)
    Qsf = Vs.T @ V
    mean = Qsf @ np.linalg.solve(C, yn)
    var = np.diag(_K(kernel, Xs, Xs)) - np.einsum("sn,ns->s", Qsf, np.linalg.solve(C, Qsf.T))
    return m, S, mean, var


def _fixed_kernel_model(num_inducing: int, **kw) -> StreamingSGPR:
    from gpytorch.kernels import RBFKernel, ScaleKernel

    kernel = ScaleKernel(RBFKernel()).double()
    kernel.base_kernel.lengthscale = 0.8
    kernel.outputscale = 1.3
    return StreamingSGPR(num_inducing, kernel=kernel, noise=0.05, **kw)


# -- 1. one batch is collapsed SGPR ------------------------------------------------------------


def test_single_batch_is_titsias_sgpr() -> None:
    X, y = _data(60, d=2, seed=1)
    Xs, _ = _data(25, d=2, seed=2)
    model = StreamingSGPR(9, max_iter=15).update(X, y.unsqueeze(-1))
    assert model.Z.shape == (9, 2) and all((X == z).all(-1).any() for z in model.Z)  # Z drawn from X
    s2 = model.noise.item()
    assert model.bound().item() == pytest.approx(_titsias_dense(model.kernel, s2, model.Z, X, y), rel=1e-10, abs=1e-8)
    m, S, mean, var = _sgpr_posterior_dense(model.kernel, s2, model.Z, X, y, Xs)
    got_mean, got_var = model.predict(Xs)
    np.testing.assert_allclose(got_mean.numpy(), mean, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(got_var.numpy(), var, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.q_mean.numpy(), m, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.q_covar.numpy(), S, rtol=1e-8, atol=1e-8)
    mean_y, var_y = model.predict_y(Xs)
    torch.testing.assert_close(mean_y, got_mean)
    torch.testing.assert_close(var_y, got_var + s2)


def test_fewer_points_than_inducing_uses_all_inputs() -> None:
    X, y = _data(6, seed=3)
    model = StreamingSGPR(10, max_iter=0).update(X, y)
    assert model.Z.shape == (6, 1)
    torch.testing.assert_close(model.Z.sort(0).values, X.sort(0).values)


# -- 2. fixed θ and fixed Z: streaming is exact ---------------------------------------------------


def _three_batches():
    X, y = _data(120, seed=4)
    return [(X[i : i + 40], y[i : i + 40]) for i in (0, 40, 80)], X, y


def test_fixed_theta_and_Z_streaming_equals_batch_sgpr() -> None:
    batches, X, y = _three_batches()
    Xs = torch.linspace(-1, 7, 30, dtype=torch.float64).unsqueeze(-1)
    model = _fixed_kernel_model(10, new_inducing_fraction=0.0, learn_hyperparameters=False)
    for i, (Xb, yb) in enumerate(batches):
        model.update(Xb, yb)
        if i == 0:
            Z0 = model.Z.clone()
        torch.testing.assert_close(model.Z, Z0, rtol=0, atol=0)
        seen_X, seen_y = X[: 40 * (i + 1)], y[: 40 * (i + 1)]
        _, _, mean, var = _sgpr_posterior_dense(model.kernel, 0.05, Z0, seen_X, seen_y, Xs)
        got_mean, got_var = model.predict(Xs)
        np.testing.assert_allclose(got_mean.numpy(), mean, rtol=0, atol=1e-8)
        np.testing.assert_allclose(got_var.numpy(), var, rtol=0, atol=1e-8)


# -- 4. the bound telescopes when Z and θ do not change ---------------------------------------------


def test_fixed_theta_and_Z_online_bound_telescopes() -> None:
    """With Z_b = Z_a, θ = θ_old and q_old Titsias-optimal, q_old(a)/p(a) = exp(E[log p(y_old|f)|a] − F_old),
    so the online bound of batch t is F_Titsias(batches 1..t) − F_Titsias(batches 1..t−1), exactly."""
    batches, X, y = _three_batches()
    model = _fixed_kernel_model(10, new_inducing_fraction=0.0, learn_hyperparameters=False)
    previous = 0.0
    for i, (Xb, yb) in enumerate(batches):
        model.update(Xb, yb)
        total = _titsias_dense(model.kernel, 0.05, model.Z, X[: 40 * (i + 1)], y[: 40 * (i + 1)])
        assert model.bound().item() == pytest.approx(total - previous, rel=1e-9, abs=1e-8)
        previous = total


# -- 3. the online bound equals the paper's explicit dense formula --------------------------------


def _bui_dense(kernel, s2, Zb, same, Xb, yb, kernel_old, s2_old, Za, Xa, ya, Xs):
    """The paper's collapsed bound with explicit D_a and Δ_a, and the optimal q(b)'s predictions at Xs.

    q_old(a) = N(m_a, S_a) is Titsias' optimum for batch (Xa, ya) under θ_old at Z_a; ``same``
    (M_a x M_b) marks the pairs (a_i, b_k) that are one inducing variable kept from Z_a. Returns
    F, the predictive mean and variance, and cond(D_a⁻¹) (the explicit form needs D_a⁻¹ well conditioned).
    """
    Ma, n = len(Za), len(Xb)
    Kaa_old = _K(kernel_old, Za, Za) + JITTER * np.eye(Ma)
    m_a, S_a, _, _ = _sgpr_posterior_dense(kernel_old, s2_old, Za, Xa, ya, Xa[:1])
    Lb = _Kbb_chol(kernel, Zb)
    Kfb, Kff = _K(kernel, Xb, Zb), _K(kernel, Xb, Xb)
    Kab, Kaa = _K(kernel, Za, Zb) + JITTER * same, _K(kernel, Za, Za) + JITTER * np.eye(Ma)
    Sa_inv, Kaa_old_inv = np.linalg.inv(S_a), np.linalg.inv(Kaa_old)
    Da_inv = Sa_inv - Kaa_old_inv
    Da = np.linalg.inv(Da_inv)
    y_hat = np.concatenate([yb.numpy(), Da @ Sa_inv @ m_a])  # ŷ = [y; D_a S_a⁻¹ m_a]
    V_hat = np.linalg.solve(Lb, np.vstack([Kfb, Kab]).T)  # L_b⁻¹ K̂_bf, K̂_fb = [K_fb; K_ab]
    Sigma_hat = np.block([[s2 * np.eye(n), np.zeros((n, Ma))], [np.zeros((Ma, n)), Da]])
    C = V_hat.T @ V_hat + Sigma_hat  # K̂_fb K_bb⁻¹ K̂_bf + Σ̂_y, (n + M_a) x (n + M_a)
    Qff, Qaa = V_hat[:, :n].T @ V_hat[:, :n], V_hat[:, n:].T @ V_hat[:, n:]
    logdet = lambda A: np.linalg.slogdet(A)[1]
    delta = (
        0.5 * logdet(Kaa_old)
        - 0.5 * logdet(S_a)
        + 0.5 * logdet(Da)
        + 0.5 * m_a @ (Sa_inv @ Da @ Sa_inv - Sa_inv) @ m_a
        + 0.5 * Ma * math.log(2 * math.pi)
    )
    F = _log_normal(y_hat, C) - 0.5 * np.trace(Kff - Qff) / s2 - 0.5 * np.trace(Da_inv @ (Kaa - Qaa)) + delta
    # optimal q(b) = p(b | ŷ) under ŷ = K̂_fb K_bb⁻¹ b + N(0, Σ̂_y): DTC prediction with the augmented data
    Qs_hat = np.linalg.solve(Lb, _K(kernel, Zb, Xs)).T @ V_hat
    mean = Qs_hat @ np.linalg.solve(C, y_hat)
    var = np.diag(_K(kernel, Xs, Xs)) - np.einsum("sn,ns->s", Qs_hat, np.linalg.solve(C, Qs_hat.T))
    return F, mean, var, np.linalg.cond(Da_inv)


@pytest.mark.parametrize("learn_inducing", [False, True])
def test_online_bound_and_posterior_match_the_papers_dense_formula(learn_inducing: bool) -> None:
    """Batch 2 with θ ≠ θ_old and Z_b ≠ Z_a (70 % kept): bound and q(b) against the explicit dense
    formula, at the optimised θ and at an arbitrary one. Batch 1 uses a short lengthscale so that
    S_a and D_a⁻¹ are well conditioned and the explicit inverses of the reference are accurate."""
    Xa, ya = _data(50, seed=5)
    Xb, yb = _data(45, seed=6, lo=1.0, hi=7.0)
    Xs = torch.linspace(-1, 8, 20, dtype=torch.float64).unsqueeze(-1)
    model = _fixed_kernel_model(6, max_iter=15, learn_hyperparameters=False, seed=1)
    model.kernel.base_kernel.lengthscale = 0.5
    model.update(Xa, ya)
    kernel_old, s2_old, Za = copy.deepcopy(model.kernel), model.noise.item(), model.Z.clone()
    model.learn_hyperparameters, model.learn_inducing = True, learn_inducing
    twin = copy.deepcopy(model)
    twin.max_iter = 0
    Zb_start = twin.update(Xb, yb).Z  # Z_b before optimisation: 70 % of Z_a kept, 30 % from Xb
    same = (Za[:, None, :] == Zb_start[None, :, :]).all(-1)
    assert int(same.sum()) == 6 - round(0.3 * 6) and same.sum(0).le(1).all()
    model.update(Xb, yb)
    Zb = model.Z
    assert learn_inducing != torch.equal(Zb, Zb_start)
    assert model.noise.item() != s2_old  # θ moved: θ ≠ θ_old
    same = same.numpy().astype(float)

    # at the optimised θ: the bound and q(b)'s predictions
    args = (Zb, same, Xb, yb, kernel_old, s2_old, Za, Xa, ya, Xs)
    F, mean, var, cond = _bui_dense(model.kernel, model.noise.item(), *args)
    assert cond < 1e4
    assert model.bound().item() == pytest.approx(F, rel=1e-10, abs=1e-8)
    got_mean, got_var = model.predict(Xs)
    np.testing.assert_allclose(got_mean.numpy(), mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got_var.numpy(), var, rtol=0, atol=1e-8)

    # at a non-optimal θ: the bound only (q(b) stays as set by `update`)
    model.kernel.base_kernel.lengthscale = 1.7
    model.kernel.outputscale = 0.6
    model.noise = 0.3
    F, _, _, _ = _bui_dense(model.kernel, 0.3, *args)
    assert model.bound().item() == pytest.approx(F, rel=1e-10, abs=1e-8)


def test_lbfgs_raises_the_online_bound() -> None:
    Xa, ya = _data(40, seed=7)
    Xb, yb = _data(40, seed=8, lo=2.0, hi=8.0)
    for learn_inducing in (False, True):
        fixed = StreamingSGPR(8, max_iter=0).update(Xa, ya).update(Xb, yb)
        fitted = StreamingSGPR(8, max_iter=0).update(Xa, ya)
        fitted.max_iter, fitted.learn_inducing = 30, learn_inducing
        fitted.update(Xb, yb)  # same seed: same Z_b to start from, same θ_old, q_old
        assert fitted.bound().item() > fixed.bound().item() + 1.0


# -- 5. bad input ---------------------------------------------------------------------------------


def test_bad_input_raises_value_error_naming_the_argument() -> None:
    X, y = _data(20, d=2, seed=9)
    model = StreamingSGPR(5, max_iter=0)
    with pytest.raises(ValueError, match="`X`"):
        model.update(X[:, 0], y)
    with pytest.raises(ValueError, match="`y`"):
        model.update(X, y[:-1])
    with pytest.raises(ValueError, match="`y`"):
        model.update(X, torch.stack([y, y], -1))
    X_nan, y_nan = X.clone(), y.clone()
    X_nan[3, 1], y_nan[4] = float("nan"), float("nan")
    with pytest.raises(ValueError, match="`X`"):
        model.update(X_nan, y)
    with pytest.raises(ValueError, match="`y`"):
        model.update(X, y_nan)
    with pytest.raises(ValueError, match="`X`"):
        model.update(X[:0], y[:0])
    model.update(X, y)
    with pytest.raises(ValueError, match="`X`"):
        model.update(X[:, :1], y)  # d changed
    with pytest.raises(ValueError, match="`X`"):
        model.predict(X[:, :1])
    with pytest.raises(ValueError, match="new_inducing_fraction"):
        StreamingSGPR(new_inducing_fraction=1.5)
    with pytest.raises(ValueError, match="noise"):
        StreamingSGPR(noise=-1.0)
    with pytest.raises(RuntimeError, match="update"):
        StreamingSGPR().predict(X)


# -- sanity: a stream of sorted batches does about as well as batch SGPR ---------------------------


def test_sine_stream_rmse_close_to_batch_sgpr() -> None:
    gen = torch.Generator().manual_seed(10)
    X = (torch.rand(500, 1, generator=gen, dtype=torch.float64) * 10).sort(0).values
    y = torch.sin(X[:, 0]) + 0.1 * torch.randn(500, generator=gen, dtype=torch.float64)
    Xs = torch.linspace(0, 10, 200, dtype=torch.float64).unsqueeze(-1)
    t0 = time.perf_counter()
    stream = StreamingSGPR(20, max_iter=30)
    for i in range(10):  # not iid: each batch of 50 covers the next stretch of x, as in the paper's toy
        stream.update(X[50 * i : 50 * (i + 1)], y[50 * i : 50 * (i + 1)])
    assert time.perf_counter() - t0 < 5.0
    batch = StreamingSGPR(20, max_iter=30).update(X, y)
    truth = torch.sin(Xs[:, 0])
    rmse = lambda m: (m.predict(Xs)[0] - truth).square().mean().sqrt().item()
    assert stream.num_updates == 10 and stream.Z.shape == (20, 1)
    assert rmse(stream) < 1.5 * rmse(batch) + 0.01 and rmse(stream) < 0.04
