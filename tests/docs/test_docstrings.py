"""Every public member of the documented packages has a docstring.

Public means: exported by the package's ``__all__``; for a class, also every public method,
property, classmethod and staticmethod that the class itself defines (inherited ones belong to
their own class; BoTorch's, gpytorch's and torch's are theirs to document). An override without a
docstring of its own passes when a gpvi base class documents the method (autodoc shows that
docstring); an override of a BoTorch / gpytorch / torch method needs its own. Constants and type
aliases are not checked (the API pages show them by name).
"""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

#: The packages of the API reference (`docs/api.md`).
PACKAGES = (
    "gpvi",
    "gpvi.models",
    "gpvi.fit",
    "gpvi.fit.recipes",
    "gpvi.variational",
    "gpvi.sequential",
    "gpvi.features",
    "gpvi.core",
    "gpvi.acquisition",
    "gpvi.loops",
    "gpvi.studies",
    "gpvi.multitask",
    "gpvi.data",
    "gpvi.progress",
    "gpvi.metrics",
    "gpvi.plots",
)


def _is_gpvi(obj: object) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("gpvi")


def _own_methods(cls: type) -> list[tuple[str, object]]:
    """The public callables and properties ``cls`` defines itself (not dataclass-generated dunders)."""
    members = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property) or inspect.isfunction(value):
            members.append((name, value))
    return members


def _documented(value: object) -> bool:
    doc = value.__doc__
    return bool(doc and doc.strip())


def _documented_in_gpvi_base(cls: type, name: str) -> bool:
    """Whether a gpvi base class of ``cls`` defines ``name`` with a docstring (inherited by autodoc)."""
    for base in cls.__mro__[1:]:
        if _is_gpvi(base) and name in vars(base):
            value = vars(base)[name]
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if _documented(value):
                return True
    return False


def missing_docstrings(package: str) -> list[str]:
    """``module.name`` (or ``module.Class.method``) of each public member of ``package`` without a docstring."""
    module = importlib.import_module(package)
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):
            continue  # a subpackage: documented by its own page
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not _is_gpvi(obj):
            continue  # constants, aliases, re-exports from other libraries
        if inspect.isclass(obj):
            missing += _class_missing(obj, f"{package}.{name}")
        elif not _documented(obj):
            missing.append(f"{package}.{name}")
    return missing


def _class_missing(cls: type, label: str) -> list[str]:
    missing = [] if _documented(cls) else [label]
    for method, value in _own_methods(cls):
        if not _documented(value) and not _documented_in_gpvi_base(cls, method):
            missing.append(f"{label}.{method}")
    return missing


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_member_has_a_docstring(package: str) -> None:
    missing = missing_docstrings(package)
    assert not missing, f"{len(missing)} public members of {package} have no docstring:\n" + "\n".join(missing)


def test_every_registered_recipe_is_documented() -> None:
    """The recipes are public by name (``gpvi.fit(model, recipe=name)``); the API page documents each."""
    from gpvi.fit.recipes import RECIPES

    missing = [m for name, cls in RECIPES.items() for m in _class_missing(cls, f"{cls.__module__}.{cls.__name__}")]
    assert not missing, f"{len(missing)} members of the registered recipes have no docstring:\n" + "\n".join(missing)


def test_the_checker_finds_a_missing_docstring() -> None:
    class Documented:
        """A class."""

        def method(self) -> None:
            """A method."""

    class Override(Documented):
        """A subclass."""

        def method(self) -> None:  # inherits the docstring of a gpvi base only
            pass

        @property
        def value(self) -> int:
            return 1

    Documented.__module__ = Override.__module__ = "gpvi.example"
    assert _class_missing(Documented, "Documented") == []
    assert _class_missing(Override, "Override") == ["Override.value"]
