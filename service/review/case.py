"""A review case's life, as pure functions: what a claim, a release, a verdict, a confirmation
or the clock does to a case. Each returns the case's new row, the audit events and, for a final
decision, the event for the bank's backend; the store runs it with the case locked.

    open ──claim──► claimed ──decide (decline, or approve up to the four-eyes amount)──► decided
      ▲               │  └──decide (approve above it)──► awaiting_confirmation ──claim──► confirming
      └──release/expiry┘                                   ▲      ▲                     │   │
                                                            │      └──release/expiry─────┘   │
         open ◄──────────────reject (back to a first review)─┼──────────────────────────────┘
                                                            └ confirm ──► decided

The key that proposed an approval can never confirm it (four eyes); a decided case never changes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

from service.engine.messages import Message
from service.engine.ruleset import Product
from service.store.review import DECIDED, CaseEvent, CaseRow, Change, OutboxEvent

OPEN, CLAIMED, AWAITING, CONFIRMING = "open", "claimed", "awaiting_confirmation", "confirming"
SYSTEM = "system"  # the key recorded for what the clock does
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class ReviewError(Exception):
    """A request the case's state does not allow; ``kind`` says which, for the API to map."""

    kind = "conflict"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CaseConflict(ReviewError):
    """Not now: claimed by another reviewer, not claimed by you, already decided (HTTP 409)."""


class FourEyes(ReviewError):
    """The same key may not both propose and confirm an approval (HTTP 403)."""

    kind = "four-eyes"


