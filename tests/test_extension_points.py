"""The coming families arrive as new files: a feature type, a recipe, a model registered by name and a
study kind plug in here without an edit to `fit`, the loops, the runner or the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import Tensor

import gpvi
from gpvi.core.kernels import cross_covariance
from gpvi.features.base import InducingFeatures
from gpvi.fit.recipes import RECIPES, Recipe, register_recipe
from gpvi.models.registry import MODELS, ModelEntry, register_model
from gpvi.progress import StepLoop
from gpvi.studies.kinds import KINDS, StudyKind, register_kind
from tests.variational.contract import PosteriorContract

DT = torch.float64


# -- a feature type -------------------------------------------------------------------------------------
class ScaledPoints(InducingFeatures):
    """u_m = c f(z_m): an inter-domain feature set in three methods (Kuu = c²K(Z, Z), Kuf = cK(Z, X), E[u] = cμ(Z))."""

    def __init__(self, Z: Tensor, scale: float) -> None:
        super().__init__()
        self.register_buffer("Z", Z)
        self.scale = scale

    @property
    def num_inducing(self) -> int:
        return self.Z.shape[-2]

    @property
    def batch_shape(self) -> torch.Size:
        return self.Z.shape[:-2]

    def Kuu(self, kernel):
        return self.scale**2 * kernel(self.Z).to_dense()

    def Kuf(self, kernel, X):
        return self.scale * cross_covariance(kernel, self.Z, X)

    def prior_mean(self, mean_module):
        return self.scale * mean_module(self.Z)


class TestAnInterDomainFeatureTypePassesTheContract(PosteriorContract):
    def build(self, X, Y, Z):
        return gpvi.SVGP(X, Y, outcome_transform=None, features=ScaledPoints(Z, 2.0), jitter=self.jitter)

    def test_condition_on_observations_is_the_exact_posterior_given_all_data(self):
        pytest.skip("conditioning grows the inducing set with point evaluations: point features only")

    def test_conditioning_twice_is_conditioning_once_on_both(self):
        pytest.skip("conditioning grows the inducing set with point evaluations: point features only")


# -- a recipe, declared by a model ----------------------------------------------------------------------
@dataclass
class FullSteps(Recipe):
    """Full-data natural-gradient steps of a fixed size: a recipe in a dozen lines."""

    name: ClassVar[str] = "test-full-steps"
    step: float = 0.5

    def run(self, model):
        with StepLoop(self.max_steps, progress=self.progress, callback=self.callback) as loop:
            for _ in loop.steps():
                model.full_data_step(self.step)
                model.train()
                parts = model.elbo()
                if loop.record(float(parts.elbo.detach()), {"elbo": parts.elbo}) is not None:
                    break
        model.eval()
        return loop.result("max_steps")


class StepwiseSVGP(gpvi.SVGP):
    default_recipe: ClassVar[str] = "test-full-steps"


@pytest.fixture
def test_recipe():
    register_recipe(FullSteps)
    yield FullSteps
    RECIPES.pop(FullSteps.name)


def test_a_new_recipe_is_found_by_name_and_run_as_the_models_default(test_recipe):
    X = torch.rand(40, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    Y = torch.sin(4 * X[:, :1])
    model = StepwiseSVGP(X, Y, num_inducing=8)
    result = gpvi.fit(model, max_steps=6, step=1.0)
    assert result.num_steps == 6
    model.train()  # a Gaussian likelihood and ρ = 1: q is optimal
    assert torch.allclose(model.elbo().elbo, model.collapsed_elbo() + model.log_prior(), rtol=1e-9)
    with pytest.raises(TypeError, match="unexpected option"):
        gpvi.fit(model, stepsize=1.0)


# -- a model registered by name -------------------------------------------------------------------------
def small_svgp(train_X, train_Y, **options):
    return gpvi.SVGP(train_X, train_Y, **{"num_inducing": 6, **options})


@pytest.fixture
def toy_model():
    entry = register_model(
        ModelEntry(
            "test-small-svgp",
            "a small SVGP",
            small_svgp,
            "gpvi",
            defaults={"bo": {"max_steps": 5, "warm_steps": 5, "update_steps": 2}, "regression": {"max_steps": 5}},
        )
    )
    yield entry
    MODELS.pop(entry.name)


def test_a_registered_model_serves_the_bo_loop_and_both_study_kinds(toy_model, tmp_path: Path):
    from botorch.test_functions import Branin

    from gpvi.studies import parse_spec
    from gpvi.studies.kinds.regression import fit_method

    f = Branin().to(DT)
    loop = gpvi.BayesOpt(f.bounds, model_factory="test-small-svgp", minimize=True, seed=0, num_initial=5)
    loop.run(lambda x: f(x), 2)
    assert loop.X.shape[0] == 7 and loop.model.features.num_inducing == 6
    spec = parse_spec(
        '[study]\nname = "t"\nseeds = 1\nbudget = 1\n[[problems]]\nname = "Branin"\n'
        '[[methods]]\nmodel = "test-small-svgp"\n'
    )
    assert spec.methods[0].model == "test-small-svgp"
    X = torch.rand(30, 2, generator=torch.Generator().manual_seed(1), dtype=DT)
    model = fit_method("test-small-svgp", X, torch.sin(3 * X[:, :1]), {}, seed=0)
    assert model.posterior(X).mean.shape == (30, 1)


# -- a study kind ---------------------------------------------------------------------------------------
@dataclass
class Item:
    name: str
    label: str


@dataclass
class Method:
    name: str
    model: str


class EchoKind(StudyKind):
    """A kind whose runs store one metric: the seed times the item's length."""

    name = "test-echo"
    problem_table = "items"
    default_budget = 0
    stores_evaluations = False

    def parse_problem(self, raw, ctx, where):
        return Item(raw["name"], raw.get("label", raw["name"]))

    def parse_method(self, raw, ctx, where):
        return Method(raw.get("name", raw["model"]), raw["model"])

    def run(self, task, emit):
        emit(("metrics", task["run_id"], {"value": float(task["seed"] * len(task["problem"]["name"]))}))

    def report(self, store, out_dir, baseline):
        rows = store.query("SELECT run_id, value FROM metrics ORDER BY run_id")
        return ["| run | value |", "|---|---|", *(f"| {r['run_id']} | {r['value']:g} |" for r in rows)]


