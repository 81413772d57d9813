"""Gather: all the I/O one application needs, concurrently, under the decision's deadline.

- the verification providers (identity, face, SMS) the product requires, over HTTP;
- the bank's own data, in one hop to the store thread: the whitelist entry, the application's
  identifiers on the declared lists, and the velocity counts (counted and recorded together).

What comes back is facts (``verification.*``, ``whitelist.*``, ``velocity.*``,
``enrichment.unavailable``) and list memberships, for ``service.decide``; and the I/O's trace
detail (provider results, the whitelist version, how long each took) for the stages' entries.

No paid provider is called, and no SMS code consumed, for an application that validation
declines: its rules are screened first (they read only the application's own fields). Velocity
counts every application, whatever its outcome. A store that fails is named in
``enrichment.unavailable`` (the decision refers); it never fails the request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.engine.facts import list_candidates
from service.engine.ruleset import Ruleset
from service.identifiers import CHINA
from service.schemas import DecisionRequest
from service.stages import validation
from service.stages.decision import Memberships
from service.stages.verification import PASSED
from service.store import Lists, Velocity, Whitelist

log = logging.getLogger("service.gather")
NOT_CONFIGURED = {"status": "error", "error": "not_configured"}


class Provider(Protocol):
    """One external check. Returns result fields only (no images, tokens or raw bodies)."""

    name: str  # identity | face | sms

    async def check(self, request: DecisionRequest, timeout_s: float) -> dict[str, Any]: ...


@dataclass(slots=True)
class Gathered:
    lists: Memberships
    detail: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage name → trace detail
    ms: dict[str, float] = field(default_factory=dict)  # stage name → time its I/O took

    def annotate(self, trace: list[dict[str, Any]]) -> None:
        """Add the I/O's detail and time to the stages' trace entries."""
        for step in trace:
            name = step["stage"]
            if name in self.ms:
                step["ms"] = round(step["ms"] + self.ms[name], 4)
                if "skipped" not in step["detail"]:
                    _merge(step["detail"], self.detail.get(name, {}))


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into.setdefault(key, value)


class Gatherer:
    def __init__(self, providers: dict[str, Provider], whitelist: Whitelist, velocity: Velocity,
                 lists: Lists) -> None:
        self.providers = providers
        self.whitelist = whitelist
        self.velocity = velocity
        self.lists = lists
        self._stores: concurrent.futures.ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._stores is not None:
            self._stores.shutdown(wait=True)
            self._stores = None

    def _store_thread(self) -> concurrent.futures.ThreadPoolExecutor:
        # One thread for the stores: SQLite calls (and a velocity transaction waiting for
        # another process's lock) never block the event loop, and run while providers answer.
        if self._stores is None:
            self._stores = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stores")
        return self._stores

    async def gather(self, request: DecisionRequest, facts: dict[str, Any], ruleset: Ruleset,
                     deadline: float) -> Gathered:
        """Fill ``facts`` with what the providers and stores say about this application."""
        loop = asyncio.get_running_loop()
        candidates = list_candidates(facts, ruleset.list_kinds)
        stores = loop.run_in_executor(self._store_thread(), self._look_up, request, candidates)
        result = Gathered(Memberships(frozenset()))
        if not validation.declines(facts, ruleset):
            product = ruleset.products.get(request.product)
            started = time.perf_counter()
            checks = await self._verify(request, product.required_checks if product else (), facts, deadline)
            result.detail["verification"] = {"checks": checks}
            result.ms["verification"] = (time.perf_counter() - started) * 1000
        found, hits, detail, ms = await stores
        facts.update(found)
        result.lists = Memberships(hits)
        result.detail["enrichment"] = {"sources": detail}
        result.ms["enrichment"] = ms
        return result

    async def _verify(self, request: DecisionRequest, required: tuple[str, ...], facts: dict[str, Any],
                      deadline: float) -> dict[str, Any]:
        names = [check for check in PASSED if check in required]
        budget = max(0.0, deadline - time.monotonic())
        outcomes = await asyncio.gather(*(self._check(c, request, budget) for c in names))
        results = {c: {"status": "skipped"} for c in PASSED} | dict(zip(names, outcomes))
        for check, result in results.items():
            for key in ("status", "score", "error"):
                if key in result:
                    facts[f"verification.{check}.{key}"] = result[key]
        return results

    async def _check(self, check: str, request: DecisionRequest, budget: float) -> dict[str, Any]:
        provider = self.providers.get(check)
        if provider is None:
            return dict(NOT_CONFIGURED)
        return await provider.check(request, budget)

    def _look_up(self, request: DecisionRequest, candidates: dict[str, list[str]]
                 ) -> tuple[dict[str, Any], frozenset[tuple[str, str]], dict[str, Any], float]:
        """On the store thread: (facts, list memberships, trace detail, ms). A store that fails
        is named in ``enrichment.unavailable``; its facts stay unknown."""
        started = time.perf_counter()
        facts: dict[str, Any] = {}
        detail: dict[str, Any] = {}
        failed: list[str] = []
        hits: frozenset[tuple[str, str]] = frozenset()
        try:
            entry = self.whitelist.lookup(request.applicant.id_number)
            facts["whitelist.listed"] = entry is not None
            detail["whitelist"] = {"version": self.whitelist.version}
            if entry is not None:
                facts.update({"whitelist.limit": entry.limit, "whitelist.segment": entry.segment,
                              "whitelist.rate_tier": entry.rate_tier,
                              # a pre-approval lasts to the end of its day in Beijing time
                              "whitelist.expired": entry.valid_until < request.submitted_at.astimezone(CHINA).date()})
        except Exception as exc:  # noqa: BLE001 - a store outage refers, never 500s
            failed.append(_failed("whitelist", exc))
        try:
            hits = self.lists.memberships(candidates)
        except Exception as exc:  # noqa: BLE001
            failed.append(_failed("lists", exc))
        try:
            facts.update(self.velocity.count_and_record(request.application_id, {
                "device": request.device.device_id, "phone": request.applicant.phone,
                "id": request.applicant.id_number, "ip": request.device.ip}))
        except Exception as exc:  # noqa: BLE001
            failed.append(_failed("velocity", exc))
        facts["enrichment.unavailable"] = failed
        return facts, hits, detail, (time.perf_counter() - started) * 1000


def _failed(source: str, exc: Exception) -> str:
    log.error("store failed while gathering", extra={"fields": {"source": source, "error": type(exc).__name__}})
    return source
