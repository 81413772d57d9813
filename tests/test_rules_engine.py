"""The rule language: safe by construction, typed at load, defined null and error semantics."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from service.config import REPO_ROOT
from service.engine.expressions import ExpressionError, compile_expression
from service.engine.facts import CATALOGUE, EMPTY
from service.engine.ruleset import RulesetError, load_ruleset
from service.ruletests import run_rule_tests
from service.stages.decision import NoLists

RULES = REPO_ROOT / "rules"

HOSTILE = [
    "__import__('os').system('touch /tmp/pwned')",
    "applicant.__class__",
    "applicant.name.__class__.__mro__",
    "().__class__.__bases__[0].__subclasses__()",
    "[].__class__",
    "''.join(['a'])",
    "applicant.name.upper()",
    "open('/etc/passwd')",
    "eval('1')",
    "exec('x=1')",
    "compile('1', 'x', 'eval')",
    "globals()",
    "locals()",
    "vars()",
    "getattr(applicant, 'name')",
    "lambda: 1",
    "(lambda x: x)(1)",
    "[x for x in related.id_numbers]",
    "{x for x in related.id_numbers}",
    "{'a': 1}",
    "(x for x in related.id_numbers)",
    "related.id_numbers[0]",
    "related.id_numbers[0:1]",
    "f'{applicant.name}'",
    "(y := 1)",
    "9 ** 9 ** 9",
    "applicant.age ** 100",
    "2 ** applicant.age",
    "'a' * 100000000",
    "applicant.name * 1000",
    "max(*related.id_numbers)",
    "min(x=1)",
    "import os",
    "os.system('id')",
    "F['applicant.age']",
    "L.contains('x', 1)",
    "_k0",
    "__builtins__",
    "applicant.age is None",
    "applicant.age == None",
    "matches('(', applicant.name)",
    "in_list(applicant.name, applicant.name)",
    "1 if applicant.age else 'a'",
    "~applicant.age",
    "applicant.age << 2",
    "b'bytes' == b'bytes'",
    "await applicant.age",
    "yield 1",
    "x" * 3000,
    "(" * 300 + "1" + ")" * 300,
    "not " * 500 + "true",
    "applicant.age\0 > 1",
]


def compile_(text):
    return compile_expression(text, CATALOGUE)


def facts(**values):
    out = EMPTY.copy()
    out["flags"] = []
    out.update({k.replace("__", "."): v for k, v in values.items()})
    return out


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_expressions_are_rejected_at_load(text):
    with pytest.raises(ExpressionError) as exc:
        compile_(text)
    assert exc.value.message
    assert not Path("/tmp/pwned").exists()


def test_hostile_suite_is_big_enough():
    assert len(HOSTILE) >= 30


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyz_.()[]{}'\"+-*/%<>=!,:;@^~& 0123456789\n\\")), max_size=80))
def test_random_text_compiles_or_fails_cleanly(text):
    try:
        compiled = compile_(text)
    except ExpressionError:
        return
    try:
        compiled.fn(facts(), NoLists())
    except ArithmeticError:
        pass  # the one documented run-time error (division by zero, overflow): the rule's `error`


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.sampled_from(["applicant.age", "loan.amount", "bureau.queries_3m", "1", "2.5", "0", "true", "'farmer'",
                     "applicant.occupation", "missing(bank.payroll)", "device.is_emulator"]),
    lambda inner: st.tuples(inner, st.sampled_from([" + ", " - ", " * ", " / ", " < ", " == ", " and ", " or ", " in "]),
                            inner).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
    max_leaves=12))
def test_grammatical_expressions_compile_or_give_type_errors(text):
    try:
        compiled = compile_(text)
    except ExpressionError as exc:
        assert exc.message
        return
    try:
        compiled.fn(facts(applicant__age=30, loan__amount=1000.0, applicant__occupation="farmer"), NoLists())
    except ArithmeticError:
        pass


@pytest.mark.parametrize(("text", "values", "expected"), [
    ("bureau.queries_3m > 3", {}, False),  # comparison with null is false
    ("bureau.queries_3m <= 3", {}, False),
    ("bureau.queries_3m != 3", {}, False),
    ("missing(bureau.queries_3m)", {}, True),
    ("not missing(bureau.queries_3m)", {"bureau__queries_3m": 2}, True),
    ("bureau.total_debt + 1 > 0", {}, False),  # arithmetic with null is null
    ("min(whitelist.limit, 3000) == 3000", {}, True),  # min skips nulls
    ("18 <= applicant.age < 65", {"applicant__age": 64}, True),
    ("18 <= applicant.age < 65", {"applicant__age": 65}, False),
    ("applicant.occupation in ['farmer', 'merchant']", {"applicant__occupation": "farmer"}, True),
    ("applicant.occupation not in ['farmer']", {}, False),
    ("'id_front' in attachments.types", {"attachments__types": ["id_front"]}, True),
    ("device.is_emulator or device.is_rooted", {}, False),  # null is false in boolean context
    ("-applicant.monthly_income < 0", {"applicant__monthly_income": 5.0}, True),
    ("loan.amount / applicant.monthly_income > 10", {"loan__amount": 50000.0, "applicant__monthly_income": 4000.0}, True),
    ("(loan.amount if loan.amount > 100 else 0) == 500", {"loan__amount": 500.0}, True),
    ("matches('1[3-9][0-9]{9}', applicant.phone)", {"applicant__phone": "13800138000"}, True),
    ("matches('1[3-9][0-9]{9}', applicant.phone)", {}, False),
    ("submitted_at > consents.e_signature.signed_at",
     {"submitted_at": dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc),
      "consents__e_signature__signed_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}, True),
    ("age_from_id('110105199003071239', submitted_at) == 36",
     {"submitted_at": dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)}, True),
    ("distance_km(39.9, 116.4, 31.2, 121.5) > 1000", {}, True),
    ("len(flags) == 0", {}, True),
])
def test_semantics(text, values, expected):
    assert bool(compile_(text).fn(facts(**values), NoLists())) is expected


@pytest.mark.parametrize(("text", "message"), [
    ("applicant.agee > 1", "unknown field 'applicant.agee' (did you mean 'applicant.age'?)"),
    ("id_numbr_valid(applicant.id_number)", "unknown function 'id_numbr_valid'"),
    ("abs(1, 2)", "abs() takes 1 argument(s), got 2"),
    ("applicant.name > 5", "cannot compare a string with a number"),
    ("phone_valid(applicant.age)", "argument 1 of phone_valid() must be a string, got a number"),
    ("applicant.age and true", "'and'/'or' need true/false operands, got a number"),
])
def test_load_errors_say_what_is_wrong(text, message):
    with pytest.raises(ExpressionError) as exc:
        compile_(text)
    assert message in exc.value.message


def _copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def test_ruleset_errors_carry_file_line_column_and_rule_id(tmp_path):
    rules = _copy_rules(tmp_path)
    text = (rules / "fraud.yaml").read_text()
    text = text.replace("when: device.is_emulator\n", "when: device.is_emulater\n")
    text = text.replace("when: bureau.queries_3m > 6", "when: bureau.queries_3m > 'six'")
    (rules / "fraud.yaml").write_text(text)
    with pytest.raises(RulesetError) as exc:
        load_ruleset(rules)
    lines = {str(e).split(": ", 1)[0]: str(e) for e in exc.value.errors}
    emulator = next(i for i, l in enumerate(text.splitlines(), 1) if "device.is_emulater" in l)
    queries = next(i for i, l in enumerate(text.splitlines(), 1) if "queries_3m > 'six'" in l)
    assert any(f"fraud.yaml:{emulator}:11" in k for k in lines), lines
    assert any(f"fraud.yaml:{queries}:" in k and "BUREAU_MANY_QUERIES" in v and "cannot compare" in v
               for k, v in lines.items()), lines
    assert len(exc.value.errors) == 2  # every error, not just the first


@pytest.mark.parametrize(("mutation", "message"), [
    (lambda t: t.replace("action: decline", "action: block", 1), "'action' must be one of"),
    (lambda t: t.replace("  - id: ID_NUMBER_INVALID", "  - id: PRODUCT_UNKNOWN"), "duplicate rule id"),
    (lambda t: t.replace("rules:", "rulez:"), "unknown key 'rulez'"),
    (lambda t: t + "  - [not, a, mapping]\n", "each rule must be a mapping"),
    (lambda t: t.replace('    message: {zh: "身份证号码无效。", en: "The ID number is not valid."}\n', ""),
     "'message' must give the text in every language"),
    (lambda t: t.replace('{zh: "身份证号码无效。", en: "The ID number is not valid."}', "The ID number is not valid."),
     "'message' must give the text in every language"),
    (lambda t: t.replace('{zh: "身份证号码无效。", en: "The ID number is not valid."}', '{en: "The ID number is not valid."}'),
     "'message' must give the text in every language"),
    (lambda t: t.replace('{zh: "身份证号码无效。", en: "The ID number is not valid."}', '{zh: "身份证号码无效。", en: " "}'),
     "'message' must give the text in every language"),
    (lambda t: t.replace("on_error: refer", "on_error: [refer"), "YAML:"),
])
def test_validation_file_problems_are_reported(tmp_path, mutation, message):
    rules = _copy_rules(tmp_path)
    path = rules / "validation.yaml"
    path.write_text(mutation(path.read_text()))
    with pytest.raises(RulesetError) as exc:
        load_ruleset(rules)
    assert any(message in str(e) and "validation.yaml:" in str(e) for e in exc.value.errors), exc.value.errors


def test_strategy_needs_a_catch_all_last_row(tmp_path):
    rules = _copy_rules(tmp_path)
    path = rules / "strategy.yaml"
    path.write_text(path.read_text().replace("{id: otherwise, outcome: refer",
                                             "{id: otherwise, grade: Z, outcome: refer"))
    with pytest.raises(RulesetError) as exc:
        load_ruleset(rules)
    assert any("catch-all" in str(e) for e in exc.value.errors)


def test_a_rule_that_fails_at_run_time_is_an_error_and_refers(tmp_path):
    rules = _copy_rules(tmp_path)
    path = rules / "validation.yaml"
    path.write_text(path.read_text() + """
  - id: INCOME_RATIO_BROKEN
    description: divides by a value that can be zero
    when: loan.amount / applicant.dependents > 1000000
    action: decline
    message: {zh: x, en: x}
