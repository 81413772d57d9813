"""The rule language is typed and bounded: what loads cannot raise a type error or run long.

The differential test generates well-typed expressions and random facts, and holds the compiled
rule to a plain reference evaluator (tests/rule_reference.py): the same value, and no exception
but the documented arithmetic error.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from service.config import REPO_ROOT
from service.engine.expressions import ExpressionError, compile_expression
from service.engine.facts import (
    BOOL,
    CATALOGUE,
    DATE,
    DATETIME,
    EMPTY,
    ENUMS,
    LIST_NUMBER,
    LIST_STRING,
    NUMBER,
    STRING,
)
from service.engine.ruleset import RulesetError, load_ruleset
from service.identifiers import CHINA
from service.schemas import RelatedParty
from service.stages.decision import Memberships
from tests import rule_reference

LONGEST_TEXT = 4096  # the longest string the API accepts (a liveness token); names are shorter


def compile_(text):
    return compile_expression(text, CATALOGUE)


def refused(text: str, says: str) -> ExpressionError:
    """The load error ``text`` gives, which must say ``says``."""
    with pytest.raises(ExpressionError) as exc:
        compile_(text)
    assert says in exc.value.message, exc.value.message
    return exc.value


# --- bounded time -------------------------------------------------------------------------

HOSTILE_PATTERNS = ["(a+)+$", "(a|aa)*b", "(a*)*b", "(x+x+)+y", "^(([a-z])+.)+[A-Z]([a-z])+$", "(.*a){20}",
                    "(a|a?)+b", "((a+)*)+c", "(\\w+\\s?)+$", "([a-zA-Z]+)*!"]


def _longest_facts() -> dict:
    facts = EMPTY.copy()
    for path, kind in CATALOGUE.items():
        if kind == STRING:
            facts[path] = "a" * (LONGEST_TEXT - 1) + "!"
    return facts


def test_every_hostile_pattern_runs_in_linear_time_on_the_longest_accepted_text():
    """Each of these backtracks for seconds to years in Python's `re` on such a text (the first
    took 1.5 s on a 25-character name); on RE2 each evaluation is linear: the bound below is
    hundreds of times what it takes, and would be missed by any backtracking engine."""
    facts = _longest_facts()
    worst = 0.0
    for pattern in HOSTILE_PATTERNS:
        for path, kind in CATALOGUE.items():
            if kind != STRING:
                continue
            rule = compile_(f"matches('{pattern}', {path})")
            started = time.perf_counter()
            assert rule.fn(facts, None) in (True, False)
            worst = max(worst, time.perf_counter() - started)
    assert worst < 0.05, f"a pattern took {worst * 1000:.1f} ms"


@pytest.mark.parametrize(("pattern", "says"), [
    ("(a)\\\\1", "back-references"), ("(?<=a)b", "look-around"), ("(?=a)a", "look-around"), ("(", "missing )")])
def test_patterns_re2_cannot_run_in_linear_time_are_refused_at_load(pattern, says):
    with pytest.raises(ExpressionError) as exc:
        compile_(f"matches('{pattern}', applicant.name)")
    assert "bad regular expression" in exc.value.message and says in exc.value.message


def test_powers_cannot_grow_without_bound():
    for text in ["((loan.amount ** 8) ** 8) ** 8 > 1", "(loan.amount ** 2) ** 2 > 1", "(2 ** 3) ** 2 > 1"]:
        with pytest.raises(ExpressionError, match="a power of a power"):
            compile_(text)
    # A power overflows at once in floating point instead of growing a huge integer.
    facts = EMPTY | {"bureau.queries_3m": 10 ** 12}
    rule = compile_("(bureau.queries_3m * bureau.queries_3m * bureau.queries_3m * bureau.queries_3m) ** 8 > 1")
    with pytest.raises(ArithmeticError):
        rule.fn(facts, None)


def test_the_longest_expression_on_the_largest_numbers_is_still_quick():
    """Nearly 2,000 characters of multiplications (a balanced tree: a chain would nest deeper
    than allowed) of a large integer: the growth a rule can cause is bounded by its length."""

    def product(factors: int) -> str:
        return "bureau.queries_3m" if factors == 1 else f"({product(factors // 2)} * {product(factors - factors // 2)})"

    text = product(90) + " > 0"
    assert 1800 < len(text) <= 2000
    rule = compile_(text)
    facts = EMPTY | {"bureau.queries_3m": 1_000_000}
    started = time.perf_counter()
    assert rule.fn(facts, None) is True
    assert time.perf_counter() - started < 0.05


# --- types checked at load ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "column", "says"), [
    ("related.phones in ['13800138000']", 1, "a list[string] is never in a list of strings"),
    ("len(applicant.age) > 1", 5, "argument 1 of len() must be a string or a list, got a number"),
    ("days_between(applicant.name, applicant.age) > 1", 14, "must be a date or a datetime, got a string"),
    ("'12' in product.terms", 1, "a string is never in a list of numbers"),
    ("applicant.occupation == 'famer'", 25, "'famer' is never a value of applicant.occupation (did you mean 'farmer'?)"),
    ("applicant.occupation in ['farmer', 'merchnat']", 36, "'merchnat' is never a value"),
    ("'spuse' in related.relations", 1, "'spuse' is never a value of related.relations"),
    ("related.relations == ['spouse']", 1, "lists cannot be compared"),
    ("all_in(product.terms, attachments.types)", 23, "all_in() compares lists of one type"),
    ("applicant.age in [18, '60']", 23, "a list holds one type"),
    ("in_list('black_phones', related.phones)", 25, "use any_in_list('black_phones', related.phones)"),
    ("any_in_list('black_phones', applicant.phone)", 29, "must be a list of strings, got a string"),
    ("applicant.age > '18'", 1, "cannot compare a number with a string"),
    ("applicant.birth_date < submitted_at", 1, "cannot compare a date with a datetime"),
    # common slips name their fix
    ("applicant.age = 18", 15, "'=' assigns: compare with '=='"),
    ("applicant.age > 18 && device.is_emulator", 20, "write 'and' instead of '&&'"),
    ("applicant.age > 18 || device.is_emulator", 20, "write 'or' instead of '||'"),
    ("!device.is_emulator", 1, "write 'not' instead of '!'"),
    ("applicant.age between 18 and 60", 15, "there is no 'between': write low <= x <= high"),
    ("applicant.age > 18 and", 20, "the expression ends with an operator"),
    ("applicant.occupation == farmer", 25, "text must be quoted: 'farmer'"),
    ("applicant.name == '名字' and applicant.agee > 1", 28, "did you mean 'applicant.age'"),
])
def test_type_errors_and_slips_are_load_errors_at_their_column(text, column, says):
    error = refused(text, says)
    assert (error.line, error.column) == (1, column), error.message


def test_functions_accept_what_their_signature_says():
    for text in ["days_between(applicant.birth_date, submitted_at) > 1", "len(related.phones) > 1",
                 "len(applicant.name) > 1", "age_from_id(applicant.id_number, applicant.birth_date) > 1",
                 "all_in(attachments.types, product.required_attachments)", "applicant.occupation in ['farmer']",
                 "'spouse' in related.relations", "applicant.age in []"]:
        compile_(text)
    facts = EMPTY | {"applicant.birth_date": dt.date(2000, 1, 1),
                     "submitted_at": dt.datetime(2000, 1, 2, 1, 0, tzinfo=dt.timezone.utc)}
    # a date against an instant: whole days, the instant's day in Beijing (09:00 on the 2nd)
    assert compile_("days_between(applicant.birth_date, submitted_at)").fn(facts, None) == 1


# --- messages in rule files -------------------------------------------------------------------

RULE = """  - id: SLIP
    description: a rule with a slip
    when: {when}
    action: refer
    message: {{zh: 人工审核, en: review}}
