"""Decision tables in columns: cells, hit policies, outputs read by one offer, errors at their cell."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from offline.backtest import Evaluator, PastApplication
from service.config import REPO_ROOT
from service.decide import application_facts, decide
from service.engine.ruleset import RulesetError, load_ruleset
from service.engine.tables import CellError, condition
from service.schemas import DecisionRequest
from service.scoring.model import load_models
from service.ruletests import merge

GERMAN = REPO_ROOT / "models/data/german_credit/applications.jsonl"


@pytest.mark.parametrize(("cell", "expression"), [
    (None, None), ("-", None), ("", None),
    ("E", "(score.grade) == 'E'"), ("'E'", "(score.grade) == 'E'"), (12, "(score.grade) == 12"),
    (True, "(score.grade) == true"), ("true", "(score.grade) == true"),
    (">= 100", "(score.grade) >= 100"), ("< loan.amount", "(score.grade) < loan.amount"),
    ("[18..60]", "18 <= (score.grade) <= 60"), (["18..60"], "18 <= (score.grade) <= 60"),
    ("(18..60]", "18 < (score.grade) <= 60"), ("[product.min_age..product.max_age)",
                                                 "product.min_age <= (score.grade) < product.max_age"),
    (["A", "B"], "(score.grade) in ['A', 'B']"), ("[A, B]", "(score.grade) in ['A', 'B']"), ([1, 2], "(score.grade) in [1, 2]"),
    ("missing", "missing(score.grade)"), ("not missing", "not missing(score.grade)"),
    ("not true", "not ((score.grade) == true)"), ("not [A, B]", "not ((score.grade) in ['A', 'B'])"),
])
def test_a_cell_says_what_an_analyst_means(cell, expression):
    assert condition("score.grade", True, cell) == expression


@pytest.mark.parametrize(("cell", "says"), [
    ("missing", "needs a column that is a field"), ("not -", "holds for nothing"), ({"a": 1}, "a cell is a value"),
    ([None], "a list cell holds values"),
])
def test_cells_that_mean_nothing_are_refused(cell, says):
    with pytest.raises(CellError, match=says):
        condition("len(flags)", False, cell)


def _rules(tmp_path: Path, strategy: str) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    (rules / "strategy.yaml").write_text(strategy)
    return rules


def _decide(ruleset, **patch):
    """The rule tests' good_consumer (verified, on the whitelist), changed by ``app`` and facts."""
    base = yaml.safe_load((REPO_ROOT / "rules" / "tests" / "fixtures.yaml").read_text())["fixtures"]["good_consumer"]
    body = merge(base["application"], patch.pop("app", {}))
    request = DecisionRequest.model_validate(body, strict=False)
    return decide(application_facts(request, ruleset) | base["facts"] | patch, ruleset)


def test_the_bundled_table_decides_every_application_as_the_row_table_it_replaced(tmp_path):
    """The strategy was rewritten as a column table (the offer formula, copied per grade before,
    is written once): on the 1,000 German-credit applications every outcome, reason and offer is
    the same as with the former row table (tests/strategy-rows.yaml)."""
    models = load_models(REPO_ROOT / "models")
    rows = load_ruleset(_rules(tmp_path, (REPO_ROOT / "tests" / "strategy-rows.yaml").read_text()), set(models))
    columns = load_ruleset(REPO_ROOT / "rules", set(models))
    apps = [PastApplication.model_validate_json(line) for line in GERMAN.read_bytes().splitlines()]
    before = Evaluator(rows, models).evaluate(apps)
    after = Evaluator(columns, models).evaluate(apps)
    assert [(r.outcome, r.reasons, r.amount) for r in after] == [(r.outcome, r.reasons, r.amount) for r in before]
    assert {r.outcome for r in after} == {"approve", "decline", "refer"}


TABLE = """on_error: refer
table:
  hit: {hit}
  inputs:
    grade: score.grade
    flags: len(flags)
    night: submitted.hour
  outputs: [share]
  rows:
    - {{id: late, night: "[0..5)", outcome: refer, reason: NIGHT}}
    - {{id: low_grade, grade: [D, E], outcome: decline, reason: LOW_GRADE}}
    - {{id: flagged, flags: ">= 1", outcome: refer, reason: FLAGGED}}
    - {{id: good, grade: [A, B, C], outcome: approve, share: "1 if score.grade == 'A' else 0.5"}}
    - {{id: otherwise, outcome: refer, reason: OTHER}}
  reasons:
    NIGHT: {{zh: 夜间, en: night}}
    LOW_GRADE: {{zh: 低, en: low}}
    FLAGGED: {{zh: 标记, en: flagged}}
    OTHER: {{zh: 其他, en: other}}
  offer:
    amount: floor_to(table.share * min(loan.amount, whitelist.limit), 100)
    limit: floor_to(table.share * whitelist.limit, 100)
    term_months: loan.term_months
    rate_tier: "'T2'"
"""
NIGHT = {"submitted_at": "2026-11-23T03:10:00+08:00", "consents": {"e_signature": {"signed_at": "2026-11-23T03:09:00+08:00"}}}


