"""Taking one application to one durable decision: claim, gather, decide, store.

Idempotency key: the application id. Fingerprint: SHA-256 of the validated request in canonical
form, so a retry that re-serialises the same application (key order, whitespace, 30000 vs
30000.0) is still "the same body".

Three layers keep it to one decision per application id:
1. a stored decision for the id is replayed (same fingerprint) or refused (IdempotencyConflict);
2. identical requests racing inside this process wait for the first one's answer (so an SMS
   code is verified once, not thirty times);
3. across replicas, the store's claim (before any provider is called) makes racing copies wait
   for the first replica's decision; the UNIQUE constraint on the stored decision is the final
   word: a loser answers with the winner's stored decision.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from service import __version__, metrics
from service.decide import application_facts, decide
from service.engine.facts import RECORDABLE
from service.engine.ruleset import Ruleset
from service.gather import Gatherer
from service.review.opening import open_case
from service.schemas import DecisionRequest
from service.stages.decision import Decision, Memberships, Model
from service.store.decisions import Claim, DecisionRecord, DecisionStore, StoreUnavailable

log = logging.getLogger("service.decisions")
SLA = dt.timedelta(minutes=10)
# Of the decision's deadline, what gathering leaves for deciding and the durable commit, so that
# the answer itself goes out within the deadline even when a provider hangs.
ANSWER_RESERVE_S = 0.025
# A claim outlives the decision's deadline by this (the commit, a slow answer) before another
# replica may take it over; a request waiting for another replica's decision looks this often.
CLAIM_MARGIN_S = 2.0
CLAIM_POLL_S = 0.02
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class IdempotencyConflict(Exception):
    """The application id was already decided on a different body."""

    def __init__(self, application_id: str) -> None:
        super().__init__(f"application_id '{application_id}' was already decided with a different body")
        self.application_id = application_id


def new_decision_id() -> str:
    """'dec_' + a ULID: 48 bits of milliseconds then 80 random bits, so ids sort by time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "dec_" + "".join(reversed(chars))


def fingerprint(request: DecisionRequest) -> bytes:
    return hashlib.sha256(request.model_dump_json().encode()).digest()


def response(d: Decision, request: DecisionRequest, decision_id: str, received: float,
             decided_at: dt.datetime) -> dict[str, Any]:
    """The answer, as ../shared/API.md spells it."""
    outcome = d.outcome.label
    return {
        "decision_id": decision_id,
        "application_id": request.application_id,
        "outcome": outcome,
        "offer": d.offer if outcome == "approve" else None,
        "reasons": d.reasons,
        "score": d.score,
        "versions": {"ruleset": d.ruleset.version, "model": d.score["model"] if d.score else None,
                     "service": __version__},
        "experiment": {"arm": d.arm.name},
        "submitted_at": request.submitted_at,
        "decided_at": decided_at,
        "disburse_by": request.submitted_at + SLA,
        "elapsed_ms": round((time.perf_counter() - received) * 1000, 3),
    }


def observe(d: Decision, record: DecisionRecord, decided_at: dt.datetime, submitted_at: dt.datetime) -> None:
    """Count a new decision: stages, model, outcome, reasons, rule hits, shadow arms, the SLA clock.
    The product label is a code from products.yaml or ``unknown``, never what a client sent."""
    child = metrics.child
    product = d.product.code if d.product is not None else "unknown"
    child(metrics.DECISIONS, record.outcome, product, record.arm).inc()
    for reason in d.reasons:
        child(metrics.REASON_CODES, reason["code"], reason["stage"]).inc()
    for step in d.trace:
        stage, detail = step["stage"], step["detail"]
        child(metrics.STAGE_SECONDS, stage).observe(step["ms"] / 1000)
        for rule in detail.get("rules", ()):
            if rule["result"] != "pass":
                child(metrics.RULE_HITS, rule["id"], rule.get("action", "error"), stage).inc()
        if stage == "strategy" and "matched" in detail:
            child(metrics.RULE_HITS, detail["matched"], record.outcome, "strategy").inc()
        if stage == "scoring" and "refused" in detail:
            child(metrics.MODEL_REFUSED, detail["name"]).inc()
    for name, (score, _) in d.scores.items():  # the models that ran, shadow arms' included
        child(metrics.MODEL_POINTS, name).observe(score["points"])
    for shadow in d.shadow:
        child(metrics.SHADOW_DECISIONS, shadow["arm"], shadow["outcome"], product,
              "yes" if shadow["outcome"] == record.outcome else "no").inc()
    if record.case is not None:
        return  # a referral's clock stops at its review's final decision (service.review.channel)
    elapsed = max(0.0, (decided_at - submitted_at).total_seconds())  # clocks may skew
    child(metrics.SLA_ELAPSED, product).observe(elapsed)
    if elapsed > metrics.SLA_SECONDS:
        child(metrics.SLA_BREACHES, product).inc()


