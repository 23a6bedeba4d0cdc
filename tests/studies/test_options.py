"""A method's `options` are checked when the study file is read: unknown names and wrong types name the
option, the model, what is allowed and the TOML line."""

from __future__ import annotations

import re

import pytest

from gpvi.studies import StudyError, parse_spec
from gpvi.studies.options import OptionSpec, toml_types, type_matches

BO = """
[study]
name = "opts"
seeds = 1
budget = 2

[[problems]]
name = "Branin"

[[methods]]
name = "random"
model = "random"

[[methods]]
name = "stgp"
model = "singletaskgp"

[[methods]]
name = "svgp"
model = "svgp"
options = { max_steps = 30, warm_steps = 10 }
acquisition_options = { num_restarts = 2, raw_samples = 32 }
"""
SVGP_LINE = 21  # the `options = ...` line of methods[2]
ACQ_LINE = 22


def _error(text: str) -> str:
    with pytest.raises(StudyError) as err:
        parse_spec(text)
    return str(err.value)


def _bo(options: str = "max_steps = 30, warm_steps = 10", acq: str = "num_restarts = 2, raw_samples = 32") -> str:
    text = BO.replace("{ max_steps = 30, warm_steps = 10 }", "{ " + options + " }")
    return text.replace("{ num_restarts = 2, raw_samples = 32 }", "{ " + acq + " }")


def test_the_reference_file_and_valid_options_load():
    spec = parse_spec(BO)
    assert spec.methods[2].options == {"max_steps": 30, "warm_steps": 10}
    ok = 'num_inducing = 64, lr = 1, kernel = "matern", warm_start = true, fit = "ngd", learn_inducing = false'
    spec = parse_spec(_bo(ok, "beta = 3, maxiter = 50"))
    assert spec.methods[2].options["lr"] == 1 and isinstance(spec.methods[2].options["lr"], int)  # kept as written


def test_an_unknown_option_names_the_option_the_model_the_close_match_and_the_line():
    message = _error(_bo("num_inducng = 64"))
    assert message.startswith(f"<study>:{SVGP_LINE}: `methods[2].options` has unknown option 'num_inducng'")
    assert "for model 'svgp'; did you mean 'num_inducing'?" in message
    allowed = re.search(r"Allowed: \[(.*)\]", message).group(1)
    assert "'num_inducing'" in allowed and "'warm_steps'" in allowed and "'model'" not in allowed
    assert "did you mean" not in _error(_bo("zzz = 1"))


@pytest.mark.parametrize(
    ("option", "expected", "got"),
    [
        ('num_inducing = "64"', "int", "str '64'"),
        ("num_inducing = 64.0", "int", "float 64.0"),
        ("num_inducing = true", "int", "bool True"),  # a bool is never a number
        ('lr = "0.05"', "float", "str '0.05'"),
        ("warm_start = 1", "bool", "int 1"),
        ("kernel = 3", "str", "int 3"),
        ("max_steps = [30]", "int", "list [30]"),
    ],
)
def test_a_wrong_type_names_the_expected_type_and_the_line(option, expected, got):
    key = option.split(" = ")[0]
    message = _error(_bo(option))
    assert message == (
        f"<study>:{SVGP_LINE}: `methods[2].options` {key!r} must be {expected} for model 'svgp', got {got}"
    )


def test_botorch_and_random_models():
    stgp = BO.replace('model = "singletaskgp"\n', 'model = "singletaskgp"\noptions = { covar_module = "rbf" }\n')
    assert "'covar_module' of model 'singletaskgp' takes a Module | None object" in _error(stgp)
    stgp = BO.replace('model = "singletaskgp"\n', 'model = "singletaskgp"\noptions = { input_transform = 1 }\n')
    assert "unknown option 'input_transform'" in _error(stgp)  # the factory sets it
    random = BO.replace('model = "random"\n', 'model = "random"\noptions = { num_inducing = 4 }\n')
    assert (
        _error(random)
        == "<study>:13: `methods[0].options` has option 'num_inducing', but model 'random' takes no options"
    )
    custom = BO.replace('model = "random"\n', 'model = "mypkg.mod:factory"\noptions = { anything = "goes" }\n')
    assert parse_spec(custom).methods[0].options == {"anything": "goes"}  # not imported, not checked


def test_a_study_with_a_typo_fails_at_load_naming_the_file_before_any_run(tmp_path):
    from gpvi.studies import run_study

    study = tmp_path / "typo.toml"
    study.write_text(_bo("num_inducng = 64"))
    with pytest.raises(StudyError, match=re.escape(f"{study}:{SVGP_LINE}: `methods[2].options`")):
        run_study(study, db=tmp_path / "typo.sqlite", workers=1, progress=False, log=lambda line: None)
    assert not (tmp_path / "typo.sqlite").exists()


def test_acquisition_options_are_checked_too():
    message = _error(_bo(acq="restarts = 2"))
    assert message.startswith(f"<study>:{ACQ_LINE}: `methods[2].acquisition_options` has unknown option 'restarts'")
    assert "did you mean 'num_restarts'?" in message
    assert "'raw_samples' must be int for the acquisition, got float 32.5" in _error(_bo(acq="raw_samples = 32.5"))


