"""The manual-review channel as the API and the clock use it: the queue, a case with what a
reviewer needs, claims and verdicts, the final answer beside the automatic one.

Every change goes through ``ReviewStore.transition`` (the case locked, one transaction) on a
worker thread, never on the event loop. A final verdict commits with its outbox event when
callbacks are configured; ``service.review.callbacks`` delivers it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import orjson

from service import metrics
from service.engine.ruleset import Ruleset
from service.review import case as cases
from service.review.case import BadVerdict, Verdict, priority
from service.review.opening import requested_case
from service.store.decisions import DecisionRecord, DecisionStore
from service.store.review import DECIDED, LIVE_STATES, CaseEvent, CaseNotFound, CaseRow, Change, ReviewStore

log = logging.getLogger("service.review")
FINAL_EVENT = "decision.final"
STATES = (*LIVE_STATES, DECIDED)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BadCursor(ValueError):
    pass


class ReviewUnavailable(cases.CaseConflict):
    """A review cannot be requested for this decision (409), and why."""

    kind = "review-unavailable"


def encode_cursor(case: CaseRow) -> str:
    return base64.urlsafe_b64encode(f"{case.due_at.isoformat()}|{case.case_id}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[dt.datetime, str]:
    try:
        due, case_id = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().split("|")
        return dt.datetime.fromisoformat(due), case_id
    except (ValueError, UnicodeDecodeError):
        raise BadCursor("not a cursor this service gave") from None


def summary(case: CaseRow, now: dt.datetime) -> dict[str, Any]:
    """A case as the queue lists it."""
    return {"case_id": case.case_id, "decision_id": case.decision_id, "application_id": case.application_id,
            "product": case.product, "state": case.state, "amount": case.amount,
            "priority": priority(case, now) if case.state != DECIDED else None,
            "opened_at": case.opened_at, "due_at": case.due_at,
            "seconds_left": round((case.due_at - now).total_seconds(), 1),
            "holder": case.holder, "lease_until": case.lease_until, "breached": case.breached_at is not None,
            "proposal": orjson.loads(case.proposal) if case.proposal else None}


def review_block(case: CaseRow) -> dict[str, Any]:
    """What the bank's backend sees of a review: state, who, when, why (no reviewer's note)."""
    verdict = orjson.loads(case.verdict) if case.verdict else None
    return {"case_id": case.case_id, "state": case.state, "due_at": case.due_at,
            "decided_by": case.decided_by, "confirmed_by": case.confirmed_by, "decided_at": case.decided_at,
            "reason": verdict["reason"] if verdict else None}


def final_view(record: DecisionRecord, case: CaseRow | None, explain: bool = False) -> bytes:
    """The decision as GET /v1/decisions answers it: for a reviewed one, the final outcome and
    offer, the automatic outcome kept beside it under ``automatic``, and a ``review`` block."""
    raw = record.with_trace() if explain else record.response
    if case is None:
        return raw
    body = orjson.loads(raw)
    body["automatic"] = {"outcome": body["outcome"], "offer": body["offer"], "reasons": body["reasons"],
                         "decided_at": body["decided_at"]}
    body["review"] = review_block(case)
    if case.state == DECIDED and case.verdict is not None:
        verdict = orjson.loads(case.verdict)
        body["outcome"], body["offer"] = verdict["outcome"], verdict["offer"]
        body["reasons"] = [] if verdict["outcome"] == "approve" else [
            {"code": verdict["reason"]["code"], "stage": "review", "message": verdict["reason"]["message"],
             "messages": verdict["reason"].get("messages")}]
        body["decided_at"] = case.decided_at
    return orjson.dumps(body)


class ReviewChannel:
    def __init__(self, store: ReviewStore, decisions: DecisionStore, ruleset: Callable[[], Ruleset | None],
                 lease_s: float, callbacks: bool, now: Callable[[], dt.datetime] = utcnow) -> None:
        self.store = store
        self.decisions = decisions
        self.ruleset = ruleset
        self.lease = dt.timedelta(seconds=lease_s)
        self.callbacks = callbacks  # write final decisions to the outbox
        self.now = now
        self.on_final: Callable[[], None] = lambda: None  # wakes the callback dispatcher

    # --- reads -----------------------------------------------------------------------------

    async def queue(self, state: str | None, product: str | None, cursor: str | None,
                    limit: int) -> dict[str, Any]:
        states = (state,) if state else LIVE_STATES
        after = decode_cursor(cursor) if cursor else None
        rows = await asyncio.to_thread(self.store.queue, states, product, after, limit + 1)
        now = self.now()
        more = len(rows) > limit
        rows = rows[:limit]
        return {"cases": [summary(c, now) for c in rows],
                "next_cursor": encode_cursor(rows[-1]) if more else None}

    async def case(self, case_id: str) -> dict[str, Any] | None:
        found = await asyncio.to_thread(self.store.get, case_id)
        if found is None:
            return None
        record = await self.decisions.find(found.decision_id)
        history = await asyncio.to_thread(self.store.history, case_id)
        context = orjson.loads(found.context)
        # What automation said: a referral; or, when the applicant asked for a person (or
        # refused automation), the outcome it gave or would have given.
        automatic = context.pop("automatic", None) or {"outcome": record.outcome if record else "refer",
                                                         "offer": None}
        return {**summary(found, self.now()), "origin": "referral", "request_reason": None, **context,
                "verdict": orjson.loads(found.verdict) if found.verdict else None,
                "automatic": {**automatic, "decided_at": record.decided_at if record else None,
                              "versions": orjson.loads(record.response)["versions"] if record else None},
                "trace": orjson.loads(record.trace) if record else None,
                "history": [event_view(e) for e in history]}

    async def history(self, case_id: str) -> list[dict[str, Any]] | None:
        if await asyncio.to_thread(self.store.get, case_id) is None:
            return None
        return [event_view(e) for e in await asyncio.to_thread(self.store.history, case_id)]

    async def decision(self, record: DecisionRecord | None, explain: bool) -> bytes | None:
        """GET /v1/decisions: the stored answer, with the review's final word when referred."""
        if record is None:
            return None
        # A referral's case, or a review the applicant asked for on an automatic decision.
        case = await asyncio.to_thread(self.store.by_decision, record.decision_id)
        return final_view(record, case, explain)

    async def request_review(self, record: DecisionRecord, key: str, reason: str, window: dt.timedelta,
                             due_in: dt.timedelta) -> dict[str, Any]:
        """Open a case on an automatic decision at the applicant's request: once, within
        ``window`` of the decision. Raises ReviewUnavailable (409) saying why not."""
        response = orjson.loads(record.response)
        now = self.now()
        if record.outcome == "refer":
            raise ReviewUnavailable("the decision was referred: a person decides it already")
        if now - dt.datetime.fromisoformat(record.decided_at) > window:
            raise ReviewUnavailable(f"a review may be requested within {window.days} days of the decision")
        application = await self.decisions.application_of(record.decision_id)
        if application is None:
            raise ReviewUnavailable("the decision was stored without its application: it cannot be reviewed here")
        case = requested_case(application, response, self.ruleset(), reason, now, due_in)
        event = CaseEvent(case.case_id, now, key, "opened", None, case.state, "review requested by the applicant")
        if not await asyncio.to_thread(self.store.open_case, case, event):
            raise ReviewUnavailable("a review of this decision was already requested")
        metrics.child(metrics.REVIEW_TRANSITIONS, "requested").inc()
        return summary(case, now)

    # --- changes ---------------------------------------------------------------------------

    async def claim(self, case_id: str, key: str) -> dict[str, Any]:
        return await self._change(case_id, key, lambda c, now: cases.claim(c, key, now, self.lease))

    async def release(self, case_id: str, key: str, note: str | None) -> dict[str, Any]:
        return await self._change(case_id, key, lambda c, now: cases.release(c, key, now, note))

    async def decide(self, case_id: str, key: str, verdict: Verdict) -> dict[str, Any]:
        ruleset = self.ruleset()
        if ruleset is None:
            raise BadVerdict("no ruleset is loaded: the products' limits are unknown", "outcome")

        def change(c: CaseRow, now: dt.datetime) -> Change:
            limit = orjson.loads(c.context).get("whitelist", {}).get("limit")
            return cases.decide(c, key, verdict, ruleset.products.get(c.product), ruleset.review_reasons,
                                limit, now)
        return await self._change(case_id, key, change)

    async def confirm(self, case_id: str, key: str, note: str | None) -> dict[str, Any]:
        return await self._change(case_id, key, lambda c, now: cases.confirm(c, key, now, note))

    async def reject(self, case_id: str, key: str, note: str) -> dict[str, Any]:
        return await self._change(case_id, key, lambda c, now: cases.reject(c, key, now, note))

    async def _change(self, case_id: str, key: str,
                      step: Callable[[CaseRow, dt.datetime], Change]) -> dict[str, Any]:
        """Run ``step`` on the locked case; a final verdict adds the bank's event."""
        found = await asyncio.to_thread(self.store.get, case_id)
        if found is None:
            raise CaseNotFound(case_id)
        record = await self.decisions.find(found.decision_id)

        def work(locked: CaseRow) -> Change:
            now = self.now()
            result = step(locked, now)
            if result.case.state == DECIDED and locked.state != DECIDED and self.callbacks and record is not None:
                cases.with_outbox(result, FINAL_EVENT, {"decision": orjson.loads(final_view(record, result.case))},
                                  now)
            return result
        result = await asyncio.to_thread(self.store.transition, case_id, work)
        self._observe(result, key)
        return summary(result.case, self.now())

    def _observe(self, result: Change, key: str) -> None:
        case = result.case
        product = self._product_label(case.product)
        for event in result.events:
            metrics.child(metrics.REVIEW_TRANSITIONS, event.action).inc()
            if event.action == "breached":
                metrics.child(metrics.REVIEW_BREACHES, product).inc()
        if any(e.action in ("decided", "confirmed") for e in result.events) and case.decided_at is not None:
            metrics.child(metrics.REVIEW_DECISIONS, case.outcome or "unknown", product).inc()
            metrics.child(metrics.REVIEW_SECONDS, product).observe((case.decided_at - case.opened_at).total_seconds())
            # The ten-minute clock of a referred application stops at its final decision.
            elapsed = max(0.0, (case.decided_at - case.submitted_at).total_seconds())
            metrics.child(metrics.SLA_ELAPSED, product).observe(elapsed)
            if elapsed > metrics.SLA_SECONDS:
                metrics.child(metrics.SLA_BREACHES, product).inc()
            log.info("case decided", extra={"fields": {
                "case_id": case.case_id, "decision_id": case.decision_id, "outcome": case.outcome,
                "decided_by": case.decided_by, "confirmed_by": case.confirmed_by, "key": key,
                "seconds_open": round((case.decided_at - case.opened_at).total_seconds(), 1)}})
        if result.outbox:
            self.on_final()

    def _product_label(self, product: str) -> str:
        ruleset = self.ruleset()
        return product if ruleset is not None and product in ruleset.products else "unknown"

    # --- the clock -------------------------------------------------------------------------

    async def tick(self) -> None:
        """Hand back lapsed claims, count deadline breaches (once, fleet-wide), and refresh the
        queue gauges. Every replica ticks; the case lock makes each change happen once."""
        now = self.now()
        for case_id in await asyncio.to_thread(self.store.lapsed, now):
            result = await asyncio.to_thread(self.store.transition, case_id, lambda c: cases.expire(c, self.now()))
            self._observe(result, cases.SYSTEM)
        for case_id in await asyncio.to_thread(self.store.overdue, now):
            result = await asyncio.to_thread(self.store.transition, case_id, lambda c: cases.breach(c, self.now()))
            self._observe(result, cases.SYSTEM)
        depth = await asyncio.to_thread(self.store.depth)
        ruleset = self.ruleset()
        products = sorted(ruleset.products) if ruleset is not None else []
        counts = {(p, s): 0 for p in products for s in LIVE_STATES}
        oldest: dict[str, float] = dict.fromkeys(products, 0.0)
        for product, state, count, opened in depth:
            label = self._product_label(product)
            counts[(label, state)] = counts.get((label, state), 0) + count
            if opened is not None:
                oldest[label] = max(oldest.get(label, 0.0), (now - opened).total_seconds())
        for (product, state), count in counts.items():
            metrics.child(metrics.REVIEW_CASES, product, state).set(count)
        for product, age in oldest.items():
            metrics.child(metrics.REVIEW_OLDEST_SECONDS, product).set(age)


def event_view(event: CaseEvent) -> dict[str, Any]:
    return {"at": event.at, "key": event.key, "action": event.action, "from": event.from_state,
            "to": event.to_state, "note": event.note}
