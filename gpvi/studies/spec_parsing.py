"""Reading validated fields out of a study's TOML tables, with errors that name the field and its line.

tomllib gives values, not positions; `Locator` finds the line of a dotted field (``methods[1].model``)
in the text, and the helpers raise `StudyError` messages of the form
``study.toml:12: `methods[1].model` unknown model 'foo'; use one of ...``.
"""

from __future__ import annotations

import re
from typing import Any


class StudyError(ValueError):
    """A study file is invalid; the message names the field and, when known, its line."""


class Locator:
    """Finds the line of a field in the TOML text."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def line_of(self, dotted: str) -> int | None:
        parts = re.findall(r"[A-Za-z_]+|\[\d+\]", dotted)
        table, index, key = parts[0] if parts else "", 0, None
        for p in parts[1:]:
            if p.startswith("["):
                index = int(p[1:-1])
            else:
                key = p
        headers = [i for i, line in enumerate(self.lines) if re.match(rf"\s*\[\[?\s*{re.escape(table)}\s*\]\]?", line)]
        if not headers:
            return None
        start = headers[min(index, len(headers) - 1)]
        if key is None:
            return start + 1
        for i in range(start + 1, len(self.lines)):
            if re.match(r"\s*\[", self.lines[i]):
                break
            if re.match(rf"\s*{re.escape(key)}\s*=", self.lines[i]):
                return i + 1
        return start + 1

    def say(self, dotted: str, message: str) -> str:
        line = self.line_of(dotted)
        at = f"{self.source}:{line}" if line else self.source
        return f"{at}: `{dotted}` {message}"


def get_field(table: dict, key: str, types: Any, ctx: str, where: Locator, default: Any = ...) -> Any:
    """``table[key]`` checked against ``types`` (bools are never ints); ``default`` when missing (required if none)."""
    dotted = f"{ctx}.{key}" if ctx else key
    if key not in table:
        if default is ...:
            raise StudyError(where.say(dotted, "is missing"))
        return default
    value = table[key]
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) or not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in types)
        raise StudyError(where.say(dotted, f"must be {expected}, got {type(value).__name__} {value!r}"))
    return value


def parse_seeds(value: Any, dotted: str, where: Locator) -> list[int]:
    """A positive int n (seeds 0..n-1) or a non-empty list of distinct ints."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if len(set(value)) != len(value):
            raise StudyError(where.say(dotted, f"has repeated seeds: {value}"))
        return list(value)
    raise StudyError(where.say(dotted, f"must be a positive int or a non-empty list of ints, got {value!r}"))


def get_array(raw: dict, key: str, where: Locator) -> list:
    """The non-empty array of tables ``[[key]]``."""
    value = raw.get(key)
    if not isinstance(value, list) or not value:
        raise StudyError(f"{where.source}: needs at least one [[{key}]] table.")
    return value


def reject_unknown(table: dict, known: set[str], ctx: str, where: Locator) -> None:
    """A `StudyError` for the first key of ``table`` not in ``known``."""
    for key in table:
        if key not in known:
            dotted = f"{ctx}.{key}" if ctx else key
            raise StudyError(where.say(dotted, f"is not a known field (known: {sorted(known)})"))


def require_table(raw: Any, ctx: str, where: Locator) -> dict:
    """``raw`` if it is a table, else a `StudyError`."""
    if not isinstance(raw, dict):
        raise StudyError(where.say(ctx, "must be a table"))
    return raw


__all__ = ["Locator", "StudyError", "get_array", "get_field", "parse_seeds", "reject_unknown", "require_table"]
