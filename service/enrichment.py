"""The enrichment stage: facts from the bank's own data — whitelist, velocity counters.

Each source adds facts under its own prefix (``whitelist.*``, ``velocity.*``). With no source
configured the facts stay null, which every rule reads as "not known": a comparison with null
is false, and ``missing(whitelist.listed)`` is true.
"""

from __future__ import annotations

from typing import Any, Protocol

from service.pipeline import DecisionContext


class Source(Protocol):
    name: str

    async def enrich(self, ctx: DecisionContext) -> dict[str, Any]:
        """Add facts to ctx.facts; return trace detail (never personal data)."""


class EnrichmentStage:
    name = "enrichment"

    def __init__(self, sources: list[Source] | None = None) -> None:
        self.sources = sources or []

    def skip_reason(self, ctx: DecisionContext) -> str | None:
        return None  # velocity counts every application, whatever its outcome

    async def run(self, ctx: DecisionContext) -> dict[str, Any]:
        return {"sources": {s.name: await s.enrich(ctx) for s in self.sources}}
