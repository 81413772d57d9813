"""The verification stage: run the checks the product requires, concurrently, under the deadline.

Each check's result lands in the facts as ``verification.<check>.*`` so that what it means for
the decision is written in YAML rules. A required check with no provider configured is an
``error`` (``not_configured``), never a pass: nothing is approved without every required check.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from service.pipeline import DecisionContext
from service.schemas import DecisionRequest

PASSED = {"identity": "match", "face": "pass", "sms": "verified"}


class Provider(Protocol):
    """One external check. Returns result fields only (no images, tokens or raw bodies)."""

    name: str  # identity | face | sms

    async def check(self, request: DecisionRequest, timeout_s: float) -> dict[str, Any]: ...


class VerificationStage:
    name = "verification"

    def __init__(self, providers: dict[str, Provider] | None = None) -> None:
        self.providers = providers or {}

    def skip_reason(self, ctx: DecisionContext) -> str | None:
        return "declined by validation" if ctx.declined else None

    async def run(self, ctx: DecisionContext) -> dict[str, Any]:
        required = ctx.product.required_checks if ctx.product else ()
        facts = ctx.facts
        facts["verification.required"] = list(required)
        if facts.get("verification.identity.status") is not None:  # recorded (backtest, rule test)
            results = {c: {"status": facts[f"verification.{c}.status"]} for c in PASSED}
        else:
            budget = max(0.0, ctx.deadline - time.monotonic())
            names = [c for c in PASSED if c in required]
            outcomes = await asyncio.gather(*(self._one(c, ctx.request, budget) for c in names))
            results = {c: {"status": "skipped"} for c in PASSED} | dict(zip(names, outcomes))
            for check, result in results.items():
                for key in ("status", "score", "error"):
                    if key in result:
                        facts[f"verification.{check}.{key}"] = result[key]
        facts["verification.failed"] = [
            c for c in required if results[c]["status"] not in (PASSED[c], "error")]
        facts["verification.unavailable"] = [c for c in required if results[c]["status"] == "error"]
        return {"checks": results}

    async def _one(self, check: str, request: DecisionRequest, budget: float) -> dict[str, Any]:
        provider = self.providers.get(check)
        if provider is None:
            return {"status": "error", "error": "not_configured"}
        return await provider.check(request, budget)
