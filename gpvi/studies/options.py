"""A method's ``options`` checked at spec load: names against what the model takes, types against its annotations.

A study kind says which options a model takes, as ``{name: annotation}`` (`OptionSpec`), from the
constructor (read along its MRO like `ModelEntry.constructor_parameters`), the BO factory, or the
training (`gpvi.fit`'s recipes, or the model's own ``fit``). `check_options` then raises a
`StudyError` with the TOML line for an unknown name (naming the model, the allowed names and the
closest one) or a value of the wrong type. The expected type comes from the annotation, read as
text (``int``, ``float``, ``bool``, ``str``, ``X | None``, ``list[...]``, ``dict[...]``):

- an ``int`` is accepted for a ``float``, a ``bool`` never for a number;
- an annotation with no such part (``Kernel | None``, ``Tensor``) names an object a TOML file
  cannot hold: any value is refused;
- ``Any``, or a part that cannot be read, leaves the value unchecked.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gpvi.studies.spec_parsing import Locator, StudyError

#: The annotation names read as TOML value types.
PRIMITIVES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "list": (list,),
    "tuple": (list,),
    "Sequence": (list,),
    "Iterable": (list,),
    "dict": (dict,),
    "Mapping": (dict,),
}
UNCHECKED = object()  # an annotation whose values are not checked (Any, or unreadable)


@dataclass
class OptionSpec:
    """What a model's options may be: ``{name: annotation}`` (None: unchecked), and whether others pass too."""

    hints: dict[str, Any]
    open_ended: bool = False

    def merge(self, other: OptionSpec) -> OptionSpec:
        """Both sets of names; a name in both takes either type."""
        hints = dict(self.hints)
        for name, hint in other.hints.items():
            hints[name] = hint if name not in hints else _union(hints[name], hint)
        return OptionSpec(hints, self.open_ended or other.open_ended)

    def without(self, names: Iterable[str]) -> OptionSpec:
        names = set(names)
        return OptionSpec({k: v for k, v in self.hints.items() if k not in names}, self.open_ended)