"""


@pytest.mark.parametrize(("when", "line", "column", "says"), [
    ("applicant.age > 18 && device.is_emulator", 4, 30, "'and' instead of '&&'"),
    ("'applicant.age > 18 and foo.bar'", 4, 35, "unknown field 'foo.bar'"),
    ("|\n      applicant.age > 18\n      and applicant.occupation == 'famer'", 6, 35, "'famer' is never a value"),
    ("|\n      applicant.age > 18 and\n        len(applicant.age) > 1", 6, 13, "argument 1 of len()"),
    (">\n      applicant.age > 18\n      and device.is_emulator = true", 6, 30, "'=' assigns"),
    ("applicant.age > 18\n      and len(applicant.age) > 1", 5, 15, "argument 1 of len()"),
])
def test_rule_file_errors_point_at_the_operator_in_multi_line_rules(tmp_path, when, line, column, says):
    """file:line:col in the file as written: block (|, >) and plain multi-line scalars too."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    fraud = rules / "fraud.yaml"
    text = fraud.read_text()
    fraud.write_text(text.replace("rules:\n", "rules:\n" + RULE.format(when=when), 1))
    with pytest.raises(RulesetError) as exc:
        load_ruleset(rules)
    (error,) = [e for e in exc.value.errors if e.rule_id == "SLIP"]
    assert says in error.message, error.message
    assert (error.position.line, error.position.column) == (text[:text.index("rules:\n")].count("\n") + line, column), \
        (str(error), fraud.read_text().splitlines()[error.position.line - 1])


