"""The predictive variance is smooth at round-off level (what acquisition optimisers need)."""

import numpy as np
import torch

from gpvi import SVGP
from gpvi.variational.svgp import WhitenedSVGPStrategy


def _roughness(model: SVGP, x0: float) -> float:
    """Std of the variance's residual from a quartic over a 2e-5 segment, relative to the variance."""
    ts = torch.linspace(-1e-5, 1e-5, 101, dtype=torch.float64)
    with torch.no_grad():
        var = model.posterior((x0 + ts).reshape(-1, 1, 1)).variance.reshape(-1).numpy()
    residual = var - np.polyval(np.polyfit(ts.numpy(), var, 4), ts.numpy())
    return float(residual.std() / var.mean())


def _ill_conditioned_model() -> SVGP:
    """Dense inducing inputs, long lengthscale, tiny noise: Kuu's condition number is ~5e6."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(60, 1, generator=g, dtype=torch.float64)
    Y = torch.sin(6 * X) + 1e-3 * torch.randn(60, 1, generator=g, dtype=torch.float64)
    model = SVGP(X, Y, num_inducing=25, learn_inducing=False)
    model.model.covar_module.lengthscale = 0.4
    model.likelihood.noise = 1e-4
    model.set_optimal_q()
    return model.eval()


def test_predictive_variance_has_no_round_off_noise():
    model = _ill_conditioned_model()
    L = model.model.variational_strategy.whitened_terms().chol_Kuu
    assert torch.linalg.cond(L @ L.mT) > 1e6  # the regime where a grouped L⁻ᵀ(S − I)L⁻¹ is noisy
    assert _roughness(model, 0.5) < 1e-9


def test_the_grouped_middle_matrix_would_be_noisy(monkeypatch):
    """Guards the test above: the formula it replaced, Kfu W Kuf, shows the noise it checks for."""
    from linear_operator.operators import MatmulLinearOperator

    grouped = staticmethod(lambda terms, Kuf: MatmulLinearOperator(Kuf.mT, terms.middle @ Kuf))
    monkeypatch.setattr(WhitenedSVGPStrategy, "_predictive_update", grouped)
    assert _roughness(_ill_conditioned_model(), 0.5) > 1e-8
