"""``.. gpvi-api:: package``: the API page of a gpvi package, generated from its ``__all__``.

The directive expands to the package's docstring, a summary table of everything it exports, and
the full documentation (autodoc) of each export whose home is this package. An object exported by
several documented packages (``gpvi.EarlyStopping`` is ``gpvi.progress.EarlyStopping``) is
documented once, on the page of the package that defines it (the documented package that is the
longest prefix of its ``__module__``; for constants, the deepest package exporting it), and the
other pages link to it. Public members only: what ``__all__`` lists and, for classes, the
documented members they define themselves (never inherited ones).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import types

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.nodes import nested_parse_with_titles

#: The packages with an API page (docs/api/<package>.rst), in the order of the reference's index.
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


def exports(package: str) -> dict[str, object]:
    """``{name: object}`` of ``package.__all__``, in order."""
    module = importlib.import_module(package)
    return {name: getattr(module, name) for name in module.__all__}


def home(obj: object, exporters: list[str]) -> str:
    """The documented package that documents ``obj`` in full (see the module docstring)."""
    defined_in = getattr(obj, "__module__", None) if (inspect.isclass(obj) or callable(obj)) else None
    if defined_in:
        prefixes = [p for p in PACKAGES if defined_in == p or defined_in.startswith(p + ".")]
        if prefixes:
            return max(prefixes, key=len)
    return max(exporters, key=lambda p: p.count("."))


def _exporters(obj: object) -> list[str]:
    return [p for p in PACKAGES if any(o is obj for o in exports(p).values())]


def _summary_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ") if doc else ""


def page_lines(package: str) -> list[str]:
    """The reStructuredText of ``package``'s API page (below its title)."""
    lines = [f".. automodule:: {package}", "   :no-members:", "", f".. py:currentmodule:: {package}", ""]
    own, summary, modules = [], [], []
    for name, obj in exports(package).items():
        if isinstance(obj, types.ModuleType):
            modules.append((name, obj))
            continue
        where = home(obj, _exporters(obj))
        full = f"{where}.{name}"
        summary.append(full[len(package) + 1 :] if full.startswith(package + ".") else full)
        if where == package:
            own.append((name, obj))
    if modules:
        lines += [".. rubric:: Modules", ""]
        for _name, module in modules:
            target = module.__name__
            first = escape_line(_summary_line(module))
            ref = f":doc:`{target} <{target}>`" if target in PACKAGES else f"``{target}``"
            lines.append(f"- {ref}: {first}" if first else f"- {ref}")
        lines.append("")
    if summary:
        lines += [".. rubric:: Summary", "", ".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   {item}" for item in summary]
        lines.append("")
    lines += _own_members(own)
    if package == "gpvi.fit.recipes":
        lines += recipe_lines()
    return lines


def recipe_lines() -> list[str]:
    """The registered recipe classes, each under its own module (their options are their fields)."""
    from gpvi.fit.recipes import RECIPES

    lines = [".. rubric:: The registered recipes", ""]
    lines += [f"- ``{name!r}``: :class:`{cls.__module__}.{cls.__qualname__}`" for name, cls in RECIPES.items()]
    lines.append("")
    for cls in RECIPES.values():
        lines += [f".. py:currentmodule:: {cls.__module__}", ""]
        lines += _own_members([(cls.__qualname__, cls)])
    return lines


def _own_members(own: list[tuple[str, object]]) -> list[str]:
    """autodoc directives for ``(name, object)`` pairs of the current module."""
    lines = []
    for name, obj in own:
        if inspect.isclass(obj):
            lines += [f".. autoclass:: {name}", "   :members:", "   :show-inheritance:", ""]
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            lines += [f".. autofunction:: {name}", ""]
        else:
            lines += [f".. py:data:: {name}", ""]
            lines += [f"   {line}" for line in doc_comment(name, obj)] + [""]
    return lines


def doc_comment(name: str, obj: object) -> list[str]:
    """The ``#:`` comment of the constant ``name`` where a gpvi module defines it (autodoc finds the
    comments of a re-exported constant in the exporting module only, where there are none)."""
    for module_name, module in sorted(sys.modules.items()):
        if not module_name.startswith("gpvi") or getattr(module, name, None) is not obj:
            continue
        try:
            analyzer = ModuleAnalyzer.for_module(module_name)
            analyzer.analyze()
        except Exception:  # noqa: BLE001  (a module without source)
            continue
        comment = analyzer.attr_docs.get(("", name))
        if comment:
            return [line for line in comment if line is not None]
    return []