# --- the differential property test -----------------------------------------------------------

def _facts_of(kind: str) -> list[str]:
    return sorted(path for path, k in CATALOGUE.items() if k == kind)


FACTS = {kind: _facts_of(kind) for kind in (NUMBER, STRING, BOOL, DATE, DATETIME, LIST_STRING, LIST_NUMBER)}
WORDS = ["", "a", "farmer", "13800138000", "王小明", "Ab1"]
PATTERNS = ["a.*", "[0-9]+", "1[3-9]\\\\d{9}", "\\\\p{Han}+", ""]
LISTS = {"black_phones": "phone", "black_ids": "id_number"}


class Expressions:
    """Draws a well-typed expression of a given type, remembering the facts it reads."""

    def __init__(self, data: st.DataObject) -> None:
        self.data, self.read = data, set()

    def draw(self, strategy):
        return self.data.draw(strategy)

    def fact(self, kind: str) -> str:
        path = self.draw(st.sampled_from(FACTS[kind]))
        self.read.add(path)
        return path

    def literal(self, kind: str, like: str | None = None) -> str:
        if kind == NUMBER:
            return repr(self.draw(st.one_of(st.integers(-1000, 1000), st.sampled_from([0.5, 1e6, -2.25, 0]))))
        if kind == BOOL:
            return self.draw(st.sampled_from(["true", "false"]))
        values = sorted(ENUMS[like]) if like in ENUMS else WORDS
        return repr(self.draw(st.sampled_from(values)))

    def of(self, kind: str, depth: int, pow_ok: bool = True) -> str:
        leaf = depth <= 0 or self.draw(st.integers(0, 3)) == 0
        if kind == NUMBER:
            return self.number(depth, leaf, pow_ok)
        if kind == BOOL:
            return self.boolean(depth, leaf)
        if kind == STRING:
            if not leaf and self.draw(st.booleans()):
                return f"({self.of(STRING, depth - 1)} if {self.of(BOOL, depth - 1)} else {self.of(STRING, depth - 1)})"
            return self.fact(STRING) if self.draw(st.booleans()) else self.literal(STRING)
        if kind == DATE:
            if not leaf and self.draw(st.booleans()):
                return f"birth_date_from_id({self.of(STRING, depth - 1)})"
            return self.fact(DATE)
        if kind == DATETIME:
            return self.fact(DATETIME)
        if kind == LIST_STRING and self.draw(st.booleans()):
            return "[" + ", ".join(self.literal(STRING) for _ in range(self.draw(st.integers(0, 3)))) + "]"
        return self.fact(kind)

    def number(self, depth: int, leaf: bool, pow_ok: bool) -> str:
        if leaf:
            return self.fact(NUMBER) if self.draw(st.booleans()) else self.literal(NUMBER)
        sub = depth - 1
        choice = self.draw(st.sampled_from(["arith", "arith", "neg", "pow", "if", "minmax", "abs", "floor", "len",
                                            "days", "age", "distance"]))
        if choice == "arith":
            op = self.draw(st.sampled_from(["+", "-", "*", "/", "//", "%"]))
            return f"({self.of(NUMBER, sub, pow_ok)} {op} {self.of(NUMBER, sub, pow_ok)})"
        if choice == "neg":
            return f"-({self.of(NUMBER, sub, pow_ok)})"
        if choice == "pow" and pow_ok:
            return f"({self.of(NUMBER, sub, False)}) ** {self.draw(st.integers(0, 3))}"
        if choice == "if":
            return f"({self.of(NUMBER, sub, pow_ok)} if {self.of(BOOL, sub)} else {self.of(NUMBER, sub, pow_ok)})"
        if choice == "minmax":
            args = ", ".join(self.of(NUMBER, sub, pow_ok) for _ in range(self.draw(st.integers(1, 3))))
            return f"{self.draw(st.sampled_from(['min', 'max']))}({args})"
        if choice == "abs":
            return f"abs({self.of(NUMBER, sub, pow_ok)})"
        if choice == "floor":
            return f"floor_to({self.of(NUMBER, sub, pow_ok)}, {self.of(NUMBER, sub, pow_ok)})"
        if choice == "len":
            return f"len({self.of(self.draw(st.sampled_from([STRING, LIST_STRING, LIST_NUMBER])), sub)})"
        if choice == "days":
            kinds = self.draw(st.sampled_from([(DATE, DATE), (DATE, DATETIME), (DATETIME, DATETIME)]))
            return f"days_between({self.of(kinds[0], sub)}, {self.of(kinds[1], sub)})"
        if choice == "age":
            return f"age_from_id({self.of(STRING, sub)}, {self.of(self.draw(st.sampled_from([DATE, DATETIME])), sub)})"
        if choice == "distance":
            return "distance_km(" + ", ".join(self.of(NUMBER, sub, pow_ok) for _ in range(4)) + ")"
        return self.literal(NUMBER)

    def boolean(self, depth: int, leaf: bool) -> str:
        if leaf:
            pick = self.draw(st.integers(0, 2))
            if pick == 0:
                return self.literal(BOOL)
            if pick == 1:
                return f"missing({self.fact(self.draw(st.sampled_from(list(FACTS))))})"
            return self.fact(BOOL)
        sub = depth - 1
        choice = self.draw(st.sampled_from(["compare", "compare", "text", "in", "logic", "not", "if", "check",
                                            "all_in", "matches", "list", "quantifier"]))
        if choice == "compare":
            kind = self.draw(st.sampled_from([NUMBER, NUMBER, DATE, DATETIME, BOOL]))
            ops = ["==", "!="] if kind == BOOL else ["==", "!=", "<", "<=", ">", ">="]
            chain = [self.of(kind, sub) for _ in range(self.draw(st.integers(2, 3)))]
            return "(" + "".join(f"{x} {self.draw(st.sampled_from(ops))} " for x in chain[:-1]) + chain[-1] + ")"
        if choice == "text":
            path = self.fact(STRING)
            other = self.literal(STRING, like=path) if self.draw(st.booleans()) else self.fact(STRING)
            op = self.draw(st.sampled_from(["==", "!=", "<", ">="] if other.startswith(("'", '"')) else ["==", "!="]))
            if other in CATALOGUE and (path in ENUMS or other in ENUMS) and op in ("==", "!="):
                other = self.literal(STRING, like=path)  # two fields of different value sets may never meet
            return f"({path} {op} {other})"
        if choice == "in":
            kind = self.draw(st.sampled_from([NUMBER, STRING, "substring", "element"]))
            if kind == NUMBER:
                values = ", ".join(self.literal(NUMBER) for _ in range(self.draw(st.integers(0, 3))))
                return f"({self.of(NUMBER, sub)} {self.draw(st.sampled_from(['in', 'not in']))} [{values}])"
            if kind == STRING:
                path = self.fact(STRING)
                values = ", ".join(self.literal(STRING, like=path) for _ in range(self.draw(st.integers(0, 3))))
                return f"({path} in [{values}])"
            if kind == "substring":
                return f"({self.literal(STRING)} in {self.fact(STRING)})"
            path = self.fact(LIST_STRING)
            return f"({self.literal(STRING, like=path)} in {path})"
        if choice == "logic":
            op = self.draw(st.sampled_from(["and", "or"]))
            return f"({self.of(BOOL, sub)} {op} {self.of(BOOL, sub)})"
        if choice == "not":
            return f"(not {self.of(BOOL, sub)})"
        if choice == "if":
            return f"({self.of(BOOL, sub)} if {self.of(BOOL, sub)} else {self.of(BOOL, sub)})"
        if choice == "check":
            name = self.draw(st.sampled_from(["id_number_valid", "phone_valid", "uscc_valid", "id_region_known"]))
            return f"{name}({self.of(STRING, sub)})"
        if choice == "all_in":
            return f"all_in({self.of(LIST_STRING, sub)}, {self.fact(LIST_STRING)})"
        if choice == "matches":
            return f"matches('{self.draw(st.sampled_from(PATTERNS))}', {self.of(STRING, sub)})"
        if choice == "quantifier":
            return self.quantifier(sub)
        name = self.draw(st.sampled_from(sorted(LISTS)))
        single = "applicant.phone" if LISTS[name] == "phone" else "applicant.id_number"
        many = "related.phones" if LISTS[name] == "phone" else "related.id_numbers"
        self.read.update({single, many})
        return self.draw(st.sampled_from([f"in_list('{name}', {single})", f"any_in_list('{name}', {many})"]))


    def quantifier(self, depth: int) -> str:
        over = self.draw(st.sampled_from(["related_parties", "related.phones", "product.terms"]))
        self.read.add(over)
        self.vars = getattr(self, "vars", 0) + 1
        v = f"v{self.vars}"  # nested quantifiers need names of their own
        if over == "related_parties":
            self.read.update({"applicant.phone", "applicant.id_number", "related.phones"})
            conditions = ["{v}.relation == 'guarantor'", "{v}.relation in ['spouse', 'partner']", "missing({v}.phone)",
                          "{v}.phone == applicant.phone", "len({v}.name) > 1", "id_number_valid({v}.id_number)",
                          "{v}.id_number != applicant.id_number", "in_list('black_ids', {v}.id_number)",
                          "any_in_list('black_phones', related.phones)"]
        elif over == "related.phones":
            conditions = ["{v} == '13800138000'", "phone_valid({v})", "in_list('black_phones', {v})", "len({v}) > 3"]
        else:
            conditions = ["{v} > 6", "{v} == 12", "{v} * 2 > loan.term_months"]
            self.read.add("loan.term_months")
        parts = [self.draw(st.sampled_from(conditions)).format(v=v) for _ in range(self.draw(st.integers(1, 2)))]
        if self.draw(st.booleans()):
            parts.append(self.of(BOOL, depth))  # a condition on the application itself, inside the loop
        op = self.draw(st.sampled_from([" and ", " or "]))
        guard = f" if {self.draw(st.sampled_from(conditions)).format(v=v)}" if self.draw(st.booleans()) else ""
        return f"{self.draw(st.sampled_from(['any', 'all']))}(({op.join(parts)}) for {v} in {over}{guard})"