""")
    ruleset = load_ruleset(rules)
    from service.decide import application_facts, decide
    from service.schemas import DecisionRequest
    from tests.factories import application

    request = DecisionRequest.model_validate(application(applicant={"dependents": 0}), strict=False)
    ctx = decide(application_facts(request, ruleset), ruleset)
    validation = ctx.trace[0]["detail"]["rules"]
    assert {"id": "INCOME_RATIO_BROKEN", "result": "error", "error": "ZeroDivisionError"} in validation
    assert ctx.outcome.label == "refer"
    assert {"code": "RULE_ERROR", "stage": "validation", "message": "您的申请需要人工审核。",
            "messages": {"zh": "您的申请需要人工审核。", "en": "Your application needs a manual review."}} in ctx.reasons


@pytest.mark.parametrize(("yaml_file", "schema"), [
    ("products.yaml", "products"), ("lists.yaml", "lists"), ("derived.yaml", "derived"), ("validation.yaml", "rules"),
    ("fraud.yaml", "rules"),
    ("strategy.yaml", "strategy"), ("tests/fixtures.yaml", "fixtures"), ("tests/validation.yaml", "tests"),
    ("tests/fraud.yaml", "tests"), ("tests/strategy.yaml", "tests"),
])
def test_bundled_files_match_their_json_schema(yaml_file, schema):
    path = RULES / yaml_file
    first = path.read_text().splitlines()[0]
    assert f"{schema}.schema.json" in first, "each file names its schema for editors"
    schema_doc = json.loads((RULES / "schema" / f"{schema}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema_doc)
    doc = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
    jsonschema.validate(doc, schema_doc)


def test_bundled_rule_tests_pass_and_cover_every_rule():
    ruleset = load_ruleset(RULES)
    report = run_rule_tests(ruleset)
    assert not report.errors, report.errors
    assert not report.uncovered
    assert all(r.passed for r in report.results), [str(r) for r in report.results if not r.passed]
    assert len(ruleset.validation.rules) >= 12 and len(ruleset.fraud.rules) >= 15


def test_rule_test_failures_and_gaps_are_reported(tmp_path):
    rules = _copy_rules(tmp_path)
    path = rules / "tests" / "fraud.yaml"
    text = path.read_text().replace("expect: {outcome: decline, reasons: [FRAUD_EMULATOR]}",
                                    "expect: {outcome: approve}")
    path.write_text(text)
    report = run_rule_tests(load_ruleset(rules))
    failed = [r for r in report.results if not r.passed]
    assert len(failed) == 1 and failed[0].name == "emulator"
    assert "outcome: expected approve, got decline" in failed[0].failures[0]
    assert "fraud.yaml:" in str(failed[0].position)
    assert report.uncovered == ["FRAUD_EMULATOR"]
    assert not report.passed


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60)


def test_cli_lint_and_test(tmp_path):
    assert _cli("rules", "lint", "rules").returncode == 0
    ok = _cli("rules", "test", "rules")
    assert ok.returncode == 0 and " passed, 0 failed" in ok.stdout
    rules = _copy_rules(tmp_path)
    (rules / "fraud.yaml").write_text((rules / "fraud.yaml").read_text().replace("device.is_rooted", "device.rooted"))
    bad = _cli("rules", "lint", str(rules))
    assert bad.returncode == 1
    assert "fraud.yaml:" in bad.stdout and "[FRAUD_ROOTED_DEVICE] unknown field 'device.rooted'" in bad.stdout
