"""Decision tables in columns: what a cell says about its column, as a rule expression.

A table names its input columns (a fact or an expression each); a row gives, per column, a
cell, and holds when every cell holds. Cells, as a risk analyst writes them:

    -  or empty         any value
    E, farmer, 12       equal to it (text needs no quotes; 'quoted' text and numbers work too)
    true / false        equal to it
    >= 100, < loan.amount, != 'x'
                        the comparison, with any expression on the right
    [18..60]            a range, both ends included; (18..60), [18..60), (18..60] exclude ends;
                        the ends may be expressions: [product.min_age..product.max_age]
    [A, B, C]           one of them
    missing             the column is null; "not missing": it is not
    not <cell>          the cell does not hold (null counts as not holding: "not true" is true
                        for false and for null)

Each cell becomes an expression compiled like any rule's, so it is typed and checked alike.
"""

from __future__ import annotations

import re
from typing import Any

HIT_POLICIES = ("first", "priority", "collect")
RESERVED_OUTPUTS = ("outcome", "reason")
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)\s*(.+)", re.DOTALL)
_RANGE = re.compile(r"([\[(])\s*(.+?)\s*\.\.\s*(.+?)\s*([\])])")
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_PATH = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*")


class CellError(ValueError):
    """A cell that is not one of the forms above."""


def literal(value: Any) -> str:
    """A YAML scalar as an expression literal: numbers and booleans as they are, text quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).strip()
    if _NUMBER.fullmatch(text) or text in ("true", "false") or (len(text) > 1 and text[0] == text[-1] in "'\""):
        return text
    return repr(text)


def condition(column: str, is_path: bool, cell: Any) -> str | None:
    """The expression a cell asks of ``column`` (an expression text); None for "any value"."""
    if cell is None:
        return None
    if isinstance(cell, list):
        if len(cell) == 1 and isinstance(cell[0], str) and ".." in cell[0]:
            return condition(column, is_path, f"[{cell[0]}]")  # YAML read [18..60] as a list
        if any(isinstance(v, (list, dict)) or v is None for v in cell):
            raise CellError("a list cell holds values: [A, B] or [1, 2]")
        return f"({column}) in [{', '.join(literal(v) for v in cell)}]"
    if isinstance(cell, dict):
        raise CellError("a cell is a value, a comparison (>= 100), a range ([18..60]) or a list ([A, B])")
    if not isinstance(cell, str):
        return f"({column}) == {literal(cell)}"
    text = cell.strip()
    if text in ("", "-"):
        return None
    if text in ("missing", "not missing"):
        if not is_path:
            raise CellError(f"'{text}' needs a column that is a field, not an expression")
        return f"{'not ' if text.startswith('not') else ''}missing({column})"
    if text.startswith("not "):
        inner = condition(column, is_path, text[4:])
        if inner is None:
            raise CellError("'not -' holds for nothing: leave the cell empty or write a value")
        return f"not ({inner})"
    if (match := _COMPARISON.fullmatch(text)) is not None:
        return f"({column}) {match.group(1)} {match.group(2)}"
    if (match := _RANGE.fullmatch(text)) is not None:
        low, high = match.group(2), match.group(3)
        left = "<=" if match.group(1) == "[" else "<"
        right = "<=" if match.group(4) == "]" else "<"
        return f"{low} {left} ({column}) {right} {high}"  # bounds are expressions: 18, product.max_age
    if text.startswith("[") and text.endswith("]"):
        items = [item.strip() for item in text[1:-1].split(",") if item.strip()]
        return f"({column}) in [{', '.join(literal(v) for v in items)}]"
    return f"({column}) == {literal(text)}"


def is_path(expression: str) -> bool:
    return _PATH.fullmatch(expression.strip()) is not None
