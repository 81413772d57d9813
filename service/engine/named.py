"""Named expressions: facts written once as an expression and read as derived.NAME.

The rules' ones live in rules/derived.yaml; a model's, frozen with its version, in the
`derived:` block of its features.yaml. Each may read the ones above it; its type is its
expression's. A use expands to the expression itself (compile_expression's ``named``), so it
may read whatever the reading expression may, and the trace shows the facts it was made of.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from service.engine.expressions import ExpressionError, compile_expression, parse
from service.engine.facts import ANY
from service.engine.source import Located, Position

NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class DerivedFact:
    expression: str
    type: str
    description: str


@dataclass
class Named:
    """What expressions may read once the named expressions are compiled."""

    catalogue: dict[str, str]
    trees: dict[str, ast.expr] = field(default_factory=dict)  # derived.NAME → its parsed text
    facts: dict[str, DerivedFact] = field(default_factory=dict)  # NAME → its definition


def compile_named(entries: Located, catalogue: dict[str, str],
                  error: Callable[[Position, str, str | None], None]) -> Named:
    """Compile ``entries`` (NAME → expression, or {expression, description}) in order."""
    named = Named(catalogue)
    for name, entry in entries.items():
        owner, key = entries, name
        if isinstance(entry, Located):
            for unknown in set(entry) - {"expression", "description"}:
                error(entry.at(unknown), f"unknown key '{unknown}' (allowed: description, expression)", name)
            owner, key = entry, "expression"
        if not NAME.fullmatch(name):
            error(entries.at(name), "a derived fact's name is lower_snake_case, at most 32 characters", name)
            continue
        if key not in owner:
            error(owner.position, "'expression' is required", name)
            continue
        try:
            compiled = compile_expression(owner[key], named.catalogue, None, named.trees)
        except ExpressionError as exc:
            error(owner.locate(key, exc.offset), exc.message, name)
            continue
        if compiled.type == ANY:
            error(entries.at(name), "a derived fact needs a type: this expression is always null", name)
            continue
        path = f"derived.{name}"
        named.catalogue = named.catalogue | {path: compiled.type}
        named.trees = named.trees | {path: parse(compiled.text)}
        description = entry.get("description") if isinstance(entry, Located) else None
        named.facts[name] = DerivedFact(compiled.text, compiled.type, str(description or ""))
    return named
