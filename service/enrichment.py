"""The enrichment stage: facts from the bank's own data — whitelist, velocity counters.

Each source adds facts under its own prefix (``whitelist.*``, ``velocity.*``). With no source
configured (rule tests) the facts stay null, which every rule reads as "not known". A source
that is configured but fails refers the application (``DATA_UNAVAILABLE``): a bank never
approves without having looked, and never answers 500 for it.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from service.engine.functions import CHINA  # pre-approvals expire at the end of a Beijing-time day
from service.pipeline import DecisionContext
from service.store import Velocity, Whitelist

UNAVAILABLE = "DATA_UNAVAILABLE"
UNAVAILABLE_MESSAGE = "Your application needs a manual review."

log = logging.getLogger("service.enrichment")


class Source(Protocol):
    name: str

    async def enrich(self, ctx: DecisionContext) -> dict[str, Any]:
        """Add facts to ctx.facts; return trace detail (never personal data)."""


class WhitelistSource:
    name = "whitelist"

    def __init__(self, whitelist: Whitelist) -> None:
        self.whitelist = whitelist

    async def enrich(self, ctx: DecisionContext) -> dict[str, Any]:
        request = ctx.request
        entry = self.whitelist.lookup(request.applicant.id_number)
        facts = ctx.facts
        facts["whitelist.listed"] = entry is not None
        if entry is None:
            return {"version": self.whitelist.version, "listed": False}
        expired = entry.valid_until < request.submitted_at.astimezone(CHINA).date()
        facts.update({"whitelist.limit": entry.limit, "whitelist.segment": entry.segment,
                      "whitelist.rate_tier": entry.rate_tier, "whitelist.expired": expired})
        return {"version": self.whitelist.version, "listed": True, "segment": entry.segment,
                "expired": expired}


class VelocitySource:
    name = "velocity"

    def __init__(self, velocity: Velocity) -> None:
        self.velocity = velocity

    async def enrich(self, ctx: DecisionContext) -> dict[str, Any]:
        request = ctx.request
        counts = self.velocity.count_and_record(request.application_id, {
            "device": request.device.device_id, "phone": request.applicant.phone,
            "id": request.applicant.id_number, "ip": request.device.ip})
        ctx.facts.update(counts)
        return {name.removeprefix("velocity."): value for name, value in counts.items()}


class EnrichmentStage:
    name = "enrichment"

    def __init__(self, sources: list[Source] | None = None) -> None:
        self.sources = sources or []

    def skip_reason(self, ctx: DecisionContext) -> str | None:
        return None  # velocity counts every application, whatever its outcome

    async def run(self, ctx: DecisionContext) -> dict[str, Any]:
        detail: dict[str, Any] = {}
        for source in self.sources:
            try:
                detail[source.name] = await source.enrich(ctx)
            except Exception as exc:  # noqa: BLE001 - a store outage refers, never 500s
                log.error("enrichment source failed", extra={"fields": {
                    "source": source.name, "error": type(exc).__name__}})
                ctx.add_reason(UNAVAILABLE, "enrichment", UNAVAILABLE_MESSAGE, "refer")
                detail[source.name] = {"error": type(exc).__name__}
        return {"sources": detail}
