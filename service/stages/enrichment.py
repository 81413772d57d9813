"""Stage 3, enrichment: the bank's own data about the applicant — the pre-approved whitelist
and velocity counts — as facts for the rules.

The look-ups are I/O and happen while gathering (``service.gather``); they arrive as
``whitelist.*`` and ``velocity.*`` facts, or recorded ones in rule tests and backtests, where an
unrecorded fact is unknown (null) and every rule reads it as "not known". A store that failed
while gathering is named in ``enrichment.unavailable`` and refers the application
(``DATA_UNAVAILABLE``): a bank never approves without having looked, and never answers 500.
"""

from __future__ import annotations

from typing import Any

from service.stages.decision import REVIEW_MESSAGE, Decision

NAME = "enrichment"
UNAVAILABLE = "DATA_UNAVAILABLE"
VELOCITY = [f"velocity.{kind}_{window}" for kind in ("device", "phone", "id", "ip")
            for window in ("1h", "24h", "7d", "30d")]


def skip(d: Decision) -> str | None:
    return None  # velocity counts every application, whatever its outcome


def run(d: Decision) -> dict[str, Any]:
    facts = d.facts
    sources: dict[str, Any] = {}
    listed = facts["whitelist.listed"]
    if listed is not None:
        sources["whitelist"] = {"listed": listed, "segment": facts["whitelist.segment"],
                                "expired": facts["whitelist.expired"]} if listed else {"listed": False}
    counts = {name.removeprefix("velocity."): facts[name] for name in VELOCITY if facts[name] is not None}
    if counts:
        sources["velocity"] = counts
    unavailable = facts["enrichment.unavailable"]
    for name in unavailable or ():
        sources[name] = {"error": "unavailable"}
    if unavailable:
        d.add_reason(UNAVAILABLE, NAME, REVIEW_MESSAGE, "refer")
    return {"sources": sources}
