"""One decision: a DecisionContext flows through six ordered stages under one deadline.

Every stage reads the context and adds to it; no stage calls another. A stage's result is data
(facts, reason codes, trace detail), never an exception used for control flow. The trace —
which rules fired, stage timings, provider results — is a by-product of running the stages.

Outcome: ``decline`` if any decline fired, else ``refer`` if any refer fired, else what the
strategy table says. Stages that cost money or cannot change that outcome are skipped (and the
skip is traced): verification after a validation decline, scoring after any decline, the
strategy after any decline or refer.

Each decision runs on one experiment arm (its decision table and model). Shadow arms are
evaluated after the live run from a copy of the context taken just before scoring; their
outcomes are recorded with the decision and never change it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from service import metrics
from service.engine.derived import derive
from service.engine.experiment import Arm
from service.engine.facts import request_facts
from service.engine.ruleset import Product, Rule, RuleSet, Ruleset
from service.schemas import DecisionRequest

SLA = dt.timedelta(minutes=10)
RULE_ERROR = "RULE_ERROR"


class ListLookup(Protocol):
    """What ``in_list``/``any_in_list`` read: named lists of ids, phones, devices, IPs, USCCs."""

    def contains(self, name: str, value: Any) -> bool: ...

    def contains_any(self, name: str, values: Any) -> bool: ...


class NoLists:
    """The list lookup before any list is loaded: every list is empty."""

    def contains(self, name: str, value: Any) -> bool:
        return False

    def contains_any(self, name: str, values: Any) -> bool:
        return False


@dataclass(slots=True)
class DecisionContext:
    request: DecisionRequest
    ruleset: Ruleset
    product: Product | None
    facts: dict[str, Any]
    lists: ListLookup
    deadline: float  # time.monotonic() by which the decision must be made
    arm: Arm
    reasons: list[dict[str, str]] = field(default_factory=list)
    declined: bool = False
    referred: bool = False
    trace: list[dict[str, Any]] = field(default_factory=list)
    score: dict[str, Any] | None = None
    offer: dict[str, Any] | None = None
    strategy_outcome: str | None = None
    shadow: list[dict[str, Any]] = field(default_factory=list)  # shadow arms' results
    scores: dict[str, Any] = field(default_factory=dict)  # by model name; forks share it

    def fork(self, arm: Arm) -> DecisionContext:
        """An independent copy for evaluating ``arm`` from this point on."""
        facts = dict(self.facts)
        facts["flags"] = list(facts["flags"])
        return dataclasses.replace(self, facts=facts, arm=arm, reasons=list(self.reasons), trace=[],
                                   shadow=[])

    def add_reason(self, code: str, stage: str, message: str, action: str) -> None:
        self.reasons.append({"code": code, "stage": stage, "message": message})
        if action == "decline":
            self.declined = True
        elif action == "refer":
            self.referred = True

    @property
    def outcome(self) -> str:
        if self.declined:
            return "decline"
        if self.referred:
            return "refer"
        return self.strategy_outcome or "refer"


class Stage(Protocol):
    name: str

    def skip_reason(self, ctx: DecisionContext) -> str | None:
        """Why this stage need not run for this decision, or None to run it."""

    async def run(self, ctx: DecisionContext) -> dict[str, Any]:
        """Add facts/reasons to ``ctx``; return the stage's trace detail."""


def evaluate_rules(ctx: DecisionContext, rules: RuleSet) -> dict[str, Any]:
    """Evaluate every rule (not first-hit) so a decision lists every failed rule."""
    facts, lists, stage = ctx.facts, ctx.lists, rules.stage
    results: list[dict[str, str]] = []
    errored: list[Rule] = []
    for rule in rules.rules:
        try:
            hit = rule.when.fn(facts, lists)
        except Exception as exc:  # noqa: BLE001 - one broken rule must not break the decision
            results.append({"id": rule.id, "result": "error", "error": type(exc).__name__})
            errored.append(rule)
            continue
        if hit:
            results.append(rule.hit)
            if rule.action == "flag":
                facts["flags"].append(rule.id)
            else:
                ctx.add_reason(rule.id, stage, rule.message, rule.action)
        else:
            results.append(rule.passed)
    if errored and rules.on_error == "decline":
        for rule in errored:
            ctx.add_reason(rule.id, stage, rule.message, "decline")
    elif errored and rules.on_error == "refer":
        ctx.add_reason(RULE_ERROR, stage, "Your application needs a manual review.", "refer")
    return {"rules": results}


