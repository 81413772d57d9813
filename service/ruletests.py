"""The risk team's rule tests: YAML cases run through the real ``decide``, no Python needed.

``rules/tests/fixtures.yaml`` names base applications (with the stage facts a live run would
have produced: verification results, whitelist, score). Every other file in ``rules/tests/``
holds cases: a partial application merged over a base (``null`` deletes a key), optional facts
and list entries, and expectations — outcome, reason codes present and absent, flags, the
strategy row that matched, offer bounds. Each rule of the ruleset must be named by at least one
case, so a new rule cannot ship untested. A case may name an experiment ``arm`` to run on that
arm's decision table and model; a row an arm adds or changes needs a case on that arm.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.decide import application_facts, decide
from service.engine.facts import CATALOGUE, list_candidates
from service.engine.ruleset import Ruleset, RulesetError, display_path, load_ruleset
from service.engine.shapes import FixturesFile, TestsFile, shape_errors
from service.engine.source import Located, Position, RuleError, load_yaml
from service.schemas import DecisionRequest
from service.stages.decision import Decision, Memberships
from service.store.lists import EntryError, MemoryLists

CASE_KEYS = {"name", "base", "application", "facts", "lists", "expect", "arm"}
EXPECT_KEYS = {"outcome", "reasons", "not_reasons", "flags", "strategy_row", "offer"}


def merge(base: Any, patch: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = {k: copy.deepcopy(v) for k, v in base.items()}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


@dataclass
class CaseResult:
    name: str
    position: Position
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        text = f"{status} {self.position}: {self.name}"
        return text + "".join(f"\n       {f}" for f in self.failures)


@dataclass
class Report:
    results: list[CaseResult] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)  # broken test files
    uncovered: list[str] = field(default_factory=list)  # rule ids no case names

    @property
    def passed(self) -> bool:
        return not self.errors and not self.uncovered and all(r.passed for r in self.results)

    def lines(self) -> list[str]:
        out = [str(e) for e in self.errors] + [str(r) for r in self.results]
        if self.uncovered:
            out.append("no case names these rules: " + ", ".join(self.uncovered))
        failed = sum(not r.passed for r in self.results)
        out.append(f"{len(self.results) - failed} passed, {failed} failed")
        return out


def _expect_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def check(d: Decision, expect: dict[str, Any]) -> list[str]:
    failures = []
    codes = {r["code"] for r in d.reasons}
    outcome = d.outcome.label
    if "outcome" in expect and outcome != expect["outcome"]:
        failures.append(f"outcome: expected {expect['outcome']}, got {outcome} (reasons: {sorted(codes) or 'none'})")
    for code in _expect_list(expect.get("reasons")):
        if code not in codes:
            failures.append(f"reason {code} expected, got {sorted(codes) or 'none'}")
    for code in _expect_list(expect.get("not_reasons")):
        if code in codes:
            failures.append(f"reason {code} not expected")
    for flag in _expect_list(expect.get("flags")):
        if flag not in d.facts["flags"]:
            failures.append(f"flag {flag} expected, got {d.facts['flags'] or 'none'}")
    if "strategy_row" in expect:
        strategy = next((s for s in d.trace if s["stage"] == "strategy"), {})
        detail = strategy.get("detail", {})
        matched = detail.get("matched")
        # with hit policy collect, a row that held counts even when another one decided
        if matched != expect["strategy_row"] and expect["strategy_row"] not in detail.get("hits", ()):
            failures.append(f"strategy row: expected {expect['strategy_row']}, got {matched}")
    for key, bounds in (expect.get("offer") or {}).items():
        actual = (d.offer or {}).get(key)
        if isinstance(bounds, dict):
            low, high = bounds.get("min", float("-inf")), bounds.get("max", float("inf"))
            if actual is None or not low <= actual <= high:
                failures.append(f"offer.{key}: expected within [{low}, {high}], got {actual}")
        elif actual != bounds:
            failures.append(f"offer.{key}: expected {bounds}, got {actual}")
    return failures


def covered_ids(expect: dict[str, Any], arm: str | None = None) -> set[str]:
    ids = set(_expect_list(expect.get("reasons"))) | set(_expect_list(expect.get("flags")))
    if "strategy_row" in expect:
        ids.add(expect["strategy_row"])
        if arm:
            ids.add(f"{arm}/{expect['strategy_row']}")
    return ids


def _row_text(row: Any) -> tuple:
    offer = row.offer
    parts = (offer.amount, offer.limit, offer.term_months, offer.rate_tier) if offer else ()
    return (row.when.text, row.outcome, row.reason_code, row.message, tuple(p.text for p in parts))


def rows_to_cover(ruleset: Ruleset) -> list[str]:
    """Every rule and main-table row id, and 'arm/row' for each row an arm adds or changes."""
    ids = [r.id for r in ruleset.validation.rules + ruleset.fraud.rules]
    main = {row.id: _row_text(row) for row in ruleset.strategy.rows}
    ids += list(main)
    experiment = ruleset.experiment
    for arm in experiment.live + experiment.shadows:
        ids += [f"{arm.name}/{row.id}" for row in arm.strategy.rows if main.get(row.id) != _row_text(row)]
    return ids


def run_rule_tests(ruleset: Ruleset, directory: Path | None = None) -> Report:
    """Run the cases in ``directory`` (default: the ruleset's own ``tests/``) through ``decide``."""
    directory = Path(directory or ruleset.directory) / "tests"
    report = Report()
    fixtures_doc, errors = load_yaml(directory / "fixtures.yaml", display_path(directory / "fixtures.yaml"))
    report.errors += errors or shape_errors(fixtures_doc, FixturesFile, display_path(directory / "fixtures.yaml"))
    fixtures = fixtures_doc.get("fixtures") if isinstance(fixtures_doc, dict) else None
    if not isinstance(fixtures, dict):
        if not errors:
            report.errors.append(RuleError(Position(display_path(directory / "fixtures.yaml"), 1, 1),
                                           "the file needs a 'fixtures' mapping of named base applications"))
        return report
    covered: set[str] = set()
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "fixtures.yaml":
            continue
        doc, errors = load_yaml(path, display_path(path))
        report.errors += errors
        cases = doc.get("cases") if isinstance(doc, Located) else None
        if doc is not None and not isinstance(cases, list):
            report.errors.append(RuleError(Position(display_path(path), 1, 1), "a test file needs a 'cases' list"))
            continue
        for case in cases or []:
            result = _run_case(case, fixtures, ruleset, path)
            if result is None:
                continue
            if isinstance(result, RuleError):
                report.errors.append(result)
            else:
                report.results.append(result)
                covered |= covered_ids(case.get("expect") or {}, case.get("arm"))
        if doc is not None and not any(e.position.file == display_path(path) for e in report.errors):
            report.errors += shape_errors(doc, TestsFile, display_path(path))  # what no message above saw
    report.uncovered = [i for i in rows_to_cover(ruleset) if i not in covered]
    return report


def _run_case(case: Any, fixtures: dict, ruleset: Ruleset, path: Path) -> CaseResult | RuleError | None:
    if not isinstance(case, Located):
        return RuleError(Position(display_path(path), 1, 1), "each case must be a mapping")
    name = str(case.get("name", "unnamed case"))
    unknown = set(case) - CASE_KEYS
    if unknown:
        return RuleError(case.position, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(CASE_KEYS)}", name)
    expect = case.get("expect") or {}
    if not isinstance(expect, dict) or set(expect) - EXPECT_KEYS:
        return RuleError(case.at("expect"), f"'expect' may hold {sorted(EXPECT_KEYS)}", name)
    base = fixtures.get(case.get("base"))
    if not isinstance(base, dict):
        return RuleError(case.at("base"), f"unknown base fixture {case.get('base')!r}", name)
    facts = merge(base.get("facts") or {}, case.get("facts") or {})
    bad = [k for k in facts if k not in CATALOGUE]
    if bad:
        return RuleError(case.at("facts"), f"unknown fact(s): {', '.join(bad)}", name)
    lists = merge(base.get("lists") or {}, case.get("lists") or {})
    body = merge(base.get("application") or {}, case.get("application") or {})
    try:
        request = DecisionRequest.model_validate(body, strict=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return RuleError(case.position, f"the application is not valid: {where}: {first['msg']}", name)
    arm = None
    if "arm" in case:
        arm = ruleset.experiment.arm(str(case["arm"]))
        if arm is None:
            names = [a.name for a in ruleset.experiment.live + ruleset.experiment.shadows]
            return RuleError(case.at("arm"), f"no arm {case['arm']!r} (arms: {', '.join(names)})", name)
    facts = application_facts(request, ruleset) | facts
    try:
        entries = MemoryLists(ruleset.list_kinds, lists)
    except KeyError as exc:
        return RuleError(case.at("lists"), f"lists: {exc.args[0]!r} is not declared in lists.yaml", name)
    except EntryError as exc:  # an entry no list store would take
        return RuleError(case.at("lists"), f"lists: {exc}", name)
    d = decide(facts, ruleset, arm, lists=Memberships(entries.memberships(list_candidates(facts, ruleset.list_kinds))))
    return CaseResult(name, case.position, check(d, expect))


CHECK_TIMEOUT_S = 120.0  # a candidate whose tests run longer is refused


def _verdict(directory: str, models: list[str], answer: Any) -> None:
    """In the checking process: the version that passed, or the errors. It may run on any CPU,
    not only the one a pinned worker serves from, and yields to live traffic where they meet."""
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
        os.nice(10)
    except (AttributeError, OSError, ValueError):
        pass
    try:
        answer.send(("ok", check_ruleset(Path(directory), set(models)).version))
    except RulesetError as exc:
        answer.send(("refused", [str(e) for e in exc.errors]))


def _checker_context() -> Any:
    """Checking processes fork from a small server that has the rule language loaded already
    (forkserver): starting one costs this worker nothing and the check no imports."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["service.ruletests"])
    return context


def check_elsewhere(directory: Path, models: set[str], timeout_s: float = CHECK_TIMEOUT_S) -> str:
    """Lint, compile and test ``directory`` in a process of its own (so that nothing it runs —
    a rule test that keeps the interpreter busy for seconds — can hold this worker's
    interpreter) and return the version that passed; RulesetError otherwise."""
    context = _checker_context()
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_verdict, args=(str(directory), sorted(models), send), daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(timeout_s):
            raise RulesetError([f"{directory}: linting and testing took over {timeout_s:g} s; refused"])
        status, result = receive.recv()
    except EOFError:
        raise RulesetError([f"{directory}: the checking process died (exit {process.exitcode})"]) from None
    finally:
        process.kill()
        process.join()
        receive.close()
    if status != "ok":
        raise RulesetError(result)
    return result


def check_ruleset(directory: Path, models: set[str] | None = None) -> Ruleset:
    """Lint and compile ``directory`` (its model routes against ``models``), then run its own
    rule tests; RulesetError if anything fails."""
    ruleset = load_ruleset(directory, models)
    report = run_rule_tests(ruleset)
    if not report.passed:
        raise RulesetError([line for line in report.lines() if not line.startswith("ok")])
    return ruleset
