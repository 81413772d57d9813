"""Compile rule expressions into Python functions through a whitelisted, typed AST.

The text is parsed by ``ast.parse`` (it is never executed), every node is checked against a
small grammar, typed against the fact catalogue, and *rewritten* into a new AST in which fields
are dict lookups, comparisons are null-safe and functions are pre-bound. Only that generated
AST is compiled, with no builtins, into ``lambda F, L: …`` (F: facts, L: the list lookup).
Anything outside the grammar — attributes other than field paths, dunders, subscripts, calls of
anything but registered functions, lambdas, comprehensions, f-strings, imports, large or
non-literal exponents, powers of powers — is a load error with a position.

Types: number, string, bool, date, datetime and lists of one of them. Every operator and
function argument is checked, so a rule that loads cannot raise a type error; comparing values
that can never be equal (text with a number, 'famer' with an occupation, text among numbers) is
a load error too.

Null semantics: an absent field is ``None``; a comparison with a null operand is false;
arithmetic with a null operand is null; ``and``/``or``/``not`` give true or false, a null
operand counting as false; ``missing(x)`` tests for null. The one error at run time is
arithmetic (division by zero, a number that overflows): it propagates to the caller, which
records it as the rule's ``error``.

Bounded time: expressions are at most 2,000 characters, patterns run on RE2 (linear in the text)
and powers in floating point, so no rule takes long on any input the API accepts.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import re2

from service.engine.facts import ANY, BOOL, DATE, DATETIME, ENUMS, ITEMS, NUMBER, OBJECT, STRING, item_of, list_of
from service.engine.functions import REGISTRY, accepts, power

MAX_LENGTH = 2000
MAX_DEPTH = 40
MAX_EXPONENT = 8
MAX_STRING = 200

CompiledExpr = Callable[[dict[str, Any], Any], Any]

_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod, ast.FloorDiv, ast.Pow)
_ORDERED = {NUMBER, STRING, DATETIME, DATE}


class ExpressionError(Exception):
    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line  # 1-based, within the expression text
        self.column = column  # 1-based, in characters
        self.offset = 0  # 0-based, in characters of the text as written (set by compile_expression)


@dataclass
class Compiled:
    fn: CompiledExpr
    type: str
    fields: frozenset[str]  # the fact paths the expression reads
    text: str
    # What it reads with in_list/any_in_list: (list name, the fact path given — None when the
    # argument is not a plain field path —, True for any_in_list).
    list_reads: frozenset[tuple[str, str | None, bool]] = frozenset()

    @property
    def lists(self) -> frozenset[str]:
        """The list names it reads."""
        return frozenset(read[0] for read in self.list_reads)


@dataclass
class _Compiler:
    catalogue: dict[str, str]
    lines: list[str] = field(default_factory=list)  # the parsed text, for columns in characters
    names: dict[str, Any] = field(default_factory=dict)
    fields: set[str] = field(default_factory=set)
    list_reads: set[tuple[str, str | None, bool]] = field(default_factory=set)
    temps: int = 0
    # Quantifier variables in scope: name → (its name in the generated code, the list it ranges
    # over, the type of an item).
    scopes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    # Named expressions (rules/derived.yaml): fact path → its parsed text, expanded where read.
    named: dict[str, ast.expr] = field(default_factory=dict)

    # --- helpers --------------------------------------------------------------------------

    def fail(self, node: ast.AST, message: str) -> ExpressionError:
        line = getattr(node, "lineno", 1)
        # ast counts columns in UTF-8 bytes; an analyst counts characters (名字 is two, not six).
        written = self.lines[line - 1].encode()[:getattr(node, "col_offset", 0)] if self.lines else b""
        return ExpressionError(message, line, len(written.decode(errors="ignore")) + 1)

    def bind(self, value: Any) -> ast.Name:
        name = f"_k{len(self.names)}"
        self.names[name] = value
        return ast.Name(name, ast.Load())

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    @staticmethod
    def is_const(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) or (
            isinstance(node, ast.Name) and node.id.startswith("_k"))

    def guarded(self, operands: list[ast.expr]) -> tuple[list[ast.expr], list[ast.expr]]:
        """For each non-constant operand: a `(_t := x) is not None` guard and the temp to use."""
        guards: list[ast.expr] = []
        uses: list[ast.expr] = []
        for op in operands:
            if self.is_const(op):
                uses.append(op)
                continue
            name = self.temp()
            guards.append(ast.Compare(ast.NamedExpr(ast.Name(name, ast.Store()), op),
                                      [ast.IsNot()], [ast.Constant(None)]))
            uses.append(ast.Name(name, ast.Load()))
        return guards, uses

    # --- the grammar ----------------------------------------------------------------------

    def visit(self, node: ast.AST, depth: int = 0) -> tuple[ast.expr, str]:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"expression nests deeper than {MAX_DEPTH} levels")
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise self.fail(node, f"{_describe(node)} is not allowed in rule expressions")
        return method(node, depth + 1)

    def visit_Constant(self, node: ast.Constant, depth: int) -> tuple[ast.expr, str]:
        value = node.value
        if value is None:
            return ast.Constant(None), ANY
        if isinstance(value, bool):
            return ast.Constant(value), BOOL
        if isinstance(value, (int, float)):
            return ast.Constant(value), NUMBER
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise self.fail(node, f"string literals are limited to {MAX_STRING} characters")
            return ast.Constant(value), STRING
        raise self.fail(node, f"{type(value).__name__} literals are not allowed")

    def visit_Name(self, node: ast.Name, depth: int) -> tuple[ast.expr, str]:
        if node.id in ("true", "false"):  # YAML spelling, natural for the risk team
            return ast.Constant(node.id == "true"), BOOL
        if node.id in self.scopes:
            name, over, kind = self.scopes[node.id]
            if kind == OBJECT:
                fields = ", ".join(f"{node.id}.{f}" for f in ITEMS[over])
                raise self.fail(node, f"'{node.id}' is an item of {over}: read its fields ({fields})")
            return ast.Name(name, ast.Load()), kind
        return self.field_ref(node, node.id)

    def visit_Attribute(self, node: ast.Attribute, depth: int) -> tuple[ast.expr, str]:
        path = self.path_of(node)
        root, _, rest = path.partition(".")
        if root in self.scopes:
            name, over, kind = self.scopes[root]
            fields = ITEMS.get(over, {}) if kind == OBJECT else {}
            if rest not in fields:
                known = ", ".join(f"{root}.{f}" for f in fields) or f"{root} itself (an item of {over})"
                raise self.fail(node, f"'{path}' is not a field of an item of {over}: read {known}")
            return ast.Attribute(ast.Name(name, ast.Load()), rest, ast.Load()), fields[rest]
        return self.field_ref(node, path)

    def fact_path(self, node: ast.expr) -> str | None:
        """The catalogue path a field path reads, a quantifier's item fields named after their
        list (p.relation → related_parties.relation, x over related.phones → related.phones)."""
        if not isinstance(node, (ast.Name, ast.Attribute)):
            return None
        try:
            path = self.path_of(node)
        except ExpressionError:
            return None
        root, _, rest = path.partition(".")
        if root not in self.scopes:
            return path
        over = self.scopes[root][1]
        return f"{over}.{rest}" if rest else over

    def path_of(self, node: ast.expr) -> str:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            raise self.fail(node, "attributes can only be read from field paths such as applicant.age")
        parts.append(node.id)
        return ".".join(reversed(parts))

    def field_ref(self, node: ast.AST, path: str) -> tuple[ast.expr, str]:
        if any(part.startswith("_") for part in path.split(".")):
            raise self.fail(node, f"'{path}': names starting with '_' are not allowed")
        if path in self.named:  # a named expression: its own text, read where it is used
            scopes, self.scopes = self.scopes, {}
            try:
                return self.visit(self.named[path])
            finally:
                self.scopes = scopes
        kind = self.catalogue.get(path)
        if kind is None:
            hint = _suggest(path, self.catalogue)
            if hint:
                raise self.fail(node, f"unknown field '{path}' (did you mean '{hint}'?)")
            if "." not in path and path not in REGISTRY:
                raise self.fail(node, f"unknown field '{path}'; text must be quoted: '{path}'")
            raise self.fail(node, f"unknown field '{path}'")
        self.fields.add(path)
        return ast.Subscript(ast.Name("F", ast.Load()), ast.Constant(path), ast.Load()), kind

    def visit_List(self, node: ast.List | ast.Tuple, depth: int) -> tuple[ast.expr, str]:
        values: list[Any] = []
        kinds: set[str] = set()
        for elt in node.elts:
            if isinstance(elt, ast.UnaryOp) and isinstance(elt.op, (ast.USub, ast.UAdd)) \
                    and isinstance(elt.operand, ast.Constant) and type(elt.operand.value) in (int, float):
                value = elt.operand.value
                assert isinstance(value, (int, float))
                elt = ast.Constant(-value if isinstance(elt.op, ast.USub) else value)
            if not isinstance(elt, ast.Constant) or isinstance(elt.value, (bytes, complex)) or elt.value is ... \
                    or elt.value is None:
                raise self.fail(elt, "list literals may only hold numbers, strings and booleans")
            _, kind = self.visit_Constant(elt, depth)
            if kinds and kind not in kinds:
                raise self.fail(elt, f"a list holds one type: this {kind} is among {kinds.pop()}s")
            kinds.add(kind)
            values.append(elt.value)
        return self.bind(tuple(values)), list_of(kinds.pop() if kinds else ANY)

    visit_Tuple = visit_List

    def visit_BoolOp(self, node: ast.BoolOp, depth: int) -> tuple[ast.expr, str]:
        values = []
        for value in node.values:
            code, kind = self.visit(value, depth)
            if kind not in (BOOL, ANY):
                raise self.fail(value, f"'and'/'or' need true/false operands, got a {kind}")
            values.append(code)
        # `is True`: and/or give true or false, never null (a null operand counts as false), so
        # that `(a and b) != true` is true when a is null, as the documented semantics say.
        return ast.Compare(ast.BoolOp(type(node.op)(), values), [ast.Is()], [ast.Constant(True)]), BOOL

    def visit_UnaryOp(self, node: ast.UnaryOp, depth: int) -> tuple[ast.expr, str]:
        operand, kind = self.visit(node.operand, depth)
        if isinstance(node.op, ast.Not):
            if kind not in (BOOL, ANY):
                raise self.fail(node, f"'not' needs a true/false operand, got a {kind}")
            return ast.UnaryOp(ast.Not(), operand), BOOL
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            if kind not in (NUMBER, ANY):
                raise self.fail(node, f"unary minus needs a number, got a {kind}")
            if self.is_const(operand):
                return ast.UnaryOp(type(node.op)(), operand), NUMBER
            guards, (use,) = self.guarded([operand])
            return _null_or(guards, ast.UnaryOp(type(node.op)(), use)), NUMBER
        raise self.fail(node, "bitwise operators are not allowed")

    def visit_BinOp(self, node: ast.BinOp, depth: int) -> tuple[ast.expr, str]:
        if not isinstance(node.op, _ARITH):
            raise self.fail(node, "only + - * / // % and ** are allowed")
        if isinstance(node.op, ast.Pow):
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(node.left)):
                raise self.fail(node, "a power of a power grows without bound: write one exponent")
            exponent = node.right
            if isinstance(exponent, ast.UnaryOp) and isinstance(exponent.op, ast.USub):
                exponent = exponent.operand
            if not (isinstance(exponent, ast.Constant) and isinstance(exponent.value, (int, float))
                    and not isinstance(exponent.value, bool) and abs(exponent.value) <= MAX_EXPONENT):
                raise self.fail(node, f"the exponent of ** must be a number literal up to {MAX_EXPONENT}")
        left, lk = self.visit(node.left, depth)
        right, rk = self.visit(node.right, depth)
        for kind, side in ((lk, node.left), (rk, node.right)):
            if kind not in (NUMBER, ANY):
                raise self.fail(side, f"arithmetic needs numbers, got a {kind}")
        guards, (lu, ru) = self.guarded([left, right])
        if isinstance(node.op, ast.Pow):  # in floating point: overflows at once, never a huge integer
            return _null_or(guards, ast.Call(self.bind(power), [lu, ru], [])), NUMBER
        return _null_or(guards, ast.BinOp(lu, type(node.op)(), ru)), NUMBER

    def visit_Compare(self, node: ast.Compare, depth: int) -> tuple[ast.expr, str]:
        operands = [node.left, *node.comparators]
        compiled = []
        for operand in operands:
            if isinstance(operand, ast.Constant) and operand.value is None:
                raise self.fail(operand, "comparing with None is always false: use missing(x)")
            compiled.append(self.visit(operand, depth))
        guards, uses = self.guarded([code for code, _ in compiled])
        parts: list[ast.expr] = []
        for i, op in enumerate(node.ops):
            if not isinstance(op, _COMPARE):
                raise self.fail(node, "'is' / 'is not' are not allowed: use == or missing(x)")
            (lk, rk), left_node, right_node = (compiled[i][1], compiled[i + 1][1]), operands[i], operands[i + 1]
            if isinstance(op, (ast.In, ast.NotIn)):
                item = item_of(rk)
                if rk != STRING and item is None:
                    raise self.fail(right_node, f"'in' needs a list or text on its right, got a {rk}")
                if item == OBJECT:
                    raise self.fail(right_node, "'in' cannot look among parties or attachments: "
                                                "use the lists of their fields (related.phones, attachments.types)")
                want = STRING if rk == STRING else item
                if lk != want and ANY not in (lk, want):
                    what = "text" if rk == STRING else f"a list of {item}s"
                    raise self.fail(left_node, f"a {lk} is never in {what}" + (
                        " (compare lists with all_in(a, b))" if item_of(lk) else ""))
                if rk != STRING:
                    self.check_values(left_node, right_node)
                    self.check_values(right_node, left_node)
            else:
                if item_of(lk) or item_of(rk):
                    raise self.fail(node, "lists cannot be compared with == or <: use all_in(a, b), "
                                          "'x in list' or len(list)")
                if not _comparable(lk, rk, ordered=not isinstance(op, (ast.Eq, ast.NotEq))):
                    raise self.fail(node, f"cannot compare a {lk} with a {rk}")
                if isinstance(op, (ast.Eq, ast.NotEq)):
                    self.check_values(left_node, right_node)
                    self.check_values(right_node, left_node)
            right = uses[i + 1]
            if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right_node, (ast.List, ast.Tuple)):
                assert isinstance(right, ast.Name)
                right = self.bind(frozenset(self.names[right.id]))  # membership in a literal: a set
            parts.append(ast.Compare(uses[i], [type(op)()], [right]))
        return ast.BoolOp(ast.And(), guards + parts) if len(guards + parts) > 1 else parts[0], BOOL

    def quantifier(self, node: ast.Call, name: str, depth: int) -> tuple[ast.expr, str]:
        """`any(cond for p in list)` / `all(…)`: whether one / every item satisfies ``cond``;
        false / true for an empty or missing list. ``p`` is an item, or with a list of parties
        or attachments, an object whose fields are read as p.field."""
        shape = f"write {name}(condition for p in a list), e.g. {name}(p.relation == 'spouse' for p in related_parties)"
        if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.GeneratorExp):
            raise self.fail(node, shape)
        generator = node.args[0]
        if len(generator.generators) != 1 or generator.generators[0].is_async:
            raise self.fail(generator, f"one 'for' per quantifier: {shape}")
        loop = generator.generators[0]
        if not isinstance(loop.target, ast.Name):
            raise self.fail(loop.target, f"the variable must be a single name: {shape}")
        var = loop.target.id
        if var.startswith("_") or var in ("true", "false") or var in self.scopes or var in REGISTRY \
                or any(path == var or path.startswith(var + ".") for path in self.catalogue):
            raise self.fail(loop.target, f"'{var}' is taken: name the item something else, such as p or x")
        iterable, kind = self.visit(loop.iter, depth)
        item = item_of(kind)
        over = self.fact_path(loop.iter)
        if item is None or over is None or over not in self.catalogue:
            raise self.fail(loop.iter, f"a quantifier ranges over a list field (such as related_parties), "
                                       f"got {_a(kind)}")
        self.scopes[var] = (f"_q{len(self.scopes)}_{self.temp()}", over, item)
        try:
            tests = []
            for expr in [*loop.ifs, generator.elt]:
                code, test_kind = self.visit(expr, depth)
                if test_kind not in (BOOL, ANY):
                    raise self.fail(expr, f"{name}() needs a true/false condition, got {_a(test_kind)}")
                tests.append(code)
            generated = self.scopes[var][0]
        finally:
            del self.scopes[var]
        condition = ast.BoolOp(ast.And(), tests) if len(tests) > 1 else tests[0]
        each = ast.Compare(condition, [ast.Is()], [ast.Constant(True)])  # null counts as false
        loop_code = ast.comprehension(ast.Name(generated, ast.Store()),
                                      ast.BoolOp(ast.Or(), [iterable, ast.Tuple([], ast.Load())]), [], 0)
        return ast.Call(self.bind(any if name == "any" else all), [ast.GeneratorExp(each, [loop_code])], []), BOOL

    def check_values(self, field_node: ast.expr, text: ast.expr) -> None:
        """Text compared with a field that takes only some values, or looked for in a list of
        them, must be one of them: anything else can never be equal (a typo such as 'famer')."""
        path = self.fact_path(field_node)
        allowed = ENUMS.get(path) if path is not None else None
        if allowed is None:
            return
        literals = text.elts if isinstance(text, (ast.List, ast.Tuple)) else [text]
        for literal in literals:
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str) and literal.value not in allowed:
                hint = _suggest(literal.value, dict.fromkeys(allowed))
                raise self.fail(literal, f"'{literal.value}' is never a value of {path}"
                                + (f" (did you mean '{hint}'?)" if hint else f" ({', '.join(sorted(allowed))})"))

    def visit_IfExp(self, node: ast.IfExp, depth: int) -> tuple[ast.expr, str]:
        test, tk = self.visit(node.test, depth)
        if tk not in (BOOL, ANY):
            raise self.fail(node.test, f"the condition must be true/false, got a {tk}")
        body, bk = self.visit(node.body, depth)
        orelse, ok = self.visit(node.orelse, depth)
        if bk != ok and ANY not in (bk, ok):
            raise self.fail(node, f"both branches must have one type, got {bk} and {ok}")
        return ast.IfExp(test, body, orelse), bk if bk != ANY else ok

    def visit_Call(self, node: ast.Call, depth: int) -> tuple[ast.expr, str]:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "only named functions can be called (no methods)")
        name = node.func.id
        if name in ("any", "all"):
            return self.quantifier(node, name, depth)
        spec = REGISTRY.get(name)
        if spec is None:
            hint = _suggest(name, REGISTRY)
            raise self.fail(node, f"unknown function '{name}'" + (f" (did you mean '{hint}'?)" if hint else ""))
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, f"{name}() takes positional arguments only")
        count = len(node.args)
        if (spec.variadic and count < 1) or (not spec.variadic and count != len(spec.args)):
            want = "at least 1" if spec.variadic else str(len(spec.args))
            raise self.fail(node, f"{name}() takes {want} argument(s), got {count}")
        for index in spec.literal_args:
            arg = node.args[index]
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise self.fail(arg, f"argument {index + 1} of {name}() must be a literal string")
        if name == "missing":
            arg = node.args[0]
            if not isinstance(arg, (ast.Name, ast.Attribute)):
                raise self.fail(arg, "missing() takes a field path")
            code, _ = self.visit(arg, depth)
            return ast.Compare(code, [ast.Is()], [ast.Constant(None)]), BOOL
        args: list[ast.expr] = []
        literals: dict[int, str] = {}  # the literal string arguments (list names, patterns), checked above
        items: set[str] = set()  # what the list arguments hold
        for index, arg in enumerate(node.args):
            if index in spec.literal_args:
                assert isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                literals[index] = arg.value
                args.append(ast.Constant(arg.value))
                continue
            code, kind = self.visit(arg, depth)
            want = spec.args[0] if spec.variadic else spec.args[index]
            if not accepts(want, kind):
                if name == "in_list" and item_of(kind):
                    held = self.path_of(arg) if isinstance(arg, (ast.Name, ast.Attribute)) else "it"
                    raise self.fail(arg, f"{held} holds several values: use any_in_list('{literals[0]}', {held})")
                raise self.fail(arg, f"argument {index + 1} of {name}() must be {_a(want)}, got {_a(kind)}")
            if spec.same_items and (item := item_of(kind)) not in (None, ANY):
                if items and item not in items:
                    raise self.fail(arg, f"{name}() compares lists of one type: {items.pop()}s and {item}s never match")
                items.add(item)
            args.append(code)
        if name == "matches":
            try:
                regex = re2.compile(literals[0], options=_RE2)
            except re2.error as exc:
                reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
                raise self.fail(node.args[0], f"bad regular expression (RE2 syntax: no look-around or "
                                              f"back-references): {reason}") from None
            guards, (text,) = self.guarded([args[1]])
            call = ast.Compare(
                ast.Call(ast.Attribute(self.bind(regex), "fullmatch", ast.Load()), [text], []),
                [ast.IsNot()], [ast.Constant(None)])
            return (ast.BoolOp(ast.And(), guards + [call]) if guards else call), BOOL
        if name in ("in_list", "any_in_list"):
            method = "contains" if name == "in_list" else "contains_any"
            read = node.args[1]
            path = self.fact_path(read)
            # one related party's identifier (p.phone, or x over related.phones): among those gathered
            item_read = isinstance(read, (ast.Name, ast.Attribute)) and self.path_of(read).split(".")[0] in self.scopes
            source = _ITEM_SOURCES.get(path, path) if path is not None else None
            self.list_reads.add((literals[0], source, name == "any_in_list" or item_read))
            return ast.Call(ast.Attribute(ast.Name("L", ast.Load()), method, ast.Load()), args, []), BOOL
        return ast.Call(self.bind(spec.fn), args, []), spec.returns


# A related party's identifiers are among those gathering looks up on the lists.
_ITEM_SOURCES = {"related_parties.id_number": "related.id_numbers", "related_parties.phone": "related.phones"}


def _a(kind: str) -> str:
    """'a number', 'a date or a datetime', 'a list of strings': a type as an analyst reads it."""
    words = []
    for alternative in kind.split("|"):
        item = item_of(alternative)
        word = alternative if item is None else "list" if item in ("*", ANY) else f"list of {item}s"
        words.append(("an " if word[0] in "aeiou" else "a ") + word)
    return " or ".join(words)


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is the rule file's error, not a line on stderr
    return options


# matches() runs on RE2: linear in the text, whatever the pattern (no catastrophic backtracking).
_RE2 = _re2_options()


def _null_or(guards: list[ast.expr], value: ast.expr) -> ast.expr:
    if not guards:
        return value
    test = ast.BoolOp(ast.And(), guards) if len(guards) > 1 else guards[0]
    return ast.IfExp(test, value, ast.Constant(None))


def _comparable(a: str, b: str, ordered: bool) -> bool:
    if ANY in (a, b):
        return True
    if {a, b} <= {DATE, DATETIME}:
        return a == b  # Python cannot order a date against a datetime
    if a != b:
        return False
    return not ordered or a in _ORDERED


def _describe(node: ast.AST) -> str:
    names = {"Lambda": "lambda", "ListComp": "a comprehension", "GeneratorExp": "a generator",
             "SetComp": "a comprehension", "DictComp": "a comprehension", "Subscript": "subscripting",
             "JoinedStr": "an f-string", "NamedExpr": "':='", "Starred": "'*'", "Dict": "a dict literal",
             "Set": "a set literal", "Await": "await", "Yield": "yield", "Slice": "slicing"}
    return names.get(type(node).__name__, f"'{type(node).__name__}'")


def _suggest(name: str, known: dict[str, Any]) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return close[0] if close else None


# Slips an analyst makes, and what to write instead: shown when the text does not parse.
_SLIPS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?<![=!<>])=(?!=)"), "'=' assigns: compare with '=='"),
    (re.compile(r"&&"), "write 'and' instead of '&&'"),
    (re.compile(r"\|\|"), "write 'or' instead of '||'"),
    (re.compile(r"!(?!=)"), "write 'not' instead of '!'"),
    (re.compile(r"<>"), "write '!=' instead of '<>'"),
    (re.compile(r"\bbetween\b", re.IGNORECASE), "there is no 'between': write low <= x <= high"),
    (re.compile(r"\b(?:and|or|not)\s*$"), "the expression ends with an operator: something must follow it"),
    (re.compile(r"^\s*(?:and|or)\b"), "the expression starts with an operator: something must precede it"),
]
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def _slip(source: str) -> tuple[str, int] | None:
    """The first common slip in ``source`` (outside quoted text), and its offset."""
    unquoted = _QUOTED.sub(lambda m: " " * len(m.group()), source)
    found = [(m.start(), message) for pattern, message in _SLIPS if (m := pattern.search(unquoted))]
    if not found:
        return None
    offset, message = min(found)
    return message, offset


def compile_expression(text: Any, catalogue: dict[str, str], expect: str | None = None,
                       named: dict[str, ast.expr] | None = None) -> Compiled:
    """Compile one expression or raise ExpressionError with its line/column in ``text``.
    ``named``: the named expressions it may read (their paths are in ``catalogue`` too)."""
    if isinstance(text, bool) or isinstance(text, (int, float)):
        text = repr(text)
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an expression must be non-empty text")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        return _compile(text, catalogue, expect, named or {})
    except ExpressionError as exc:
        raise _at_text(exc, text) from None


def _at_text(exc: ExpressionError, text: str) -> ExpressionError:
    """Re-express a position in the parsed text (stripped, perhaps parenthesised) as one in
    ``text`` as written: its offset, line and column."""
    lead = len(text) - len(text.lstrip())
    source = text.strip()
    lines = source.split("\n")
    shift = 1 if len(lines) > 1 else 0  # the "(" that lets a multi-line expression parse
    line = min(max(exc.line, 1), len(lines))
    in_source = sum(len(x) + 1 for x in lines[:line - 1]) + exc.column - 1 - (shift if line == 1 else 0)
    exc.offset = lead + min(max(in_source, 0), len(source))
    before = text[:exc.offset]
    exc.line = before.count("\n") + 1
    exc.column = exc.offset - (before.rfind("\n") + 1) + 1
    return exc


def parse(text: str) -> ast.expr:
    """The syntax tree of a compiled expression's text (for a named expression's uses)."""
    source = text.strip()
    return ast.parse(source if "\n" not in source else f"({source}\n)", mode="eval").body


def _compile(text: str, catalogue: dict[str, str], expect: str | None, named: dict[str, ast.expr]) -> Compiled:
    source = text.strip()
    multiline = "\n" in source
    parsed = source if not multiline else f"({source}\n)"
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence": the text is not Python's
            warnings.simplefilter("ignore")
            tree = ast.parse(parsed, mode="eval")
    except SyntaxError as exc:
        slip = _slip(source)
        if slip is not None:
            message, offset = slip
            before = source[:offset]
            line = before.count("\n") + 1
            column = offset - (before.rfind("\n") + 1) + 1 + (1 if multiline and line == 1 else 0)
            raise ExpressionError(f"syntax error: {message}", line, column) from None
        raise ExpressionError(f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"cannot parse: {type(exc).__name__}") from None
    compiler = _Compiler(catalogue, parsed.split("\n"), named=named)
    try:
        body, kind = compiler.visit(tree.body)
    except RecursionError:
        raise ExpressionError(f"expression nests deeper than {MAX_DEPTH} levels") from None
    if expect is not None and kind not in (expect, ANY):
        raise ExpressionError(f"expected a {expect} expression, got a {kind}")
    lam = ast.Expression(ast.Lambda(
        ast.arguments(posonlyargs=[], args=[ast.arg("F"), ast.arg("L")], kwonlyargs=[],
                      kw_defaults=[], defaults=[]),
        body))
    code = compile(ast.fix_missing_locations(lam), "<rule>", "eval")
    # The code object was built from the checked AST above, never from rule text; it runs with
    # no builtins and sees only the bound constants and functions.
    fn = eval(code, {"__builtins__": {}, **compiler.names})  # noqa: S307
    return Compiled(fn, kind, frozenset(compiler.fields), source, frozenset(compiler.list_reads))