class RuleStage:
    """Validation and fraud: a stage that is one list of rules."""

    def __init__(self, name: str) -> None:
        self.name = name

    def skip_reason(self, ctx: DecisionContext) -> str | None:
        return None

    async def run(self, ctx: DecisionContext) -> dict[str, Any]:
        rules = ctx.ruleset.validation if self.name == "validation" else ctx.ruleset.fraud
        return evaluate_rules(ctx, rules)


class Pipeline:
    def __init__(self, stages: list[Stage], service_version: str, observe: bool = True) -> None:
        self.stages = stages
        self.service_version = service_version
        self.observe = observe  # False for rule tests and backtests: they are not traffic
        self._timers = {stage.name: metrics.STAGE_SECONDS.labels(stage.name) for stage in stages}

    def context(self, request: DecisionRequest, ruleset: Ruleset, lists: ListLookup,
                deadline: float, recorded: dict[str, Any] | None = None,
                arm: Arm | None = None) -> DecisionContext:
        product = ruleset.products.get(request.product)
        facts = request_facts(request)
        facts["flags"] = []
        facts["product.known"] = product is not None
        if product is not None:
            facts.update(product.facts())
        derive(request, facts, product.reference_rate if product else None)
        if recorded:
            facts.update(recorded)  # backtests and rule tests: stage facts as recorded
        arm = arm or ruleset.experiment.assign(request.application_id)
        return DecisionContext(request, ruleset, product, facts, lists, deadline, arm)

    async def run(self, ctx: DecisionContext) -> None:
        shadows = ctx.ruleset.experiment.shadows
        fork: DecisionContext | None = None
        for index, stage in enumerate(self.stages):
            if shadows and stage.name == "scoring":
                fork, tail = ctx.fork(ctx.arm), self.stages[index:]
            started = time.perf_counter()
            skipped = stage.skip_reason(ctx)
            before = len(ctx.reasons)
            detail = {"skipped": skipped} if skipped else await stage.run(ctx)
            elapsed = time.perf_counter() - started
            if self.observe:
                self._timers[stage.name].observe(elapsed)
            ctx.trace.append({
                "stage": stage.name, "ms": round(elapsed * 1000, 4),
                "reasons": [r["code"] for r in ctx.reasons[before:]], "detail": detail,
            })
        if fork is not None:
            ctx.shadow = [await self._shadow(fork.fork(arm), tail) for arm in shadows]

    @staticmethod
    async def _shadow(ctx: DecisionContext, tail: list[Stage]) -> dict[str, Any]:
        """Run the stages from scoring on for a shadow arm; no metrics, no trace kept."""
        for stage in tail:
            if stage.skip_reason(ctx) is None:
                await stage.run(ctx)
        score = ctx.score
        return {"arm": ctx.arm.name, "outcome": ctx.outcome, "reasons": [r["code"] for r in ctx.reasons],
                "offer": ctx.offer if ctx.outcome == "approve" else None,
                "grade": score["grade"] if score else None, "model": score["model"] if score else None}

    def response(self, ctx: DecisionContext, decision_id: str, received: float,
                 decided_at: dt.datetime) -> dict[str, Any]:
        request = ctx.request
        return {
            "decision_id": decision_id,
            "application_id": request.application_id,
            "outcome": ctx.outcome,
            "offer": ctx.offer if ctx.outcome == "approve" else None,
            "reasons": ctx.reasons,
            "score": ctx.score,
            "versions": {"ruleset": ctx.ruleset.version,
                         "model": ctx.score["model"] if ctx.score else None,
                         "service": self.service_version},
            "experiment": {"arm": ctx.arm.name},
            "submitted_at": request.submitted_at,
            "decided_at": decided_at,
            "disburse_by": request.submitted_at + SLA,
            "elapsed_ms": round((time.perf_counter() - received) * 1000, 3),
        }
