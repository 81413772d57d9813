"""Opening a case for a live referral: its deadline, and what the reviewer will need, captured
when the application is decided (the application is not stored otherwise) with personal data
masked to what the task requires: enough to recognise the applicant on a call, no full ID
number or phone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from service.logs import mask_id_number, mask_phone
from service.review.case import OPEN, new_id
from service.schemas import DecisionRequest
from service.stages.decision import Decision
from service.store.review import CaseRow

DEFAULT_SLA_S = 600.0  # the ten-minute disbursement clock


def mask_name(name: str) -> str:
    """'王小明' → '王**': the family name, enough to greet the applicant."""
    return name[:1] + "*" * (len(name) - 1)


def context(request: DecisionRequest, d: Decision) -> dict[str, Any]:
    a, facts = request.applicant, d.facts
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
        "reasons": d.reasons,
        "flags": list(facts.get("flags", ())),
        "score": d.score,
    }


def open_case(request: DecisionRequest, d: Decision, decision_id: str, decided_at: dt.datetime) -> CaseRow:
    sla = d.product.review_sla_s if d.product is not None else DEFAULT_SLA_S
    submitted = request.submitted_at.astimezone(dt.UTC)
    return CaseRow(case_id=new_id("rev_"), decision_id=decision_id, application_id=request.application_id,
                   product=request.product, state=OPEN, opened_at=decided_at, submitted_at=submitted,
                   due_at=submitted + dt.timedelta(seconds=sla), amount=request.loan.amount,
                   context=orjson.dumps(context(request, d), default=str))