PARTY = st.builds(RelatedParty, relation=st.sampled_from(["spouse", "guarantor", "partner", "contact"]),
                  name=st.sampled_from(["李", "Li Wei", "王小明"]),
                  id_number=st.one_of(st.none(), st.sampled_from(["11010519491231002X", "440301198501015552"])),
                  phone=st.one_of(st.none(), st.sampled_from(["13800138000", "13912345678"])))


def value_of(kind: str, path: str = "") -> st.SearchStrategy:
    if path == "related_parties":
        return st.one_of(st.none(), st.lists(PARTY, max_size=3))
    numbers = st.one_of(st.integers(-10 ** 6, 10 ** 12), st.floats(-1e12, 1e12, allow_nan=False),
                        st.sampled_from([0, 0.0, 1, -1]))
    strategies = {
        NUMBER: numbers,
        STRING: st.one_of(st.sampled_from(WORDS + ["11010519491231002X", "91110108551385082Q"]), st.text(max_size=12)),
        BOOL: st.booleans(),
        DATE: st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)),
        DATETIME: st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2060, 1, 1),
                               timezones=st.sampled_from([dt.timezone.utc, CHINA])),
        LIST_STRING: st.lists(st.sampled_from(WORDS + ["spouse", "id_front"]), max_size=4),
        LIST_NUMBER: st.lists(st.integers(1, 60), max_size=4),
    }
    return st.one_of(st.none(), strategies[kind])


