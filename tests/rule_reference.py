"""A plain tree-walking evaluator of the rule language, written from its documented semantics
and nothing else (no guards, no rewriting): the differential tests hold the compiler to it.

Null semantics, as documented in service/engine/expressions.py: a comparison with a null
operand is false; arithmetic with a null operand is null; and/or/not give true or false, a null
operand counting as false; missing(x) tests for null. Arithmetic and comparison chains evaluate
their operands left to right until one is null; the one run-time error is arithmetic.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

import re2

from service.engine.functions import REGISTRY, power

_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv, ast.Pow: power}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}


def evaluate(text: str, facts: dict[str, Any], lists: Any) -> Any:
    source = text.strip()
    tree = ast.parse(source if "\n" not in source else f"({source}\n)", mode="eval")
    return _eval(tree.body, facts, lists)


def _quantify(node: ast.Call, facts: dict[str, Any], lists: Any) -> bool:
    """any/all(cond for p in list): over the items, a null list being empty; null counts false."""
    generator = node.args[0]
    assert isinstance(generator, ast.GeneratorExp)
    loop = generator.generators[0]
    assert isinstance(loop.target, ast.Name)
    results = []
    for item in _eval(loop.iter, facts, lists) or []:
        scoped = {**facts, f"var:{loop.target.id}": item}
        results.append(all(_eval(t, scoped, lists) is True for t in [*loop.ifs, generator.elt]))
    return any(results) if node.func.id == "any" else all(results)  # type: ignore[attr-defined]


def _path(node: ast.expr) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    assert isinstance(node, ast.Name)
    return ".".join([node.id, *reversed(parts)])


def _eval(node: ast.expr, facts: dict[str, Any], lists: Any) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in ("true", "false"):
        return node.id == "true"
    if isinstance(node, (ast.Name, ast.Attribute)):
        path = _path(node)
        root, _, field = path.partition(".")
        if f"var:{root}" in facts:  # a quantifier's item: a value, or a party / attachment
            item = facts[f"var:{root}"]
            return getattr(item, field) if field else item
        return facts[path]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, facts, lists) for e in node.elts]
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, facts, lists) is True for v in node.values)
        return any(_eval(v, facts, lists) is True for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, facts, lists)
        if isinstance(node.op, ast.Not):
            return value is not True
        if value is None:
            return None
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp):
        left = _eval(node.left, facts, lists)  # left to right, until one is null
        right = None if left is None else _eval(node.right, facts, lists)
        if left is None or right is None:
            return None
        return _ARITH[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        values = []
        for operand in [node.left, *node.comparators]:  # left to right, until one is null
            value = _eval(operand, facts, lists)
            if value is None:
                return False
            values.append(value)
        return all(_COMPARE[type(op)](values[i], values[i + 1]) for i, op in enumerate(node.ops))
    if isinstance(node, ast.IfExp):
        chosen = node.body if _eval(node.test, facts, lists) is True else node.orelse
        return _eval(chosen, facts, lists)
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        name, args = node.func.id, node.args
        if name in ("any", "all"):
            return _quantify(node, facts, lists)
        if name == "missing":
            return _eval(args[0], facts, lists) is None
        if name == "matches":
            assert isinstance(args[0], ast.Constant)
            text = _eval(args[1], facts, lists)
            return text is not None and re2.fullmatch(args[0].value, text) is not None
        if name in ("in_list", "any_in_list"):
            assert isinstance(args[0], ast.Constant)
            value = _eval(args[1], facts, lists)
            return lists.contains(args[0].value, value) if name == "in_list" else lists.contains_any(args[0].value, value)
        return REGISTRY[name].fn(*[_eval(a, facts, lists) for a in args])
    raise AssertionError(f"not in the language: {ast.dump(node)}")