class BadVerdict(ReviewError):
    """The verdict itself is wrong: an undeclared reason, an offer outside the limits (HTTP 422)."""

    kind = "bad-verdict"

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def new_id(prefix: str) -> str:
    """``prefix`` + a ULID (48 bits of milliseconds, 80 random bits): ids sort by time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return prefix + "".join(reversed(chars))


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # approve | decline
    reason: str  # a code declared in products.yaml's review_reasons
    note: str
    amount: float | None = None  # the offer, for an approval
    term_months: int | None = None
    rate_tier: str | None = None


def priority(case: CaseRow, now: dt.datetime) -> str:
    """normal, then high from half the SLA, then urgent from the deadline."""
    if now >= case.due_at:
        return "urgent"
    if now >= case.opened_at + (case.due_at - case.opened_at) / 2:
        return "high"
    return "normal"


def _event(case: CaseRow, before: str | None, key: str, action: str, at: dt.datetime,
           note: str | None = None) -> CaseEvent:
    return CaseEvent(case.case_id, at, key, action, before, case.state, note)


def _lapse(case: CaseRow, now: dt.datetime, events: list[CaseEvent]) -> CaseRow:
    """A lease that ran out hands the case back to the queue, recorded as 'expired'."""
    if case.state in (CLAIMED, CONFIRMING) and case.lease_until is not None and case.lease_until < now:
        back = OPEN if case.state == CLAIMED else AWAITING
        expired = dataclasses.replace(case, state=back, holder=None, lease_until=None, version=case.version + 1)
        events.append(_event(expired, case.state, SYSTEM, "expired", now, f"lease of {case.holder} ran out"))
        return expired
    return case


def expire(case: CaseRow, now: dt.datetime) -> Change:
    events: list[CaseEvent] = []
    return Change(_lapse(case, now, events), events)


def breach(case: CaseRow, now: dt.datetime) -> Change:
    """Mark a case still undecided at its deadline, once (the breach is counted once, fleet-wide)."""
    if case.state == DECIDED or case.breached_at is not None or now < case.due_at:
        return Change(case)
    marked = dataclasses.replace(case, breached_at=now, version=case.version + 1)
    return Change(marked, [_event(marked, case.state, SYSTEM, "breached", now, "the review deadline passed")])


def claim(case: CaseRow, key: str, now: dt.datetime, lease: dt.timedelta) -> Change:
    events: list[CaseEvent] = []
    case = _lapse(case, now, events)
    if case.state == DECIDED:
        raise CaseConflict("the case is already decided")
    if case.state in (CLAIMED, CONFIRMING):
        if case.holder != key:
            raise CaseConflict(f"the case is claimed by {case.holder} until {case.lease_until:%H:%M:%S}Z")
        renewed = dataclasses.replace(case, lease_until=now + lease, version=case.version + 1)
        return Change(renewed, events + [_event(renewed, case.state, key, "renewed", now)])
    if case.state == AWAITING and _proposer(case) == key:
        raise FourEyes("you proposed this approval: a different reviewer must confirm or reject it")
    state = CLAIMED if case.state == OPEN else CONFIRMING
    claimed = dataclasses.replace(case, state=state, holder=key, lease_until=now + lease, version=case.version + 1)
    return Change(claimed, events + [_event(claimed, case.state, key, "claimed", now)])


def release(case: CaseRow, key: str, now: dt.datetime, note: str | None) -> Change:
    events: list[CaseEvent] = []
    case = _holding(case, key, now, events, (CLAIMED, CONFIRMING))
    back = OPEN if case.state == CLAIMED else AWAITING
    released = dataclasses.replace(case, state=back, holder=None, lease_until=None, version=case.version + 1)
    return Change(released, events + [_event(released, case.state, key, "released", now, note)])


def decide(case: CaseRow, key: str, verdict: Verdict, product: Product | None, reasons: dict[str, dict[str, Message]],
           whitelist_limit: float | None, now: dt.datetime) -> Change:
    """A reviewer's verdict on a case they hold; an approval above the product's four-eyes
    amount waits for a second reviewer."""
    events: list[CaseEvent] = []
    case = _holding(case, key, now, events, (CLAIMED,))
    body = check(verdict, product, reasons, whitelist_limit)
    body["by"], body["at"] = key, now.isoformat()
    if verdict.outcome == "approve" and product is not None and product.four_eyes_above is not None \
            and verdict.amount is not None and verdict.amount > product.four_eyes_above:
        waiting = dataclasses.replace(case, state=AWAITING, holder=None, lease_until=None,
                                      proposal=orjson.dumps(body), version=case.version + 1)
        note = (f"approve {verdict.amount:g} ({verdict.reason}) above {product.four_eyes_above:g}: "
                "needs a second reviewer")
        return Change(waiting, events + [_event(waiting, case.state, key, "proposed", now, _note(note, verdict.note))])
    return _finish(case, body, key, None, now, events)


def confirm(case: CaseRow, key: str, now: dt.datetime, note: str | None) -> Change:
    events: list[CaseEvent] = []
    case = _holding(case, key, now, events, (CONFIRMING,))
    if _proposer(case) == key:  # claim refuses it already; checked again where it matters
        raise FourEyes("you proposed this approval: a different reviewer must confirm it")
    assert case.proposal is not None
    return _finish(case, orjson.loads(case.proposal), _proposer(case) or key, key, now, events, note)


def reject(case: CaseRow, key: str, now: dt.datetime, note: str) -> Change:
    """The second reviewer says no: the approval is discarded and the case goes back to a first review."""
    events: list[CaseEvent] = []
    case = _holding(case, key, now, events, (CONFIRMING,))
    reopened = dataclasses.replace(case, state=OPEN, holder=None, lease_until=None, proposal=None,
                                   version=case.version + 1)
    return Change(reopened, events + [_event(reopened, case.state, key, "rejected", now, note)])


def check(verdict: Verdict, product: Product | None, reasons: dict[str, dict[str, Message]],
          whitelist_limit: float | None) -> dict[str, Any]:
    """The verdict as stored, or BadVerdict naming the field: a declared reason for its outcome,
    and an approval's offer inside the product's amounts, terms and tiers and the whitelist limit."""
    declared = reasons.get(verdict.outcome, {})
    if verdict.reason not in declared:
        known = ", ".join(sorted(declared)) or "none declared"
        raise BadVerdict(f"'{verdict.reason}' is not a {verdict.outcome} reason (products.yaml review_reasons: "
                         f"{known})", "reason")
    message = declared[verdict.reason]
    body: dict[str, Any] = {"outcome": verdict.outcome,
                            "reason": {"code": verdict.reason, "message": message.zh, "messages": message.as_dict()},
                            "note": verdict.note, "offer": None}
    if verdict.outcome == "decline":
        if verdict.amount is not None or verdict.term_months is not None or verdict.rate_tier is not None:
            raise BadVerdict("a decline carries no offer", "offer")
        return body
    if product is None:
        raise BadVerdict("the product is no longer offered: the case can only be declined", "outcome")
    if verdict.amount is None or verdict.term_months is None or verdict.rate_tier is None:
        raise BadVerdict("an approval needs an offer: amount, term_months, rate_tier", "offer")
    cap = product.max_amount if whitelist_limit is None else min(product.max_amount, whitelist_limit)
    if not product.min_amount <= verdict.amount <= cap:
        why = "" if whitelist_limit is None or cap == product.max_amount else \
            f", the whitelist limit {whitelist_limit:g}"
        raise BadVerdict(f"the amount must be from {product.min_amount:g} to {cap:g} (the product's limits{why})",
                         "offer.amount")
    if verdict.term_months not in product.terms:
        raise BadVerdict(f"the term must be one of {', '.join(map(str, product.terms))} months", "offer.term_months")
    if verdict.rate_tier not in product.rate_tiers:
        raise BadVerdict(f"the rate tier must be one of {', '.join(sorted(product.rate_tiers))}", "offer.rate_tier")
    body["offer"] = {"amount": float(verdict.amount),
                     "limit": float(whitelist_limit if whitelist_limit is not None else verdict.amount),
                     "term_months": verdict.term_months, "annual_rate": product.rate_tiers[verdict.rate_tier],
                     "rate_tier": verdict.rate_tier}
    return body


def _finish(case: CaseRow, body: dict[str, Any], decided_by: str, confirmed_by: str | None, now: dt.datetime,
            events: list[CaseEvent], note: str | None = None) -> Change:
    done = dataclasses.replace(case, state=DECIDED, holder=None, lease_until=None, verdict=orjson.dumps(body),
                               outcome=body["outcome"], decided_by=decided_by, confirmed_by=confirmed_by,
                               decided_at=now, version=case.version + 1)
    action = "confirmed" if confirmed_by is not None else "decided"
    text = f"{body['outcome']} ({body['reason']['code']})"
    events = events + [_event(done, case.state, confirmed_by or decided_by, action, now,
                              _note(text, note if confirmed_by else body.get("note")))]
    return Change(done, events)


def _holding(case: CaseRow, key: str, now: dt.datetime, events: list[CaseEvent], states: tuple[str, ...]) -> CaseRow:
    """The case, if ``key`` holds a live lease on it in one of ``states``; else CaseConflict."""
    case = _lapse(case, now, events)
    if case.state == DECIDED:
        raise CaseConflict("the case is already decided")
    if case.state not in states or case.holder != key:
        if events:
            raise CaseConflict("your claim expired: claim the case again")
        raise CaseConflict(f"claim the case first (it is {case.state.replace('_', ' ')})")
    return case


def _proposer(case: CaseRow) -> str | None:
    return orjson.loads(case.proposal)["by"] if case.proposal else None


def _note(text: str, note: str | None) -> str:
    return f"{text}: {note}" if note else text


def with_outbox(change: Change, kind: str, payload: dict[str, Any], now: dt.datetime) -> Change:
    """Add the event for the bank's backend to a change (committed with it, delivered later)."""
    event_id = new_id("evt_")
    body = orjson.dumps({"event_id": event_id, "type": kind, "created_at": now, **payload})
    change.outbox.append(OutboxEvent(event_id, kind, change.case.decision_id, now, body))
    return change
