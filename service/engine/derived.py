"""Facts computed once per decision from the request and its product, before any rule runs."""

from __future__ import annotations

from typing import Any

from service.engine.regions import km_from_province
from service.identifiers import CHINA, age_on, birth_date_from_id
from service.schemas import DecisionRequest


def monthly_instalment(amount: float, months: int, annual_rate: float) -> float:
    """Level (annuity) instalment; the plain share of principal when the rate is zero."""
    r = annual_rate / 12
    return amount / months if r == 0 else amount * r / (1 - (1 + r) ** -months)


def derive(request: DecisionRequest, facts: dict[str, Any], reference_rate: float | None) -> None:
    applicant = request.applicant
    # The submission's hour and day in Beijing time whatever offset the client wrote: the same
    # instant is the same night, the same birthday and the same whitelist day.
    submitted = request.submitted_at.astimezone(CHINA)
    birth = birth_date_from_id(applicant.id_number)
    facts["applicant.birth_date"] = birth
    facts["applicant.age"] = age_on(birth, submitted.date())
    facts["applicant.id_region"] = applicant.id_number[:6]
    facts["applicant.id_province"] = applicant.id_number[:2]
    instalment = monthly_instalment(request.loan.amount, request.loan.term_months, reference_rate or 0.0)
    facts["loan.instalment"] = instalment
    income = applicant.monthly_income
    facts["loan.instalment_to_income"] = instalment / income if income > 0 else None
    parties = request.related_parties or ()
    facts["related.id_numbers"] = [p.id_number for p in parties if p.id_number is not None]
    facts["related.phones"] = [p.phone for p in parties if p.phone is not None]
    facts["related.relations"] = [p.relation for p in parties]
    facts["attachments.types"] = [a.type for a in request.attachments or ()]
    facts["submitted.hour"] = submitted.hour
    gps = request.device.gps
    facts["device.gps_km_from_id_province"] = (
        km_from_province(applicant.id_number[:2], gps.lat, gps.lon) if gps else None)