def recorded(request: DecisionRequest, facts: dict[str, Any], lists: Memberships) -> bytes:
    """The application as a backtest line: the request, the stage facts gathered from outside it
    (providers, whitelist, velocity) and the list entries it was found on."""
    line = request.model_dump(mode="json")
    line["recorded"] = {name: facts[name] for name in RECORDABLE if facts.get(name) is not None}
    found: dict[str, list[str]] = {}
    for name, value in lists.hits:
        found.setdefault(name, []).append(str(value))
    line["lists"] = found
    return orjson.dumps(line)


@dataclass(frozen=True, slots=True)
class Answer:
    record: DecisionRecord
    replayed: bool


class Decisions:
    def __init__(self, gatherer: Gatherer, store: DecisionStore, models: Mapping[str, Model],
                 deadline_s: float) -> None:
        self.gatherer = gatherer
        self.store = store
        self.models = models
        self.deadline_s = deadline_s
        self._inflight: dict[str, asyncio.Future[Answer]] = {}

    async def decide(self, request: DecisionRequest, ruleset: Ruleset, received: float) -> Answer:
        """The decision for ``request``: a new one, or the one stored for its application id.
        Raises IdempotencyConflict, or StoreUnavailable when it cannot be made durable."""
        key = request.application_id
        digest = fingerprint(request)
        running = self._inflight.get(key)
        if running is not None:
            # Compared with what was *stored* (another replica may have stored this very body
            # while the first request here carried another), not with the first request's body.
            answer = await asyncio.shield(running)
            return self._replay(answer.record, digest)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            stored = await self._claim(key, digest)
            if stored is not None:
                answer = Answer(stored, replayed=True)
            else:
                answer = await self._decide_new(request, digest, ruleset, received)
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

    async def _claim(self, application_id: str, digest: bytes) -> DecisionRecord | None:
        """The decision stored for the id, or None once this request may decide it. While
        another replica decides it, wait for its decision; if that replica dies, its claim
        lapses after a deadline and a margin, and this request takes it over."""
        ttl = self.deadline_s + CLAIM_MARGIN_S
        give_up = time.monotonic() + 2 * ttl
        while True:
            claim = await self.store.claim(application_id, digest, ttl)
            if isinstance(claim, DecisionRecord):
                return claim
            if claim is Claim.OURS:
                return None
            if time.monotonic() > give_up:
                raise StoreUnavailable(f"application '{application_id}' is still being decided elsewhere")
            await asyncio.sleep(CLAIM_POLL_S)

    async def _decide_new(self, request: DecisionRequest, digest: bytes, ruleset: Ruleset,
                          received: float) -> Answer:
        facts = application_facts(request, ruleset)
        # The deadline counts from the request's arrival, not from here.
        deadline = time.monotonic() + self.deadline_s - ANSWER_RESERVE_S - (time.perf_counter() - received)
        gathered = await self.gatherer.gather(request, facts, ruleset, deadline)
        d = decide(facts, ruleset, models=self.models, lists=gathered.lists, shadows=True)
        gathered.annotate(d.trace)
        decision_id = new_decision_id()
        decided_at = dt.datetime.now(dt.UTC)
        body = response(d, request, decision_id, received, decided_at)
        record = DecisionRecord(
            decision_id=decision_id, application_id=request.application_id, body_sha256=digest,
            outcome=body["outcome"], product=request.product, arm=d.arm.name,
            decided_at=decided_at.isoformat(), response=orjson.dumps(body),
            trace=orjson.dumps(d.trace, default=str), shadow=orjson.dumps(d.shadow),
            application=recorded(request, facts, gathered.lists),
            # A live referral opens its review case in the decision's own transaction.
            case=open_case(request, d, decision_id, decided_at) if body["outcome"] == "refer" else None)
        stored, created = await self.store.save(record)
        if created:
            observe(d, record, decided_at, request.submitted_at)
            # One line per decision: what was decided and why, on which versions, how fast. No
            # personal data: the application id is the bank's, never an ID number or phone.
            log.info("decision", extra={"fields": {
                "decision_id": decision_id, "application_id": request.application_id,
                "outcome": record.outcome, "product": record.product, "arm": record.arm,
                "reasons": [r["code"] for r in d.reasons],
                "versions": body["versions"], "grade": d.score["grade"] if d.score else None,
                "shadow": {s["arm"]: s["outcome"] for s in d.shadow} or None,
                "elapsed_ms": body["elapsed_ms"],
                "stages_ms": {s["stage"]: s["ms"] for s in d.trace}}})
        return Answer(stored, replayed=not created)

    def _replay(self, stored: DecisionRecord, digest: bytes) -> Answer:
        if stored.body_sha256 != digest:
            return self._conflict(stored.application_id)
        metrics.IDEMPOTENT_REPLAYS.labels("replayed").inc()
        return Answer(stored, replayed=True)

    @staticmethod
    def _conflict(application_id: str) -> Answer:
        metrics.IDEMPOTENT_REPLAYS.labels("conflict").inc()
        raise IdempotencyConflict(application_id)
