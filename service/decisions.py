"""Taking one application to one durable decision: idempotency, the pipeline, the store.

Idempotency key: the application id. Fingerprint: SHA-256 of the validated request in canonical
form, so a retry that re-serialises the same application (key order, whitespace, 30000 vs
30000.0) is still "the same body".

Three layers keep it to one decision per application id:
1. a stored decision for the id is replayed (same fingerprint) or refused with 409;
2. identical requests racing inside this process wait for the first one's answer (so an SMS
   code is verified once, not thirty times);
3. across replicas, the store's UNIQUE constraint is the claim: a loser answers with the
   winner's stored decision.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import time
from dataclasses import dataclass

import orjson

from service import metrics
from service.pipeline import DecisionContext, ListLookup, Pipeline
from service.problems import ProblemError
from service.engine.ruleset import Ruleset
from service.schemas import DecisionRequest
from service.store.decisions import DecisionRecord, DecisionStore

log = logging.getLogger("service.decisions")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_decision_id() -> str:
    """'dec_' + a ULID: 48 bits of milliseconds then 80 random bits, so ids sort by time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "dec_" + "".join(reversed(chars))


def observe(ctx: DecisionContext, record: DecisionRecord, decided_at: dt.datetime) -> None:
    """Count a new decision: outcome, reasons, rule hits, shadow arms, the SLA clock."""
    product = record.product
    metrics.DECISIONS.labels(record.outcome, product, record.arm).inc()
    for reason in ctx.reasons:
        metrics.REASON_CODES.labels(reason["code"], reason["stage"]).inc()
    for step in ctx.trace:
        detail = step["detail"]
        for rule in detail.get("rules", ()):
            if rule["result"] != "pass":
                metrics.RULE_HITS.labels(rule["id"], rule.get("action", "error"), step["stage"]).inc()
        if step["stage"] == "strategy" and "matched" in detail:
            metrics.RULE_HITS.labels(detail["matched"], record.outcome, "strategy").inc()
    for shadow in ctx.shadow:
        metrics.SHADOW_DECISIONS.labels(shadow["arm"], shadow["outcome"], product,
                                        "yes" if shadow["outcome"] == record.outcome else "no").inc()
    elapsed = max(0.0, (decided_at - ctx.request.submitted_at).total_seconds())  # clocks may skew
    metrics.SLA_ELAPSED.labels(product).observe(elapsed)
    if elapsed > metrics.SLA_SECONDS:
        metrics.SLA_BREACHES.labels(product).inc()


def fingerprint(request: DecisionRequest) -> bytes:
    return hashlib.sha256(request.model_dump_json().encode()).digest()


@dataclass(frozen=True, slots=True)
class Answer:
    record: DecisionRecord
    replayed: bool


class Decisions:
    def __init__(self, pipeline: Pipeline, store: DecisionStore, deadline_s: float) -> None:
        self.pipeline = pipeline
        self.store = store
        self.deadline_s = deadline_s
        self._inflight: dict[str, tuple[bytes, asyncio.Future[Answer]]] = {}

    async def decide(self, request: DecisionRequest, ruleset: Ruleset, lists: ListLookup,
                     received: float) -> Answer:
        key = request.application_id
        digest = fingerprint(request)
        running = self._inflight.get(key)
        if running is not None:
            first_digest, future = running
            answer = await asyncio.shield(future)
            return self._replay(answer.record, digest) if first_digest == digest else self._conflict(key)
        stored = self.store.get_by_application(key)
        if stored is not None:
            return self._replay(stored, digest)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._inflight[key] = (digest, future)
        try:
            answer = await self._decide_new(request, digest, ruleset, lists, received)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(answer)
        finally:
            del self._inflight[key]
        if not answer.replayed:
            return answer
        return self._replay(answer.record, digest)

    async def _decide_new(self, request: DecisionRequest, digest: bytes, ruleset: Ruleset,
                          lists: ListLookup, received: float) -> Answer:
        ctx = self.pipeline.context(request, ruleset, lists, time.monotonic() + self.deadline_s)
        await self.pipeline.run(ctx)
        decision_id = new_decision_id()
        decided_at = dt.datetime.now(dt.timezone.utc)
        body = self.pipeline.response(ctx, decision_id, received, decided_at)
        record = DecisionRecord(
            decision_id=decision_id, application_id=request.application_id, body_sha256=digest,
            outcome=body["outcome"], product=request.product, arm=body["experiment"]["arm"],
            decided_at=decided_at.isoformat(), response=orjson.dumps(body),
            trace=orjson.dumps(ctx.trace, default=str), shadow=orjson.dumps(ctx.shadow))
        stored, created = await self.store.save(record)
        if created:
            observe(ctx, record, decided_at)
            # One line per decision: what was decided and why, on which versions, how fast. No
            # personal data: the application id is the bank's, never an ID number or phone.
            log.info("decision", extra={"fields": {
                "decision_id": decision_id, "application_id": request.application_id,
                "outcome": record.outcome, "product": record.product, "arm": record.arm,
                "reasons": [r["code"] for r in ctx.reasons],
                "versions": body["versions"], "grade": ctx.score["grade"] if ctx.score else None,
                "shadow": {s["arm"]: s["outcome"] for s in ctx.shadow} or None,
                "elapsed_ms": body["elapsed_ms"],
                "stages_ms": {s["stage"]: s["ms"] for s in ctx.trace}}})
        return Answer(stored, replayed=not created)

    def _replay(self, stored: DecisionRecord, digest: bytes) -> Answer:
        if stored.body_sha256 != digest:
            return self._conflict(stored.application_id)
        metrics.IDEMPOTENT_REPLAYS.labels("replayed").inc()
        return Answer(stored, replayed=True)

    @staticmethod
    def _conflict(application_id: str) -> Answer:
        metrics.IDEMPOTENT_REPLAYS.labels("conflict").inc()
        raise ProblemError(409, "idempotency-conflict",
                           f"application_id '{application_id}' was already decided with a different body")