def _outcome(run):
    try:
        return "value", run()
    except ArithmeticError:
        return "arithmetic error", None


def _same(a, b) -> bool:
    if isinstance(a[1], float) and isinstance(b[1], float) and math.isnan(a[1]) and math.isnan(b[1]):
        return True
    return a == b


@settings(max_examples=int(__import__("os").environ.get("RULE_EXAMPLES", 600)), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_compiled_rules_agree_with_the_reference_evaluator(data):
    """Any well-typed expression compiles, and on any facts gives the reference evaluator's value
    — or, in both, the documented arithmetic error. No other exception, ever."""
    drawn = Expressions(data)
    kind = data.draw(st.sampled_from([BOOL, BOOL, NUMBER, STRING]))
    text = drawn.of(kind, data.draw(st.integers(1, 4)))
    compiled = compile_(text)  # well-typed: it must load
    facts = EMPTY.copy()
    for path in drawn.read:
        facts[path] = data.draw(value_of(CATALOGUE[path], path), label=path)
    listed = WORDS + ["11010519491231002X", "13800138000"]
    hits = frozenset((name, value) for name in LISTS for value in data.draw(st.lists(st.sampled_from(listed), max_size=2)))
    lists = Memberships(hits)
    expected = _outcome(lambda: rule_reference.evaluate(text, facts, lists))
    got = _outcome(lambda: compiled.fn(facts, lists))
    assert _same(got, expected), (text, {p: facts[p] for p in drawn.read}, got, expected)


def test_the_bundled_rules_load_with_every_type_checked():
    """They did before these checks too: nothing in them needed changing."""
    load_ruleset(Path(REPO_ROOT / "rules"))


@pytest.mark.parametrize("text", ["", "x", "ß" * 18, "１" * 18, "٣" * 18, "11010519491231002", "11010519491331002X"])
def test_functions_on_text_are_total(text):
    """Found by the differential test: id_region_known('') raised a ValueError inside stdnum."""
    from service.engine.functions import REGISTRY

    for name in ("id_number_valid", "id_region_known", "birth_date_from_id", "uscc_valid", "phone_valid"):
        REGISTRY[name].fn(text)
    assert REGISTRY["age_from_id"].fn(text, dt.date(2026, 1, 1)) is None


# --- the reference for analysts and editors ----------------------------------------------------

def test_rules_facts_prints_every_fact_and_function_with_its_type(capsys):
    import json

    from service.cli import main
    from service.engine.functions import REGISTRY

    assert main(["rules", "facts", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    derived = {p: e["type"] for p, e in printed["facts"].items() if e["source"] == "derived.yaml"}
    assert derived == {"derived.instalment_share": "number"}  # the bundled rules' named expression
    assert {p: e["type"] for p, e in printed["facts"].items() if p not in derived} == CATALOGUE
    assert printed["facts"]["applicant.occupation"]["values"][:2] == ["farmer", "merchant"]
    assert all(entry["description"] for entry in printed["facts"].values()), \
        [p for p, e in printed["facts"].items() if not e["description"]]
    assert set(printed["functions"]) == set(REGISTRY)
    assert printed["functions"]["len"]["signature"] == "len(string|list[*]) → number"
    assert main(["rules", "facts"]) == 0
    markdown = capsys.readouterr().out
    assert "| `product.terms` | list[number] |" in markdown and "`matches('pattern', string) → bool`" in markdown


def test_docs_rules_md_holds_the_current_reference():
    from service.engine.catalogue import as_markdown

    text = (REPO_ROOT / "docs" / "RULES.md").read_text()
    embedded = text.split("<!-- reference:begin -->\n", 1)[1].split("<!-- reference:end -->", 1)[0]
    assert embedded.strip() == as_markdown(load_ruleset(REPO_ROOT / "rules").derived).strip(), \
        "docs/RULES.md is stale: paste `loan-decision rules facts` between its reference markers"


# --- quantifiers over list items ---------------------------------------------------------------

def _parties(*parties: dict) -> dict:
    return EMPTY | {"related_parties": [RelatedParty(**p) for p in parties], "applicant.phone": "13800138000",
                    "related.phones": [p["phone"] for p in parties if p.get("phone")]}


def test_a_quantifier_tests_one_partys_fields_together():
    rule = compile_("any(p.relation == 'guarantor' and p.phone == applicant.phone for p in related_parties)")
    mixed = _parties({"relation": "guarantor", "name": "Li", "phone": "13912345678"},
                     {"relation": "spouse", "name": "Wang", "phone": "13800138000"})
    assert rule.fn(mixed, None) is False  # a guarantor, and the applicant's phone, but not one party
    same = _parties({"relation": "guarantor", "name": "Li", "phone": "13800138000"})
    assert rule.fn(same, None) is True
    assert rule.fn(EMPTY, None) is False  # no parties sent: no item satisfies it
    assert compile_("all(p.relation == 'spouse' for p in related_parties)").fn(EMPTY, None) is True
    nulls = compile_("any(p.phone != applicant.phone for p in related_parties)")
    assert nulls.fn(_parties({"relation": "spouse", "name": "Wang"}), None) is False  # null compares false
    assert compile_("any(x > 24 for x in product.terms if x < 48)").fn(EMPTY | {"product.terms": [12, 36]}, None)


@pytest.mark.parametrize(("text", "says"), [
    ("any(p for p in related_parties)", "'p' is an item of related_parties: read its fields"),
    ("any(p.age > 1 for p in related_parties)", "'p.age' is not a field of an item of related_parties"),
    ("any(applicant.age > 1 for applicant in related_parties)", "'applicant' is taken"),
    ("any(x > 1 for x in applicant.age)", "a quantifier ranges over a list field"),
    ("any(p.relation == 'spuse' for p in related_parties)", "'spuse' is never a value of related_parties.relation"),
    ("any(len(p.name) for p in related_parties)", "any() needs a true/false condition, got a number"),
    ("any(p.relation == 'spouse' for p in related_parties for q in attachments)", "one 'for' per quantifier"),
    ("any(related_parties)", "write any(condition for p in a list)"),
])
def test_quantifier_mistakes_are_load_errors(text, says):
    refused(text, says)


def test_a_partys_identifiers_may_be_looked_up_on_the_lists(tmp_path):
    """Gathering looks up every related party's ID number and phone, so a quantifier may ask
    about one party's; the rule fires for the party that is listed, and its trace stays JSON
    with the parties masked (a rule reading related_parties used to put the request's objects,
    unmasked, in the trace, which then could not be stored)."""
    import orjson

    from service.decide import application_facts, decide
    from service.schemas import DecisionRequest
    from service.stages.decision import Memberships
    from tests.factories import application, id_number

    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    fraud = rules / "fraud.yaml"
    fraud.write_text(fraud.read_text().replace("rules:\n", """rules:
  - id: GUARANTOR_BLACKLISTED
    description: a guarantor whose ID number is on the black list
    when: any(p.relation == 'guarantor' and in_list('black_id_numbers', p.id_number) for p in related_parties)
    action: decline
    message: {zh: 担保人不符合要求。, en: The guarantor does not qualify.}
""", 1))
    ruleset = load_ruleset(rules)
    guarantor, spouse = id_number("19700101"), id_number("19800101")
    request = DecisionRequest.model_validate(application(related_parties=[
        {"relation": "spouse", "name": "王芳", "id_number": spouse, "phone": "13700001111"},
        {"relation": "guarantor", "name": "李强", "id_number": guarantor}]), strict=False)
    facts = application_facts(request, ruleset)

    def fired(listed: str) -> dict | None:
        d = decide(facts.copy() | {"flags": []}, ruleset, lists=Memberships(frozenset({("black_id_numbers", listed)})))
        fraud_stage = next(s for s in d.trace if s["stage"] == "fraud")
        orjson.dumps(d.trace)
        return next((r for r in fraud_stage["detail"]["rules"] if r["id"] == "GUARANTOR_BLACKLISTED"
                     and r["result"] == "hit"), None)

    assert fired(spouse) is None  # the spouse is listed, not the guarantor
    hit = fired(guarantor)
    assert hit is not None
    read = hit["read"]["related_parties"]
    assert [p["relation"] for p in read] == ["spouse", "guarantor"]
    assert guarantor not in orjson.dumps(read).decode() and read[1]["name"] == "李*"


# --- one source of truth for the files' shape -----------------------------------------------------

def test_the_json_schemas_are_generated_from_the_shapes_the_loader_validates(tmp_path, capsys):
    import json

    from service.cli import main
    from service.engine.shapes import SHAPES, json_schema

    for name in SHAPES:
        committed = json.loads((REPO_ROOT / "rules" / "schema" / f"{name}.schema.json").read_text())
        assert committed == json_schema(name), f"rules/schema/{name}.schema.json is stale: loan-decision rules schemas"
    assert main(["rules", "schemas", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "schema").iterdir()) == sorted(f"{n}.schema.json" for n in SHAPES)


@pytest.mark.parametrize(("file", "old", "new", "schema"), [
    ("fraud.yaml", "  - id: FRAUD_EMULATOR", "  - id: _FRAUD_EMULATOR", "rules"),  # the loader took it once
    ("fraud.yaml", "  - id: FRAUD_EMULATOR", "  - id: FRAUD EMULATOR", "rules"),
    ("fraud.yaml", "action: decline", "action: block", "rules"),
    ("lists.yaml", "  black_phones:", "  Black_Phones:", "lists"),
    ("lists.yaml", "kind: phone", "kind: mobile", "lists"),
    ("products.yaml", "    name:", "    nmae:", "products"),
    ("strategy.yaml", "hit: first", "hit: all", "strategy"),
    ("strategy.yaml", "{id: grade_e, grade: E,", "{id: grade_e, grade: {x: 1},", "strategy"),
    ("strategy.yaml", "reason: SCORE_TOO_LOW}", "reason: SCORE TOO LOW}", "strategy"),
    ("derived.yaml", "  instalment_share:", "  Instalment_Share:", "derived"),
])
def test_the_loader_refuses_whatever_the_schema_refuses(tmp_path, file, old, new, schema):
    """The shape is defined once (service/engine/shapes.py): a file an editor's schema marks wrong
    never loads, such as a rule id `_FRAUD_EMULATOR` or a reason `SCORE TOO LOW`."""
    import json

    import jsonschema
    import yaml

    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    path = rules / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    document = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, json.loads((REPO_ROOT / "rules" / "schema" / f"{schema}.schema.json").read_text()))
    with pytest.raises(RulesetError) as exc:
        load_ruleset(rules)
    assert any(f"{file}:" in str(e) for e in exc.value.errors), exc.value.errors


def test_a_row_reason_with_a_space_was_accepted_and_no_longer_is(tmp_path):
    """`NOT PRE-APPROVED` passed the loader's `isupper()` in a row table; the schema refused it."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    rows = (REPO_ROOT / "tests" / "strategy-rows.yaml").read_text()
    (rules / "strategy.yaml").write_text(rows.replace("reason: NOT_PREAPPROVED", "reason: NOT PRE-APPROVED"))
    with pytest.raises(RulesetError) as exc:
        load_ruleset(rules)
    assert any("UPPER_SNAKE_CASE" in e.message for e in exc.value.errors), exc.value.errors


# --- named expressions (rules/derived.yaml) ------------------------------------------------------

DERIVED = """  income_months:
    description: how many months of income the loan is
    expression: loan.amount / applicant.monthly_income if applicant.monthly_income > 0 else None
  heavy: derived.income_months > 6
  guarantor_is_applicant: >-
    any(p.relation == 'guarantor' and p.phone == applicant.phone for p in related_parties)
"""
USES = """  - id: HEAVY_LOAN
    description: over six months of income, or a guarantee in name only
    when: derived.heavy or derived.guarantor_is_applicant
    action: refer
    message: {zh: 人工审核, en: review}
"""


def _with_derived(tmp_path: Path, derived: str = DERIVED, uses: str = USES) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    (rules / "derived.yaml").write_text((REPO_ROOT / "rules" / "derived.yaml").read_text() + derived)
    fraud = rules / "fraud.yaml"
    fraud.write_text(fraud.read_text().replace("rules:\n", "rules:\n" + uses, 1))
    return rules


def test_named_expressions_are_typed_facts_rules_read(tmp_path):
    from service.decide import application_facts, decide
    from service.schemas import DecisionRequest
    from tests.factories import application

    ruleset = load_ruleset(_with_derived(tmp_path))
    assert (ruleset.derived["heavy"].expression, ruleset.derived["heavy"].type) == ("derived.income_months > 6", "bool")

    def heavy(**patch) -> dict | None:
        request = DecisionRequest.model_validate(application(**patch), strict=False)
        d = decide(application_facts(request, ruleset), ruleset)
        fraud = next(s for s in d.trace if s["stage"] == "fraud")["detail"]["rules"]
        return next((r for r in fraud if r["id"] == "HEAVY_LOAN" and r["result"] == "hit"), None)

    hit = heavy(applicant={"monthly_income": 1000}, loan={"amount": 9000})
    assert hit is not None and hit["read"]["loan.amount"] == 9000  # the trace shows what it was made of
    assert heavy(applicant={"monthly_income": 5000}, loan={"amount": 9000}) is None
    assert heavy(applicant={"monthly_income": 0}, loan={"amount": 9000}) is None  # null: not heavy
    assert heavy(applicant={"monthly_income": 5000, "phone": "13912345678"}, loan={"amount": 9000},
                 related_parties=[{"relation": "guarantor", "name": "Li", "phone": "13912345678"}]) is not None


@pytest.mark.parametrize(("derived", "uses", "says"), [
    (DERIVED, USES.replace("derived.heavy or", "derived.income_months or"), "'and'/'or' need true/false operands"),
    (DERIVED.replace("heavy: derived.income_months > 6", "heavy: derived.later > 6\n  later: 1"), USES,
     "unknown field 'derived.later'"),  # each reads only the ones above it
    (DERIVED.replace("heavy: derived.income_months > 6", "heavy: None"), USES, "always null"),
    (DERIVED.replace("  heavy:", "  Heavy:"), USES, "lower_snake_case"),
    (DERIVED.replace("> 6", "> '6'"), USES, "cannot compare a number with a string"),
])
def test_named_expression_mistakes_are_lint_errors(tmp_path, derived, uses, says):
    with pytest.raises(RulesetError) as exc:
        load_ruleset(_with_derived(tmp_path, derived, uses))
    assert any(says in e.message for e in exc.value.errors), exc.value.errors
