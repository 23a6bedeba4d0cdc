"""The problems of BO studies: BoTorch's synthetic test functions or user callables, as specified and as built.

Problems are minimised (BoTorch's test functions are stated for minimisation). Observation noise
is drawn from a generator seeded by (seed, iteration), so a resumed run sees the same noise as an
uninterrupted one. The simple regret of a run at iteration t is the best *true* value among the
points evaluated so far minus the known optimum.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import Tensor

from gpvi._defaults import default_dtype
from gpvi.models.registry import load_object


@dataclass
class ProblemSpec:
    """A ``[[problems]]`` entry of a BO study (validated by `gpvi.studies.kinds.bo`)."""

    name: str
    label: str
    dim: int | None = None
    noise_std: float = 0.0
    function: str | None = None
    bounds: list[list[float]] | None = None
    optimal_value: float | None = None


@dataclass
class Problem:
    """A study problem: `evaluate(X, seed, iteration)` -> (observed `n`, true `n`)."""

    label: str
    bounds: Tensor  # 2 x d
    optimal_value: float | None
    noise_std: float
    _true: object

    def evaluate(self, X: Tensor, seed: int, iteration: int) -> tuple[Tensor, Tensor]:
        y_true = self._true(X).reshape(X.shape[0]).to(X)
        if self.noise_std == 0:
            return y_true, y_true
        gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + iteration * 104_729 + 17)
        noise = torch.randn(X.shape[0], generator=gen, dtype=X.dtype).to(X.device)
        return y_true + self.noise_std * noise, y_true


def _test_function_class(name: str) -> type:
    from botorch.test_functions import synthetic

    cls = getattr(synthetic, name, None)
    if not (isinstance(cls, type) and issubclass(cls, synthetic.SyntheticTestFunction)) or inspect.isabstract(cls):
        names = sorted(
            n
            for n, c in vars(synthetic).items()
            if isinstance(c, type)
            and issubclass(c, synthetic.SyntheticTestFunction)
            and not inspect.isabstract(c)
            and c is not synthetic.SyntheticTestFunction
        )
        raise ValueError(f"unknown test function {name!r}; botorch.test_functions.synthetic has {names}")
    return cls


def check_test_function(name: str, dim: int | None) -> None:
    """Raise ValueError if ``name`` (with ``dim``) is not a usable BoTorch synthetic test function."""
    _build_test_function(name, dim)


def _build_test_function(name: str, dim: int | None):
    cls = _test_function_class(name)
    takes_dim = "dim" in inspect.signature(cls.__init__).parameters
    if dim is not None and not takes_dim:
        raise ValueError(f"{name} has a fixed dimension; remove `dim`")
    try:
        with default_dtype(torch.float64):  # the constants are built at the default dtype, then cast
            return cls(dim=dim, dtype=torch.float64) if (takes_dim and dim is not None) else cls(dtype=torch.float64)
    except Exception as err:  # the constructor's own message (e.g. Hartmann's allowed dims)
        raise ValueError(f"{name}(dim={dim}) cannot be built: {err}") from None


def make_problem(spec: ProblemSpec) -> Problem:
    """The `Problem` of a validated `ProblemSpec`."""
    if spec.function is not None:
        fn = load_object(spec.function)
        bounds = torch.tensor(spec.bounds, dtype=torch.float64)
        return Problem(spec.label, bounds, spec.optimal_value, spec.noise_std, fn)
    f = _build_test_function(spec.name, spec.dim)
    optimal = spec.optimal_value if spec.optimal_value is not None else getattr(f, "_optimal_value", None)
    return Problem(spec.label, f.bounds.to(torch.float64), optimal, spec.noise_std, f.evaluate_true)


__all__ = ["Problem", "ProblemSpec", "check_test_function", "make_problem"]
