"""The documentation site builds (`make docs`): Sphinx + MyST-NB, every warning an error.

The build runs as `make docs` does (``-E -W --keep-going -n``: fresh environment, warnings are
errors, nitpicky cross-references), into a temporary folder, in a subprocess. About 15 s on 2 cores.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

for _module in ("sphinx", "myst_nb", "pydata_sphinx_theme"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (the docs extra: pip install -e '.[docs]')", allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    html = out / "html"
    command = [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-n", "-q", "-b", "html"]
    command += ["-d", str(out / "doctrees"), str(DOCS), str(html)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"sphinx-build failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return html


def _api_packages() -> tuple[str, ...]:
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from gpvi_api import PACKAGES
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    return PACKAGES


def test_every_page_is_built(site: Path) -> None:
    pages = [p.relative_to(DOCS).with_suffix(".html") for p in DOCS.rglob("*.md") if "_build" not in p.parts]
    pages += [Path("api") / f"{p}.html" for p in _api_packages()]
    pages += [Path("notebooks") / f"{p.stem}.html" for p in (ROOT / "notebooks").glob("*.ipynb")]
    missing = [str(p) for p in pages if not (site / p).is_file()]
    assert not missing, f"pages not built: {missing}"


def test_the_api_reference_covers_the_documented_packages(site: Path) -> None:
    from tests.docs.test_docstrings import PACKAGES

    assert set(_api_packages()) == set(PACKAGES)
    for package in PACKAGES:
        text = (site / "api" / f"{package}.html").read_text(encoding="utf-8")
        assert f'id="module-{package}"' in text, f"{package}: the module docstring is missing"


def test_the_api_reference_documents_own_members_only(site: Path) -> None:
    text = (site / "api" / "gpvi.models.html").read_text(encoding="utf-8")
    assert 'id="gpvi.models.SVGP"' in text and 'id="gpvi.models.VariationalGPModel.posterior"' in text
    # members inherited from gpvi's base, BoTorch, gpytorch or torch are not repeated
    assert 'id="gpvi.models.SVGP.posterior"' not in text
    assert "VariationalGPModel.state_dict" not in text and "VariationalGPModel.fantasize" not in text
    recipes = (site / "api" / "gpvi.fit.recipes.html").read_text(encoding="utf-8")
    assert 'id="gpvi.fit.recipes.collapsed.Collapsed"' in recipes