def _codes(d) -> list[str]:
    return [r["code"] for r in d.reasons]


@pytest.mark.parametrize(("hit", "expected"), [
    ("first", ("refer", ["NIGHT"])),  # the first row that holds
    ("priority", ("decline", ["LOW_GRADE"])),  # the strongest outcome among the rows that hold
    ("collect", ("decline", ["NIGHT", "LOW_GRADE", "FLAGGED"])),  # every row that holds gives its reason (the
    # night application is also flagged NIGHT_APPLICATION by a fraud rule)
])
def test_hit_policies(tmp_path, hit, expected):
    ruleset = load_ruleset(_rules(tmp_path, TABLE.format(hit=hit)))
    d = _decide(ruleset, app=NIGHT, **{"score.grade": "E"})
    assert (d.outcome.label, [c for c in _codes(d) if c in ("NIGHT", "LOW_GRADE", "FLAGGED")]) == expected
    strategy = next(s for s in d.trace if s["stage"] == "strategy")["detail"]
    if hit != "first":
        assert strategy["hits"][:2] == ["late", "low_grade"]


def test_outputs_are_expressions_read_by_the_one_offer(tmp_path):
    ruleset = load_ruleset(_rules(tmp_path, TABLE.format(hit="first")))
    facts = {"whitelist.listed": True, "whitelist.limit": 20000.0}
    grade_a = _decide(ruleset, app={"loan": {"amount": 30000}}, **facts, **{"score.grade": "A"})
    grade_c = _decide(ruleset, app={"loan": {"amount": 30000}}, **facts, **{"score.grade": "C"})
    assert (grade_a.offer["amount"], grade_c.offer["amount"]) == (20000, 10000)
    detail = next(s for s in grade_c.trace if s["stage"] == "strategy")["detail"]
    assert detail["matched"] == "good" and detail["outputs"] == {"share": 0.5}


@pytest.mark.parametrize(("change", "line", "says"), [
    (("grade: [D, E]", 'grade: "> 5"'), 11, "column 'grade': cannot compare a string with a number"),
    (("flags: \">= 1\"", "flag: \">= 1\""), 12, "unknown key 'flag'"),
    (("reason: FLAGGED}", "reason: FLAGGD}"), 12, "names a reason declared under the table's 'reasons'"),
    (("share: \"1 if score.grade == 'A' else 0.5\"", "share: \"'half'\""), 14, "output 'share'"),
    (("{id: otherwise, outcome", "{id: otherwise, grade: Z, outcome"), 14, "must be a catch-all"),
    (("hit: first", "hit: all"), 3, "'hit' must be one of first, priority, collect"),
    (("night: submitted.hour", "night: submitted.houre"), 7, "unknown field 'submitted.houre'"),
])
def test_table_mistakes_are_lint_errors_at_their_row(tmp_path, change, line, says):
    text = TABLE.format(hit="first").replace(*change)
    if "'half'" in change[1]:  # an output of another type in one row only
        text = text.replace("    - {id: otherwise", "    - {id: half, grade: C, outcome: approve, share: 0.5}\n    - {id: otherwise")
    with pytest.raises(RulesetError) as exc:
        load_ruleset(_rules(tmp_path, text))
    errors = [e for e in exc.value.errors if says in e.message]
    assert errors, exc.value.errors
    assert errors[0].position.line == line, errors[0]


def test_an_approving_row_must_give_what_the_offer_reads(tmp_path):
    text = TABLE.format(hit="first").replace("share: \"1 if score.grade == 'A' else 0.5\"", "share: 1")
    text = text.replace("    - {id: otherwise", "    - {id: also_good, grade: X, outcome: approve}\n    - {id: otherwise")
    with pytest.raises(RulesetError) as exc:
        load_ruleset(_rules(tmp_path, text))
    assert any("gives every output the offer reads: share" in e.message and e.rule_id == "also_good"
               for e in exc.value.errors), exc.value.errors
