"""Reference baselines built from plain gpytorch, for demos, benchmarks and studies.

`GPyTorchSVGP` is the textbook gpytorch SVGP (Hensman et al. 2015): an `ApproximateGP` with a
whitened `VariationalStrategy` and a full-rank `CholeskyVariationalDistribution`, trained by Adam
on every parameter against `VariationalELBO` with `fit_gpytorch_svgp`. Nothing here uses gpvi's
own inference code, so it is an independent point of comparison for `gpvi.SVGP` + `gpvi.fit`.

    model, likelihood = GPyTorchSVGP.from_data(train_X, num_inducing=256)
    result = fit_gpytorch_svgp(model, likelihood, train_X, train_Y, steps=2000, batch_size=1024)
    mean, var = predict_gpytorch_svgp(model, likelihood, test_X)   # observation noise included

`fit_gpytorch_svgp` returns a `gpvi.FitResult` whose history has the same keys as `gpvi.fit`'s
(step, elbo, expected_log_lik, kl, time; ELBO terms are totals over the data set, not per datum),
so the two can be tabulated and plotted side by side.
"""

from __future__ import annotations

from typing import Any

import torch
from botorch.models.approximate_gp import ApproximateGPyTorchModel
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import ConstantMean, Mean
from gpytorch.mlls import VariationalELBO
from gpytorch.models import ApproximateGP
from gpytorch.variational import CholeskyVariationalDistribution, NaturalVariationalDistribution, VariationalStrategy
from torch import Tensor

from gpvi.features.selection import select_inducing_points
from gpvi.fit.batches import minibatches
from gpvi.models.priors import default_kernel as gpvi_default_kernel
from gpvi.models.priors import singletaskgp_modules
from gpvi.progress import FitResult, StepLoop

__all__ = ["GPyTorchSVGP", "GPyTorchSVGPModel", "default_kernel", "fit_gpytorch_svgp", "predict_gpytorch_svgp"]


def default_kernel(train_X: Tensor, *, gaussian: bool = True) -> Kernel:
    """The kernel `gpvi.SVGP` builds from these inputs (`gpvi.models.priors.default_kernel`:
    SingleTaskGP's RBF with its dimension-scaled lengthscale prior; in a `ScaleKernel` for a
    non-Gaussian likelihood), so a comparison with gpvi isolates the inference."""
    return gpvi_default_kernel(train_X, gaussian=gaussian)


class GPyTorchSVGP(ApproximateGP):
    """gpytorch's standard SVGP: whitened `VariationalStrategy` + `CholeskyVariationalDistribution`.

    Args:
        inducing_points: `M x d` initial inducing inputs Z (learned during training).
        kernel: Covariance module; default ``ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=d))``
            with gpytorch's default hyperparameters.
        mean_module: Prior mean; default `ConstantMean`.
        learn_inducing_locations: Train Z along with the other parameters (default True).
        natural: Use gpytorch's `NaturalVariationalDistribution` (for its `gpytorch.optim.NGD`
            natural-gradient optimiser; see `fit_gpytorch_svgp_ngd`) instead of the Cholesky one.

    The model's ``forward`` is the prior; calling the model gives q(f). Pair it with a
    `GaussianLikelihood` (see `from_data`) and fit it with `fit_gpytorch_svgp`.
    """

    def __init__(
        self,
        inducing_points: Tensor,
        kernel: Kernel | None = None,
        mean_module: Mean | None = None,
        *,
        learn_inducing_locations: bool = True,
        natural: bool = False,
    ) -> None:
        if inducing_points.dim() != 2:
            raise ValueError(f"`inducing_points` must be `M x d`, got shape {tuple(inducing_points.shape)}.")
        M, d = inducing_points.shape
        q = (NaturalVariationalDistribution if natural else CholeskyVariationalDistribution)(M).to(inducing_points)
        strategy = VariationalStrategy(self, inducing_points, q, learn_inducing_locations=learn_inducing_locations)
        super().__init__(strategy)
        self.mean_module = ConstantMean() if mean_module is None else mean_module
        if kernel is None:
            kernel = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=d))
        self.covar_module = kernel
        self.to(inducing_points)

    def forward(self, x: Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))

    @classmethod
    def from_data(
        cls,
        train_X: Tensor,
        num_inducing: int = 128,
        inducing: str | Tensor = "kmeans",
        *,
        seed: int = 0,
        natural: bool = False,
    ) -> tuple[GPyTorchSVGP, GaussianLikelihood]:
        """A model and likelihood initialised exactly as ``gpvi.SVGP(train_X, ..., seed=seed)``.

        Same kernel, priors and initial lengthscales (`default_kernel`), same initial Z (gpvi's
        `select_inducing_points` with the same ``inducing`` method and seed), and SingleTaskGP's
        `GaussianLikelihood` (log-normal noise prior, noise ≥ 1e-4), as gpvi's default.
        """
        kernel = default_kernel(train_X)
        Z = select_inducing_points(train_X, num_inducing, inducing, kernel, seed=seed)
        _, likelihood = singletaskgp_modules(train_X.shape[-1], dtype=train_X.dtype)
        return cls(Z, kernel=kernel, natural=natural), likelihood.to(train_X)