def test_an_options_sub_table_reports_the_line_of_the_option():
    text = (
        BO.replace("options = { max_steps = 30, warm_steps = 10 }\n", "")
        + "\n[methods.options]\nmax_steps = 30\nnum_inducng = 8\n"
    )
    lines = text.splitlines()
    assert parse_spec(text.replace("num_inducng", "num_inducing")).methods[2].options["num_inducing"] == 8
    assert _error(text).startswith(f"<study>:{lines.index('num_inducng = 8') + 1}: `methods[2].options`")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("budget = 2", "budget = 2\nq = 0"), "study.q"),
        (("budget = 2", "budget = 2\nnum_initial = 0"), "study.num_initial"),
        (('model = "svgp"\n', 'model = "svgp"\nrefit_every = 0\n'), "methods[2].refit_every"),
    ],
)
def test_loop_settings_are_positive(change, field):
    assert f"`{field}` must be a positive int" in _error(BO.replace(*change))


# -- regression studies ---------------------------------------------------------------------------------
REGRESSION = """
[study]
name = "reg"
kind = "regression"
splits = 1

[[datasets]]
name = "yacht"

[[methods]]
name = "m"
model = "MODEL"
options = { OPTIONS }
"""


@pytest.fixture
def regression(monkeypatch):
    from gpvi.data import uci

    monkeypatch.setattr(uci, "available", lambda *args, **kwargs: ["yacht"])

    def text(model: str, options: str) -> str:
        return REGRESSION.replace("MODEL", model).replace("OPTIONS", options)

    return text


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("svgp", 'num_inducing = 256, max_steps = 2000, batch_size = 1024, lr = 0.01, optimizer = "ngd"'),
        ("svgp", "early_stopping = false, seed = 3, learn_inducing = true, jitter = 1e-6, max_n = 500"),
        ("dual-svgp", 'num_inducing = 32, max_steps = 40, full_gp = true, recipe = "cvi", e_steps = 2'),
        ("gpytorch-svgp", 'num_inducing = 32, max_steps = 60, inducing = "kmeans", lr = 1'),
        ("exact", "max_n = 3000, noise = 0.1"),  # exact_gp passes **options on: other names are not checked
    ],
)
def test_regression_options_of_the_constructor_and_the_training_load(regression, model, options):
    assert parse_spec(regression(model, options)).methods[0].model == model


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        (
            "svgp",
            "num_inducng = 256",
            "has unknown option 'num_inducng' for model 'svgp'; did you mean 'num_inducing'?",
        ),
        ("svgp", 'max_steps = "2000"', "'max_steps' must be int for model 'svgp', got str '2000'"),
        ("svgp", "optimizer = 1", "'optimizer' must be str for model 'svgp', got int 1"),
        ("svgp", "progress = true", "has unknown option 'progress'"),  # the study sets it
        ("svgp", 'kernel = "rbf"', "'kernel' of model 'svgp' takes a Kernel | None object"),
        ("gpytorch-svgp", "batch_sz = 64", "for model 'gpytorch-svgp'; did you mean 'batch_size'?"),
        ("gpytorch-svgp", 'lr = "0.01"', "'lr' must be float for model 'gpytorch-svgp', got str '0.01'"),
        ("exact", "max_n = 3000.0", "'max_n' must be int for model 'exact', got float 3000.0"),
    ],
)
def test_regression_options_are_checked_at_load(regression, model, options, message):
    with pytest.raises(StudyError) as err:
        parse_spec(regression(model, options))
    assert str(err.value).startswith("<study>:13: `methods[0].options` ")
    assert message in str(err.value)


def test_the_svgp_allowed_names_cover_the_constructor_the_recipes_and_max_n(regression):
    with pytest.raises(StudyError) as err:
        parse_spec(regression("svgp", "nope = 1"))
    allowed = set(re.findall(r"'(\w+)'", str(err.value).split("Allowed:")[1]))
    assert {"num_inducing", "inducing", "seed", "max_steps", "batch_size", "lr", "optimizer", "max_n"} <= allowed
    assert not allowed & {"train_X", "train_Y", "progress", "callback", "self"}


# -- reading annotations ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("annotation", "value", "ok"),
    [
        ("int", 3, True),
        ("int", True, False),
        ("float", 3, True),
        ("float", True, False),
        ("int | None", 3, True),
        ("Optional[int]", "3", False),
        ("bool | EarlyStopping", False, True),
        ("str | Tensor", "kmeans", True),
        ("str | Tensor", [1.0], False),
        ("Literal['a', 'b']", "a", True),
        ("list[float]", [1.0], True),
        ("dict[str, int]", {"a": 1}, True),
        ("Kernel | None", "rbf", False),
    ],
)
def test_annotations_read_as_toml_types(annotation, value, ok):
    assert type_matches(value, toml_types(annotation)) is ok


def test_unreadable_or_any_annotations_are_not_checked():
    from gpvi.studies.options import UNCHECKED

    assert toml_types("Any") is UNCHECKED and toml_types(None) is UNCHECKED and toml_types("int | Any") is UNCHECKED
    assert OptionSpec({"a": "int"}).merge(OptionSpec({"a": "str"})).hints["a"] == "int | str"
