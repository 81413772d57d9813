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
from service.engine.ruleset import Ruleset
from service.schemas import DecisionRequest
from service.stages import STAGES, Stage
from service.stages import scoring as scoring_stage
from service.stages.decision import NO_LISTS, Decision, ListLookup, Model

SCORING = STAGES.index(scoring_stage)  # type: ignore[arg-type]


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
    if not shadow_arms:
        _run(d, STAGES, traced)
        return d
    _run(d, STAGES[:SCORING], traced)
    before_scoring = d.fork(d.arm)
    _run(d, STAGES[SCORING:], traced)
    d.shadow = [_shadow(before_scoring.fork(shadow)) for shadow in shadow_arms]
    return d


def _run(d: Decision, stages: tuple[Stage, ...], traced: bool) -> None:
    if not traced:
        for stage in stages:
            if stage.skip(d) is None:
                stage.run(d)
        return
    for stage in stages:
        started = time.perf_counter()
        skipped = stage.skip(d)
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