def fit_gpytorch_svgp(
    model: ApproximateGP,
    likelihood: GaussianLikelihood,
    X: Tensor,
    y: Tensor,
    steps: int = 1000,
    batch_size: int | None = 1024,
    lr: float = 0.01,
    progress: bool | None = None,
    *,
    seed: int = 0,
) -> FitResult:
    """Train a gpytorch SVGP with Adam on the minibatch `VariationalELBO` (the standard recipe).

    Every parameter of the model and likelihood (q, Z, kernel, mean, noise) is updated by one Adam
    step per minibatch. Minibatches are drawn as shuffled epochs (the last partial batch of an
    epoch is dropped), as in `gpvi.fit`. No early stopping: exactly ``steps`` steps are taken
    unless the loss becomes non-finite.

    Args:
        model: A gpytorch `ApproximateGP` (e.g. `GPyTorchSVGP`).
        likelihood: Its likelihood.
        X: `n x d` training inputs.
        y: `n` or `n x 1` training targets.
        steps: Number of Adam steps (each on one minibatch).
        batch_size: Minibatch size B (capped at n); None: all data.
        lr: Adam's learning rate.
        progress: Show a tqdm bar; default `gpvi.progress.show_progress` (terminal or Jupyter, not pytest).
        seed: Seed of the minibatch order.

    Returns:
        A `gpvi.FitResult`; history entries hold the step, the minibatch estimate of the total
        ELBO, its expected log-likelihood and KL parts (totals over the n data, not per datum), and
        the elapsed time. Model and likelihood are left in eval mode.
    """
    if y.dim() == 2 and y.shape[-1] == 1:
        y = y.squeeze(-1)
    if y.dim() != 1 or X.dim() != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"Expected X `n x d` and y `n` (or `n x 1`), got {tuple(X.shape)} and {tuple(y.shape)}.")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be a non-negative int, got {steps!r}.")
    N = X.shape[0]
    B = N if batch_size is None else min(int(batch_size), N)
    if B < 1:
        raise ValueError(f"`batch_size` must be positive, got {batch_size!r}.")

    mll = VariationalELBO(likelihood, model, num_data=N, combine_terms=False)
    params = list({id(p): p for p in [*model.parameters(), *likelihood.parameters()]}.values())
    adam = torch.optim.Adam(params, lr=lr)
    loop = StepLoop(steps, desc="gpytorch SVGP", progress=progress)
    reason = "max_steps"
    model.train()
    likelihood.train()
    batches = minibatches(X, y, B, seed=seed)
    try:
        with loop:
            for _ in loop.steps():
                batch = next(batches)
                ell, kl, log_prior = mll(model(batch.X), batch.Y)[:3]
                loss = -(ell - kl + log_prior)
                adam.zero_grad(set_to_none=True)
                loss.backward()
                adam.step()
                parts = {"elbo": -float(loss.detach()) * N, "expected_log_lik": float(ell.detach()) * N}
                parts["kl"] = float(kl.detach()) * N
                reason = loop.record(parts["elbo"], parts) or reason
                if reason != "max_steps":
                    break
    finally:
        model.eval()
        likelihood.eval()
    return loop.result(reason)


@torch.no_grad()
def predict_gpytorch_svgp(
    model: ApproximateGP,
    likelihood: GaussianLikelihood | None,
    X: Tensor,
    *,
    batch_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """Predictive mean and marginal variance at `n x d` inputs, in chunks of ``batch_size`` rows.

    With a likelihood the variance includes its observation noise; with ``likelihood=None`` it is
    the latent q(f) variance. Returns two `n` tensors.
    """
    model.eval()
    if likelihood is not None:
        likelihood.eval()
    means, variances = [], []
    for i in range(0, X.shape[0], batch_size):
        f = model(X[i : i + batch_size])
        mean, var = f.mean, f.variance
        if likelihood is not None:
            var = var + likelihood.noise.squeeze(-1)
        means.append(mean)
        variances.append(var)
    return torch.cat(means), torch.cat(variances)


class GPyTorchSVGPModel(ApproximateGPyTorchModel):
    """gpytorch's SVGP (`GPyTorchSVGP` + `GaussianLikelihood`) as a BoTorch model that fits itself.

    The regression studies' peer "gpytorch-svgp" (`gpvi.models.registry`): built from data like
    ``GPyTorchSVGP.from_data``, trained by `fit` (Adam on the `VariationalELBO`,
    `fit_gpytorch_svgp`), predicted through BoTorch's `posterior` (``observation_noise=True`` adds
    the likelihood's noise, as `predict_gpytorch_svgp` does).
    """

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        num_inducing: int = 128,
        inducing: str | Tensor = "kmeans",
        *,
        seed: int = 0,
    ) -> None:
        base, likelihood = GPyTorchSVGP.from_data(train_X, num_inducing, inducing, seed=seed)
        super().__init__(model=base, likelihood=likelihood, num_outputs=1)
        self.train_X, self.train_Y = train_X, train_Y

    def fit(
        self,
        *,
        max_steps: int = 1000,
        batch_size: int | None = 1024,
        lr: float = 0.01,
        seed: int = 0,
        progress: bool | None = None,
    ) -> FitResult:
        """Adam on the minibatch `VariationalELBO` (`fit_gpytorch_svgp`)."""
        return fit_gpytorch_svgp(
            self.model, self.likelihood, self.train_X, self.train_Y, max_steps, batch_size, lr, progress, seed=seed
        )

    def posterior(self, X: Tensor, *args: Any, **kwargs: Any) -> Any:
        self.model.eval()
        self.likelihood.eval()
        return super().posterior(X, *args, **kwargs)
