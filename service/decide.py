"""Decide: everything about one application that is not I/O, as one pure, synchronous function.

    facts = application_facts(request, ruleset)   # the request's fields, its product, derived facts
    facts.update(...)                             # what was gathered (live) or recorded (tests, backtests)
    decision = decide(facts, ruleset, models=..., lists=...)

Live requests, shadow arms, the risk team's rule tests and the backtest all call ``decide``; it
is the only place the stages run. Stages that cannot change the outcome are skipped, and the
skip is traced: verification after a validation decline, scoring after a decline, the strategy
after a decline or a referral.

Shadow arms are evaluated from a copy of the decision taken just before scoring; their outcomes
are recorded with the decision and never change it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from service.engine.derived import derive
from service.engine.experiment import Arm
from service.engine.facts import request_facts
from service.engine.messages import Message
from service.engine.ruleset import Ruleset
from service.outcome import Outcome
from service.schemas import DecisionRequest
from service.stages import STAGES, Stage
from service.stages import scoring as scoring_stage
from service.stages.decision import NO_LISTS, Decision, ListLookup, Model

SCORING = STAGES.index(scoring_stage)  # type: ignore[arg-type]
HUMAN_DECISION_REQUESTED = "HUMAN_DECISION_REQUESTED"
HUMAN_DECISION_MESSAGE = Message("您已选择由人工作出决定，您的申请将由工作人员审核。",
                                 "You asked for a person to decide: the bank's staff will review your application.")


def application_facts(request: DecisionRequest, ruleset: Ruleset) -> dict[str, Any]:
    """The facts an application brings by itself: its fields, its product's settings and the
    facts derived from them (age, instalment, …). Every catalogued fact is present (null when
    unknown), so a compiled rule reads any fact with one dict look-up."""
    product = ruleset.products.get(request.product)
    facts = request_facts(request)
    facts["flags"] = []
    facts["product.known"] = product is not None
    if product is not None:
        facts.update(product.facts())
    derive(request, facts, product.reference_rate if product else None)
    return facts


def decide(facts: dict[str, Any], ruleset: Ruleset, arm: Arm | None = None, *,
           models: Mapping[str, Model] | None = None, lists: ListLookup = NO_LISTS,
           shadows: bool = False, traced: bool = True) -> Decision:
    """Run the six stages over ``facts`` on ``arm`` (default: the application's live arm);
    with ``shadows``, also evaluate the ruleset's shadow arms; without ``traced``, keep no trace
    (the backtest, which reports outcomes only). ``facts`` is changed in place."""
    arm = arm or ruleset.experiment.assign(facts["application_id"])
    d = Decision(facts, ruleset, ruleset.products.get(facts["product"]), arm, lists, models or {})
    shadow_arms = ruleset.experiment.shadows if shadows else ()
    # The applicant refused an automated decision: every stage runs (the reviewer sees all of
    # it) and the outcome is a referral, whatever the stages said.
    for_a_person = facts.get("consents.automated_decision") is False
    if not shadow_arms:
        _run(d, STAGES, traced, for_a_person)
    else:
        _run(d, STAGES[:SCORING], traced, for_a_person)
        before_scoring = d.fork(d.arm)
        _run(d, STAGES[SCORING:], traced, for_a_person)
        d.shadow = [_shadow(before_scoring.fork(shadow)) for shadow in shadow_arms]
    if for_a_person:
        refer_to_a_person(d)
    return d


def refer_to_a_person(d: Decision) -> None:
    """PIPL art. 24: no automatic outcome for an applicant who refused one. What automation
    would have said is kept for the reviewer (``suggested``), never answered."""
    d.suggested = {"outcome": d.outcome.label, "offer": d.offer, "reasons": [r["code"] for r in d.reasons]}
    d.offer = None
    d.add_reason(HUMAN_DECISION_REQUESTED, "review", HUMAN_DECISION_MESSAGE, "refer")
    d.strongest = Outcome.REFER


def _run(d: Decision, stages: tuple[Stage, ...], traced: bool, every: bool = False) -> None:
    """Run ``stages`` on ``d``; with ``every``, none is skipped."""
    if not traced:
        for stage in stages:
            if every or stage.skip(d) is None:
                stage.run(d)
        return
    for stage in stages:
        started = time.perf_counter()
        skipped = None if every else stage.skip(d)
        before = len(d.reasons)
        detail = {"skipped": skipped} if skipped else stage.run(d)
        d.trace.append({
            "stage": stage.NAME, "ms": round((time.perf_counter() - started) * 1000, 4),
            "reasons": [r["code"] for r in d.reasons[before:]], "detail": detail})


def _shadow(d: Decision) -> dict[str, Any]:
    """A shadow arm's result from scoring on: recorded with the decision, never answered."""
    _run(d, STAGES[SCORING:], traced=False)
    score, outcome = d.score, d.outcome.label
    return {"arm": d.arm.name, "outcome": outcome, "reasons": [r["code"] for r in d.reasons],
            "offer": d.offer if outcome == "approve" else None,
            "grade": score["grade"] if score else None, "model": score["model"] if score else None}
