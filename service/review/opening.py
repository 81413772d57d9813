"""Opening a case: for a live referral when it is decided, or later when the applicant asks for
a person to review an automatic decision. The case keeps what the reviewer will need, with
personal data masked to what the task requires: enough to recognise the applicant on a call,
no full ID number or phone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from service.decide import application_facts
from service.engine.ruleset import Ruleset
from service.logs import mask_id_number, mask_name, mask_phone, mask_text
from service.review.case import OPEN, new_id
from service.schemas import DecisionRequest
from service.stages.decision import Decision
from service.store.review import CaseRow

DEFAULT_SLA_S = 600.0  # the ten-minute disbursement clock


def context(request: DecisionRequest, facts: dict[str, Any], reasons: list[dict[str, Any]],
            score: dict[str, Any] | None) -> dict[str, Any]:
    a = request.applicant
    checks = {check: {"status": facts.get(f"verification.{check}.status"),
                      **({"score": facts["verification.face.score"]} if check == "face"
                         and facts.get("verification.face.score") is not None else {})}
              for check in ("identity", "face", "sms", "business")
              if facts.get(f"verification.{check}.status") not in (None, "skipped")}
    return {
        "application": {
            "product": request.product, "channel": request.channel, "submitted_at": request.submitted_at,
            "loan": request.loan.model_dump(),
            "applicant": {"name": mask_name(a.name), "id_number": mask_id_number(a.id_number),
                          "phone": mask_phone(a.phone), "age": facts.get("applicant.age"),
                          "occupation": a.occupation, "monthly_income": a.monthly_income,
                          "employment_years": a.employment_years, "residence_years": a.residence_years,
                          "housing": a.housing, "dependents": a.dependents},
            "business": ({"uscc": request.business.uscc, "name": request.business.name,
                          "annual_revenue": request.business.annual_revenue, "years_operating":
                          facts.get("verification.business.years_operating")} if request.business else None)},
        "whitelist": {key: facts.get(f"whitelist.{key}") for key in ("listed", "limit", "segment", "rate_tier",
                                                                    "expired")},
        "checks": checks,
        "reasons": reasons,
        "flags": list(facts.get("flags", ())),
        "score": score,
    }


def open_case(request: DecisionRequest, d: Decision, decision_id: str, decided_at: dt.datetime) -> CaseRow:
    """The case of a live referral: due within the product's review SLA of the submission. An
    applicant who refused an automated decision gets the automatic suggestion shown to the
    reviewer (``automatic``), never to the bank."""
    sla = d.product.review_sla_s if d.product is not None else DEFAULT_SLA_S
    submitted = request.submitted_at.astimezone(dt.UTC)
    shown = context(request, d.facts, d.reasons, d.score)
    if d.suggested is not None:
        shown["origin"], shown["automatic"] = "no_automated_decision", d.suggested
    return CaseRow(case_id=new_id("rev_"), decision_id=decision_id, application_id=request.application_id,
                   product=request.product, state=OPEN, opened_at=decided_at, submitted_at=submitted,
                   due_at=submitted + dt.timedelta(seconds=sla), amount=request.loan.amount,
                   context=orjson.dumps(shown, default=str))


def requested_case(application: bytes, response: dict[str, Any], ruleset: Ruleset | None, reason: str,
                   now: dt.datetime, due_in: dt.timedelta) -> CaseRow:
    """The case an applicant opens on an automatic decision (PIPL art. 24): what the reviewer
    needs, from the decision's stored application line and answer; due ``due_in`` from now."""
    line = orjson.loads(application)
    recorded, found = line.pop("recorded", {}), line.pop("lists", {})
    request = DecisionRequest.model_validate_json(orjson.dumps(line))
    facts = dict(recorded)
    if ruleset is not None:
        facts = {**application_facts(request, ruleset), **recorded}
    shown = context(request, facts, response["reasons"], response["score"])
    shown["flags"] = sorted(found)  # the lists it was found on; the flags' rules may have changed
    shown["origin"] = "applicant_request"
    shown["request_reason"] = mask_text(reason)
    shown["automatic"] = {"outcome": response["outcome"], "offer": response["offer"]}
    return CaseRow(case_id=new_id("rev_"), decision_id=response["decision_id"],
                   application_id=request.application_id, product=request.product, state=OPEN,
                   opened_at=now, submitted_at=request.submitted_at.astimezone(dt.UTC), due_at=now + due_in,
                   amount=request.loan.amount, context=orjson.dumps(shown, default=str))