@pytest.fixture
def echo_kind():
    kind = register_kind(EchoKind())
    yield kind
    KINDS.pop(kind.name)


def test_a_new_study_kind_runs_and_reports_through_the_generic_runner(echo_kind, tmp_path: Path):
    from gpvi.studies import Store, markdown_report, parse_spec, run_study, status_text

    spec = parse_spec(
        '[study]\nname = "echo"\nkind = "test-echo"\nseeds = 2\n[[items]]\nname = "abc"\n[[methods]]\nmodel = "m"\n'
    )
    outcome = run_study(spec, tmp_path / "echo.sqlite", log=lambda line: None)
    assert (outcome.done, outcome.failed) == (2, 0)
    with Store(tmp_path / "echo.sqlite") as store:
        text = markdown_report(store, tmp_path / "report")
        assert "# Study echo (test-echo)" in text and "| 2 | 3 |" in text
        assert "2 done" in status_text(store)


def test_magmaclust_trains_through_gpvi_fit_with_its_own_recipe():
    from gpvi.data import simulate_multitask
    from gpvi.multitask import MagmaClust

    data = simulate_multitask(num_tasks=6, num_clusters=2, num_points=8, seed=0)
    model = MagmaClust(data, num_clusters=2)
    result = gpvi.fit(model, max_steps=2, tol=0.0)
    assert result.num_steps == 2 and result.stop_reason == "max_steps" and model.history is result
