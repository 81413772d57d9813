"""Stage 2, verification: what the identity, face, SMS and business-registry checks said, as
facts for the rules.

The checks themselves are I/O and happen while gathering (``service.gather``); their results
arrive as ``verification.<check>.status`` (+ ``.score``, ``.error``) facts — or are recorded, in
rule tests and backtests. This stage says which required checks failed and which could not be
made, so that what that means for the decision is written in YAML rules. A required check with
no result is unavailable, never a pass: nothing is approved without every required check.
"""

from __future__ import annotations

from typing import Any

from service.identifiers import CHINA
from service.stages.decision import Decision

NAME = "verification"
PASSED = {"identity": "match", "face": "pass", "sms": "verified", "business": "active"}  # passing status
FIELDS = {  # what each check answers, as verification.<check>.<field> facts
    "identity": ("status", "error"), "face": ("status", "score", "error"), "sms": ("status", "error"),
    "business": ("status", "error", "representative_match", "established", "abnormal"),
}
UNRECORDED = {"status": "error", "error": "not_recorded"}
DAYS_A_YEAR = 365.25


def skip(d: Decision) -> str | None:
    return "declined by validation" if d.declined else None


def run(d: Decision) -> dict[str, Any]:
    facts = d.facts
    required = d.product.required_checks if d.product else ()
    results: dict[str, dict[str, Any]] = {}
    for check in PASSED:
        prefix = f"verification.{check}."
        if facts[prefix + "status"] is None:
            if check not in required:
                results[check] = {"status": "skipped"}
                continue
            for key, value in UNRECORDED.items():
                facts[prefix + key] = value
        results[check] = {key: facts[prefix + key] for key in FIELDS[check] if facts[prefix + key] is not None}
    established = facts["verification.business.established"]
    if established is not None:
        submitted = facts["submitted_at"].astimezone(CHINA).date()
        facts["verification.business.years_operating"] = round((submitted - established).days / DAYS_A_YEAR, 2)
    facts["verification.required"] = list(required)
    facts["verification.failed"] = [
        c for c in required if results[c]["status"] not in (PASSED[c], "error")]
    facts["verification.unavailable"] = [c for c in required if results[c]["status"] == "error"]
    return {"checks": results}