def _union(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    return f"{_text(a)} | {_text(b)}"


def _text(annotation: Any) -> str:
    """An annotation as the text it was written as (annotations are strings under `from __future__`)."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[("
        depth -= ch in "])"
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def toml_types(annotation: Any) -> tuple[type, ...] | object:
    """The TOML value types an annotation admits: a tuple (empty: none can be given), or `UNCHECKED`."""
    if annotation is None or annotation is inspect.Parameter.empty:
        return UNCHECKED
    types: list[type] = []
    for part in _split_top(_text(annotation), "|"):
        head, _, inner = part.partition("[")
        head = head.split(".")[-1].strip()
        if head in ("Any", "object"):
            return UNCHECKED
        if head == "None":
            continue
        if head == "Optional":
            inner_types = toml_types(inner[:-1])
            if inner_types is UNCHECKED:
                return UNCHECKED
            types += inner_types
        elif head == "Union":
            inner_types = toml_types(" | ".join(_split_top(inner[:-1], ",")))
            if inner_types is UNCHECKED:
                return UNCHECKED
            types += inner_types
        elif head == "Literal":
            types += [str] if inner.lstrip().startswith(("'", '"')) else [int]
        elif head in PRIMITIVES:
            types += PRIMITIVES[head]
        elif not re.fullmatch(r"[A-Za-z_][\w.]*(\[.*\])?", part):
            return UNCHECKED  # something this reader does not understand: leave it alone
    return tuple(dict.fromkeys(types))


def type_matches(value: Any, types: tuple[type, ...]) -> bool:
    """Whether a TOML value has one of ``types`` (a bool is never a number; an int is a float)."""
    if isinstance(value, bool):
        return bool in types
    return any(t is not bool and isinstance(value, t) for t in types)


def expected_text(types: tuple[type, ...]) -> str:
    names = [t.__name__ for t in types]
    if "int" in names and "float" in names:
        names.remove("int")
    return " or ".join(names)


# -- what a model takes ---------------------------------------------------------------------------
def signature_options(fn: Callable[..., Any], skip: Iterable[str] = ("self",)) -> OptionSpec:
    """The keyword parameters of ``fn`` with their annotations (``open_ended``: it also takes ``**kwargs``)."""
    params = inspect.signature(fn).parameters.values()
    skip = set(skip)
    hints = {
        p.name: None if p.annotation is p.empty else p.annotation
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skip
    }
    return OptionSpec(hints, any(p.kind is p.VAR_KEYWORD for p in params))


def constructor_options(constructor: Callable[..., Any]) -> OptionSpec:
    """A constructor's keyword options, read along the MRO while ``__init__`` passes ``**options`` on
    (the names of `ModelEntry.constructor_parameters`, with their annotations)."""
    if not isinstance(constructor, type):
        return signature_options(constructor)
    out = OptionSpec({}, True)
    for cls in constructor.__mro__:
        if "__init__" not in cls.__dict__:
            continue
        found = signature_options(cls.__init__)
        hints = {**found.hints, **out.hints}  # a subclass's annotation wins
        out = OptionSpec(hints, found.open_ended)
        if not found.open_ended:
            break
    return out


def entry_constructor_options(entry: Any) -> OptionSpec:
    """A registered model's constructor options: the names of `ModelEntry.constructor_parameters`, annotated."""
    names, open_ended = entry.constructor_parameters()
    hints = constructor_options(entry.resolve()).hints
    return OptionSpec({name: hints.get(name) for name in names}, open_ended)


def dataclass_options(cls: type) -> OptionSpec:
    """The fields of a dataclass (a recipe) with their annotations."""
    return OptionSpec({f.name: f.type for f in dataclasses.fields(cls)})


# -- the check --------------------------------------------------------------------------------------
def option_line(where: Locator, ctx: str, key: str, field: str = "options") -> int | None:
    """The line of ``key`` in ``ctx``'s ``field``: the ``options = {...}`` line, or a ``key =`` line of an
    ``[methods.options]`` table below the method."""
    line = where.line_of(f"{ctx}.{field}")
    if line is not None and re.search(rf"\b{field}\s*=.*\b{re.escape(key)}\s*=", where.lines[line - 1]):
        return line
    start = where.line_of(ctx)
    if start is not None:
        for i in range(start, len(where.lines)):
            if re.match(r"\s*\[\[", where.lines[i]):
                break
            if re.match(rf"\s*\"?{re.escape(key)}\"?\s*=", where.lines[i]):
                return i + 1
    return line


def _say(where: Locator, ctx: str, key: str, message: str, field: str) -> str:
    line = option_line(where, ctx, key, field)
    at = f"{where.source}:{line}" if line else where.source
    return f"{at}: `{ctx}.{field}` {message}"


def check_options(
    options: dict[str, Any], spec: OptionSpec | None, owner: str, ctx: str, where: Locator, field: str = "options"
) -> None:
    """A `StudyError` for the first of ``ctx.field``'s options that ``spec`` does not allow; None: unchecked.

    ``owner`` names what takes the options in the message ("model 'svgp'").
    """
    if spec is None:
        return
    for key, value in options.items():
        if key not in spec.hints:
            if spec.open_ended:
                continue
            allowed = sorted(spec.hints)
            if not allowed:
                raise StudyError(_say(where, ctx, key, f"has option {key!r}, but {owner} takes no {field}", field))
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise StudyError(
                _say(where, ctx, key, f"has unknown option {key!r} for {owner}{hint} Allowed: {allowed}", field)
            )
        types = toml_types(spec.hints[key])
        if types is UNCHECKED:
            continue
        if not types:
            raise StudyError(
                _say(
                    where,
                    ctx,
                    key,
                    f"{key!r} of {owner} takes a {_text(spec.hints[key])} object, which a study file "
                    "cannot give; leave it out",
                    field,
                )
            )
        if not type_matches(value, types):
            raise StudyError(
                _say(
                    where,
                    ctx,
                    key,
                    f"{key!r} must be {expected_text(types)} for {owner}, got {type(value).__name__} {value!r}",
                    field,
                )
            )


__all__ = [
    "OptionSpec",
    "check_options",
    "constructor_options",
    "dataclass_options",
    "entry_constructor_options",
    "expected_text",
    "option_line",
    "signature_options",
    "toml_types",
    "type_matches",
]