class GpviApi(Directive):
    """``.. gpvi-api:: gpvi.models`` (see the module docstring)."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        if package not in PACKAGES:
            raise self.error(f"gpvi-api: {package!r} is not one of the documented packages {PACKAGES}.")
        source = self.state_machine.get_source_and_line(self.lineno)[0]
        content = StringList(page_lines(package), source=source)
        node = nodes.container()
        nested_parse_with_titles(self.state, content, node)
        return node.children


# -- docstrings as reStructuredText ----------------------------------------------------------------
# gpvi's docstrings are written to be read as text: shapes like (*b, M), |Δ| and products a*b are
# not reStructuredText markup. After napoleon has turned the Google sections into fields, every `*`
# and `|` outside literals that does not form emphasis (*word*, **word**) is escaped, so that the
# text renders as written. Literal blocks (after `::`), directives' content and doctests are left
# alone.
_LITERAL = re.compile(r"(``.+?``|(?<![\\`])`[^`]+`_{0,2})")
_EMPHASIS = re.compile(r"(?<![\w*\\])(\*{1,2})(?=[^\s*])[^*`]*?[^\s*\\]\1(?![\w*])")
_MARKUP = re.compile(r"(?<!\\)([*|])")
_BULLET = re.compile(r"^\s*\* ")


def _escape_text(text: str) -> str:
    """``text`` (outside literals) with stray ``*`` and ``|`` escaped and emphasis kept."""
    out, last = [], 0
    for match in _EMPHASIS.finditer(text):
        out.append(_MARKUP.sub(r"\\\1", text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_MARKUP.sub(r"\\\1", text[last:]))
    return "".join(out)


def escape_line(line: str) -> str:
    """One rst line with stray markup characters escaped outside inline literals and roles, and a
    span glued to a word (`Model`s) separated by an escaped space (rendered as nothing)."""
    bullet = _BULLET.match(line)
    if bullet:  # a "* item" list stays a list
        return bullet.group(0) + escape_line(line[bullet.end() :])
    parts = _LITERAL.split(line)
    for i in range(0, len(parts), 2):  # even parts are outside literals
        parts[i] = _escape_text(parts[i])
    for i in range(1, len(parts), 2):
        before = parts[i - 1]
        if before and (before[-1].isalnum() or before[-1] in "_)") and not before.endswith(":"):
            parts[i - 1] = before + "\\ "
        after = parts[i + 1]
        if after and (after[0].isalnum() or after[0] in "(["):
            parts[i + 1] = "\\ " + after
    return "".join(parts)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def escape_docstring(lines: list[str]) -> list[str]:
    """``lines`` with `escape_line` applied outside literal blocks, directive bodies and doctests."""
    out, literal_indent, doctest = [], None, False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if literal_indent is not None:
            if not stripped or _indent(line) > literal_indent:
                out.append(line)
                continue
            literal_indent = None
        if doctest:
            if stripped:
                out.append(line)
                continue
            doctest = False
        if stripped.startswith(">>>"):
            doctest = True
            out.append(line)
            continue
        if stripped.startswith(".. "):
            out.append(line)
            literal_indent = _indent(line)
            continue
        preformatted = _opens_block(lines, i)  # text, a blank line, an indented block: code or formulas
        if preformatted and stripped.endswith(":") and not stripped.endswith("::"):
            line = line + ":"  # "...:" then the block, as written
        out.append(escape_line(line))
        if preformatted and not line.strip().endswith("::"):
            out += ["", "::"]  # an "::" paragraph of its own is dropped; the block after it is literal
        if line.strip().endswith("::") or preformatted:
            literal_indent = _indent(line)
    return out


def _opens_block(lines: list[str], i: int) -> bool:
    """Whether ``lines[i]`` is top-level text followed by a blank line and a deeper-indented block
    that is not a doctest (fields, lists and directives have indented bodies of their own)."""
    line = lines[i]
    if not line.strip() or _indent(line) > 0 or line.lstrip().startswith((":", "* ", "- ", ".. ", ">>>")):
        return False
    j = i + 1
    while j < len(lines) and not lines[j].strip():
        j += 1
    return j > i + 1 and j < len(lines) and _indent(lines[j]) > 0 and not lines[j].lstrip().startswith(">>>")


def _process_docstring(app, what, name, obj, options, lines) -> None:
    lines[:] = escape_docstring(lines)


def _constant_docstring(app, what, name, obj, options, lines) -> None:
    """A constant (a dict, a tuple) has its type's docstring (``dict() -> new empty dictionary``):
    give it its ``#:`` comment instead (autosummary's tables read it too)."""
    if what in ("data", "attribute") and type(obj).__module__ == "builtins" and not callable(obj):
        if inspect.getdoc(obj) == inspect.getdoc(type(obj)):
            lines[:] = doc_comment(name.rsplit(".", 1)[-1], obj)


def _process_signature(app, what, name, obj, options, signature, return_annotation):
    """A dataclass field's ``default_factory`` shows as ``<factory>``, which is not Python: write ``...``;
    BoTorch's ``DEFAULT`` marker (a class) shows by its name."""
    if signature and ("<factory>" in signature or _BOTORCH_DEFAULT in signature):
        return signature.replace("<factory>", "...").replace(_BOTORCH_DEFAULT, "DEFAULT"), return_annotation
    return None


_BOTORCH_DEFAULT = "<class 'botorch.utils.types.DEFAULT'>"


def setup(app):
    app.add_directive("gpvi-api", GpviApi)
    app.connect("autodoc-process-signature", _process_signature)
    app.connect("autodoc-process-docstring", _constant_docstring, priority=400)  # before napoleon (500)
    app.connect("autodoc-process-docstring", _process_docstring, priority=600)  # after napoleon
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
