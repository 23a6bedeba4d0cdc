"""The package's layers point down, and no package reaches into another's private names.

Floors, bottom-up (a module may import its own floor and those below it):

    0  root helpers: gpvi._validation, gpvi._defaults, gpvi._state, gpvi._warnings_filter, gpvi.progress, gpvi.metrics
    1  gpvi.core, gpvi.data
    2  gpvi.features
    3  gpvi.variational, gpvi.sequential, gpvi.multitask
    4  gpvi.models
    5  gpvi.fit, gpvi.baselines, gpvi.plots, gpvi.acquisition (models read through their public API only)
    6  gpvi.loops
    7  gpvi.studies
    8  gpvi.cli, and the package root `gpvi` (its __init__ imports everything)

Every ``import`` and ``from ... import`` of a gpvi module is read from the source with `ast`,
including imports inside functions (a deferred import is still a dependency). A name or module
starting with "_" belongs to its package: another package may not import it (the root helpers
`gpvi._*` are the whole package's). The package's own ``gpvi/__init__.py`` sits on top and is not
checked. `ALLOWED` lists the upward edges that an outside API forces, each with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "gpvi"

FLOORS = {
    "gpvi._validation": 0,
    "gpvi._defaults": 0,
    "gpvi._state": 0,
    "gpvi._warnings_filter": 0,
    "gpvi.progress": 0,
    "gpvi.metrics": 0,
    "gpvi.core": 1,
    "gpvi.data": 1,
    "gpvi.features": 2,
    "gpvi.variational": 3,
    "gpvi.sequential": 3,
    "gpvi.multitask": 3,
    "gpvi.models": 4,
    "gpvi.fit": 5,
    "gpvi.baselines": 5,
    "gpvi.plots": 5,
    "gpvi.acquisition": 5,
    "gpvi.loops": 6,
    "gpvi.studies": 7,
    "gpvi.cli": 8,
}

ALLOWED = {
    (
        "gpvi.models.base",
        "gpvi.fit",
    ): "BoTorch's fit_gpytorch_mll calls model.custom_fit; the hook hands over to gpvi.fit",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layered unit a module belongs to: its entry in FLOORS (longest matching prefix)."""
    if module == "gpvi":
        return "gpvi.cli"  # the root package sits with the command line, on top
    matches = [u for u in FLOORS if module == u or module.startswith(u + ".")]
    if not matches:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS in {__file__}.")
    return max(matches, key=len)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported gpvi module, names taken from it, line) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("gpvi")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base.startswith("gpvi"):
                out.append((base, [a.name for a in node.names], node.lineno))
    return out


def sources() -> list[Path]:
    return [p for p in sorted(ROOT.rglob("*.py")) if p != ROOT / "__init__.py"]


def edges() -> list[tuple[str, str, list[str], int]]:
    return [(module_name(p), target, names, line) for p in sources() for target, names, line in imports(p)]


def test_every_module_is_on_a_floor():
    for path in sources():
        unit(module_name(path))


def test_no_module_imports_from_a_higher_floor():
    upward = []
    for source, target, _, line in edges():
        low, high = unit(source), unit(target)
        if FLOORS[high] > FLOORS[low] and (source, target) not in ALLOWED:
            upward.append(f"{source}:{line} (floor {FLOORS[low]}) imports {target} (floor {FLOORS[high]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_package_imports_another_packages_private_names():
    leaks = []
    for source, target, names, line in edges():
        if unit(source) == unit(target) or unit(target).startswith("gpvi._"):
            continue
        private_module = any(part.startswith("_") for part in target.split("."))
        private_names = [n for n in names if n.startswith("_")]
        if private_module or private_names:
            leaks.append(f"{source}:{line} imports {target} {private_names or ''}")
    assert not leaks, "private names used across packages:\n" + "\n".join(leaks)


def test_each_allowed_edge_exists():
    """An exemption that no import needs any more is removed, not kept."""
    present = {(s, t) for s, t, _, _ in edges()}
    assert set(ALLOWED) <= present


@pytest.mark.parametrize(
    ("source", "target", "names", "expected"),
    [
        ("gpvi.core.sites", "gpvi.models.svgp", ["SVGP"], "upward"),
        ("gpvi.multitask.magma", "gpvi.fit.api", ["fit"], "upward"),
        ("gpvi.loops.bo", "gpvi.models.base", ["_multi"], "private"),
        ("gpvi.studies.runner", "gpvi.variational._hidden", [], "private"),
        ("gpvi.models.svgp", "gpvi.core.sites", ["GaussianSites"], "ok"),
        ("gpvi.loops.bo", "gpvi", ["SVGP"], "upward"),
    ],
)
def test_the_rules_catch_what_they_should(source, target, names, expected):
    upward = FLOORS[unit(target)] > FLOORS[unit(source)]
    private = any(p.startswith("_") for p in target.split(".")) or any(n.startswith("_") for n in names)
    verdict = "upward" if upward else "private" if private and unit(source) != unit(target) else "ok"
    assert verdict == expected
