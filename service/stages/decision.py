"""One decision while it is being made: the facts, what the stages have said, and the trace.

The state the stages share (``service.stages``): each reads it and adds to it, none calls
another. A stage's result is data — facts, reason codes, trace detail — never an exception used
for control flow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.engine.experiment import Arm
from service.engine.messages import Message
from service.engine.ruleset import Product, Rule, RuleSet, Ruleset
from service.logs import mask_fact
from service.outcome import Outcome

RULE_ERROR = "RULE_ERROR"
REVIEW_MESSAGE = Message("您的申请需要人工审核。", "Your application needs a manual review.")


class ListLookup(Protocol):
    """What ``in_list``/``any_in_list`` read: the application's identifiers found on named lists."""

    def contains(self, name: str, value: Any) -> bool: ...

    def contains_any(self, name: str, values: Any) -> bool: ...


class NoLists:
    """Every list is empty."""

    def contains(self, name: str, value: Any) -> bool:
        return False

    def contains_any(self, name: str, values: Any) -> bool:
        return False


NO_LISTS = NoLists()


class Memberships:
    """The application's identifiers found on each list: what gathering looked up in the list
    store, or what a rule test or backtest line gives. Rules may ask only about the
    application's own identifiers (checked at lint), so every question has its answer here."""

    def __init__(self, hits: frozenset[tuple[str, str]]) -> None:
        self.hits = hits

    def contains(self, name: str, value: Any) -> bool:
        return (name, value) in self.hits

    def contains_any(self, name: str, values: Any) -> bool:
        hits = self.hits
        return any((name, value) in hits for value in values or ())


class Model(Protocol):
    """A credit model as the scoring stage uses it (``service.scoring.model.OnnxModel``)."""

    version: str

    @property
    def name(self) -> str: ...

    def score(self, facts: dict[str, Any], lists: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """({"model", "pd", "points", "grade"}, trace detail); raises features.Refused."""


@dataclass(slots=True)
class Decision:
    facts: dict[str, Any]
    ruleset: Ruleset
    product: Product | None
    arm: Arm
    lists: ListLookup
    models: Mapping[str, Model]
    strongest: Outcome | None = None  # what the stages have said so far
    reasons: list[dict[str, Any]] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)
    score: dict[str, Any] | None = None
    offer: dict[str, Any] | None = None
    shadow: list[dict[str, Any]] = field(default_factory=list)  # shadow arms' results
    # What automation would have said, when the applicant refused an automated decision.
    suggested: dict[str, Any] | None = None
    scores: dict[str, Any] = field(default_factory=dict)  # by model name; forks share it

    @property
    def outcome(self) -> Outcome:
        """The answer: the strongest outcome said; refer when nothing decided (no table ran)."""
        return Outcome.REFER if self.strongest is None else self.strongest

    @property
    def declined(self) -> bool:
        return self.strongest is Outcome.DECLINE

    @property
    def referred(self) -> bool:
        return self.strongest is Outcome.REFER

    def say(self, outcome: Outcome) -> None:
        self.strongest = outcome.merge(self.strongest)

    def add_reason(self, code: str, stage: str, message: Message, action: str) -> None:
        """A reason with its message in the default language and, for other languages, in all."""
        self.reasons.append({"code": code, "stage": stage, "message": message.zh, "messages": message.as_dict()})
        self.say(Outcome.of(action))

    def fork(self, arm: Arm) -> Decision:
        """An independent copy for evaluating ``arm`` from this point on."""
        facts = dict(self.facts)
        facts["flags"] = list(facts["flags"])
        return dataclasses.replace(self, facts=facts, arm=arm, reasons=list(self.reasons), trace=[],
                                   shadow=[])


def read_values(fields: frozenset[str], facts: Mapping[str, Any]) -> dict[str, Any]:
    """The values an expression read, personal data masked: kept with a rule that fired, so a
    decision can be explained from its trace after the rules have changed."""
    return {path: mask_fact(path, facts.get(path)) for path in sorted(fields)}


def evaluate_rules(d: Decision, rules: RuleSet) -> dict[str, Any]:
    """Evaluate every rule (not first-hit) so a decision lists every failed rule."""
    facts, lists, stage = d.facts, d.lists, rules.stage
    results: list[dict[str, Any]] = []
    errored: list[Rule] = []
    for rule in rules.rules:
        try:
            hit = rule.when.fn(facts, lists)
        except Exception as exc:  # noqa: BLE001 - one broken rule must not break the decision
            results.append({"id": rule.id, "result": "error", "error": type(exc).__name__})
            errored.append(rule)
            continue
        if hit:
            results.append({**rule.hit, "read": read_values(rule.when.fields, facts)})
            if rule.action == "flag":
                facts["flags"].append(rule.id)
            else:
                d.add_reason(rule.id, stage, rule.message, rule.action)
        else:
            results.append(rule.passed)
    if errored and rules.on_error == "decline":
        for rule in errored:
            d.add_reason(rule.id, stage, rule.message, "decline")
    elif errored and rules.on_error == "refer":
        d.add_reason(RULE_ERROR, stage, REVIEW_MESSAGE, "refer")
    return {"rules": results}
