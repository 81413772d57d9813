"""Gather: all the I/O one application needs, concurrently, under the decision's deadline.

- the verification providers (identity, face, SMS) the product requires, over HTTP;
- the bank's own data, on the store thread: the whitelist entry, the application's identifiers
  on the declared lists, and the velocity counts (counted and recorded together). The thread
  takes every application waiting for it at once and records their velocity events in one
  transaction, so under load a batch costs one wake-up and one commit.

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
import logging
import queue
import threading
import time
from collections.abc import Mapping
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
NO_BUSINESS = {"status": "error", "error": "no_business"}


class Provider(Protocol):
    """One external check. Returns result fields only (no images, tokens or raw bodies)."""

    @property
    def name(self) -> str: ...  # identity | face | sms | business

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


@dataclass(slots=True)
class _Lookup:
    """One application's store look-ups, queued for the store thread."""

    request: DecisionRequest
    candidates: dict[str, list[str]]
    future: asyncio.Future[tuple[dict[str, Any], frozenset[tuple[str, str]], dict[str, Any], float]]
    loop: asyncio.AbstractEventLoop
    facts: dict[str, Any] = field(default_factory=dict)
    hits: frozenset[tuple[str, str]] = frozenset()
    detail: dict[str, Any] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


_STOP = object()
BATCH = 64
SOURCES = ("whitelist", "lists", "velocity")


class Gatherer:
    def __init__(self, providers: Mapping[str, Provider], whitelist: Whitelist, velocity: Velocity,
                 lists: Lists) -> None:
        self.providers = providers
        self.whitelist = whitelist
        self.velocity = velocity
        self.lists = lists
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def _store_thread(self) -> None:
        # One thread for the stores: SQLite calls (and a velocity transaction waiting for
        # another process's lock) never block the event loop, and run while providers answer.
        if self._thread is None:
            self._thread = threading.Thread(target=self._run_stores, name="stores", daemon=True)
            self._thread.start()

    async def gather(self, request: DecisionRequest, facts: dict[str, Any], ruleset: Ruleset,
                     deadline: float) -> Gathered:
        """Fill ``facts`` with what the providers and stores say about this application."""
        self._store_thread()
        loop = asyncio.get_running_loop()
        stores = loop.create_future()
        self._queue.put(_Lookup(request, list_candidates(facts, ruleset.list_kinds), stores, loop))
        result = Gathered(Memberships(frozenset()))
        if not validation.declines(facts, ruleset):
            product = ruleset.products.get(request.product)
            started = time.perf_counter()
            checks = await self._verify(request, product.required_checks if product else (), facts, deadline)
            result.detail["verification"] = {"checks": checks}
            result.ms["verification"] = (time.perf_counter() - started) * 1000
        try:  # the stores answer within the decision's deadline, or count as unavailable
            async with asyncio.timeout_at(loop.time() + max(0.0, deadline - time.monotonic())):
                found, hits, detail, ms = await asyncio.shield(stores)
        except TimeoutError:
            log.error("stores did not answer within the deadline")
            found, hits, ms = {"enrichment.unavailable": list(SOURCES)}, frozenset(), 0.0
            detail = {source: {"error": "timeout"} for source in SOURCES}
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
            for key, value in result.items():
                facts[f"verification.{check}.{key}"] = value
        return results

    async def _check(self, check: str, request: DecisionRequest, budget: float) -> dict[str, Any]:
        provider = self.providers.get(check)
        if provider is None:
            return dict(NOT_CONFIGURED)
        if check == "business" and request.business is None:  # validation declines it: screened out
            return dict(NO_BUSINESS)
        return await provider.check(request, budget)

    # --- the store thread ---------------------------------------------------------------------

    def _run_stores(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)  # finish this batch, then stop
                    break
                batch.append(item)
            self._look_up(batch)

    def _look_up(self, batch: list[_Lookup]) -> None:
        """Whitelist and lists for each, velocity for all in one transaction; then one wake-up
        per event loop. A store that fails is named in ``enrichment.unavailable``; its facts
        stay unknown."""
        started = time.perf_counter()
        try:
            entries = self.whitelist.lookup_many([item.request.applicant.id_number for item in batch])
            version = self.whitelist.version
            for item, entry in zip(batch, entries):
                item.facts["whitelist.listed"] = entry is not None
                item.detail["whitelist"] = {"version": version}
                if entry is not None:
                    item.facts.update({
                        "whitelist.limit": entry.limit, "whitelist.segment": entry.segment,
                        "whitelist.rate_tier": entry.rate_tier,
                        # a pre-approval lasts to the end of its day in Beijing time
                        "whitelist.expired": entry.valid_until < item.request.submitted_at.astimezone(CHINA).date()})
        except Exception as exc:  # noqa: BLE001 - a store outage (or no version) refers, never 500s
            source = _failed("whitelist", exc)
            for item in batch:
                item.facts.pop("whitelist.listed", None)
                item.failed.append(source)
        try:
            for item, hits in zip(batch, self.lists.memberships_many([item.candidates for item in batch])):
                item.hits = hits
        except Exception as exc:  # noqa: BLE001
            source = _failed("lists", exc)
            for item in batch:
                item.failed.append(source)
        try:
            counted = self.velocity.count_and_record_many([(i.request.application_id, {
                "device": i.request.device.device_id, "phone": i.request.applicant.phone,
                "id": i.request.applicant.id_number, "ip": i.request.device.ip}) for i in batch])
            for item, counts in zip(batch, counted):
                item.facts.update(counts)
        except Exception as exc:  # noqa: BLE001
            source = _failed("velocity", exc)
            for item in batch:
                item.failed.append(source)
        ms = (time.perf_counter() - started) * 1000 / len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Lookup]] = {}
        for item in batch:
            item.facts["enrichment.unavailable"] = item.failed
            by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items, ms)
            except RuntimeError:  # the loop closed while we looked
                pass


def _settle(items: list[_Lookup], ms: float) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_result((item.facts, item.hits, item.detail, ms))


def _failed(source: str, exc: Exception) -> str:
    log.error("store failed while gathering", extra={"fields": {"source": source, "error": type(exc).__name__}})
    return source
