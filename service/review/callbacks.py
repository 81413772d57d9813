"""Pushing final decisions to the bank's backend: from the durable outbox, signed, retried with
backoff, at least once.

An event is written to the outbox in the same transaction as the verdict that produced it, so a
crash between the two cannot lose it. Every replica runs a dispatcher; an event due for a try is
leased (its next attempt moved past the request timeout) before it is sent, so two dispatchers
do not send it at the same moment. A receiver may still see an event twice (delivered, then the
dispatcher died before recording it): each carries an ``event_id`` to de-duplicate on.

Signature (in ``X-Loan-Signature``): ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.
The receiver recomputes it over the raw body and rejects a stale ``t``, which stops replays.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from service import metrics
from service.store.decisions import StoreUnavailable
from service.store.review import OutboxEvent, ReviewStore
from service.verification.http import ConnectionPool, HttpFailure, Unreachable

log = logging.getLogger("service.review.callbacks")
BATCH = 32
IDLE_POLL_S = 0.5  # how often an idle dispatcher looks for events other replicas wrote
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff(attempts: int) -> float:
    """Seconds before the next try: doubling from one second to five minutes, with jitter so that
    a receiver coming back is not hit by every event at once."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)


class Callbacks:
    def __init__(self, store: ReviewStore, url: str, secret: bytes, timeout_s: float,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.store = store
        self.secret = secret
        self.timeout_s = timeout_s
        self.now = now
        parts = urlsplit(url)
        self.line = f"POST {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n".encode()
        self.pool = ConnectionPool(url, {"User-Agent": "loan-decision-callbacks"}, limit=8)
        self.wake = asyncio.Event()

    async def run(self) -> None:
        """Deliver until cancelled."""
        while True:
            try:
                sent = await self.deliver_due()
            except StoreUnavailable as exc:
                log.warning("outbox unreadable; retrying", extra={"fields": {"error": str(exc)}})
                sent = 0
            if sent == 0:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), IDLE_POLL_S)
                except TimeoutError:
                    pass

    async def deliver_due(self) -> int:
        """Send every event whose time has come; returns how many were tried."""
        events = await asyncio.to_thread(self.store.due_events, self.now(), self.timeout_s + 5, BATCH)
        if events:
            await asyncio.gather(*(self._send(e) for e in events))
        return len(events)

    async def _send(self, event: OutboxEvent) -> None:
        timestamp = int(time.time())
        headers = (f"X-Loan-Event-Id: {event.event_id}\r\nX-Loan-Event-Type: {event.kind}\r\n"
                   f"X-Loan-Signature: {signature(self.secret, timestamp, event.payload)}\r\n").encode()
        attempts = event.attempts + 1
        try:
            async with asyncio.timeout(self.timeout_s):
                status, _ = await self.pool.post(self.line, event.payload, headers)
            result = "delivered" if 200 <= status < 300 else "http_error"
            error = None if result == "delivered" else f"HTTP {status}"
        except TimeoutError:
            result, error = "timeout", f"no answer within {self.timeout_s:g} s"
        except Unreachable as exc:
            result, error = "unreachable", str(exc)
        except HttpFailure as exc:
            result, error = "http_error", f"{type(exc).__name__}: {exc}"
        metrics.child(metrics.CALLBACK_DELIVERIES, result).inc()
        try:
            if error is None:
                await asyncio.to_thread(self.store.delivered, event.event_id, self.now(), attempts)
            else:
                wait = backoff(attempts)
                await asyncio.to_thread(self.store.failed, event.event_id, attempts,
                                        self.now() + dt.timedelta(seconds=wait), error)
                log.warning("callback not delivered", extra={"fields": {
                    "event_id": event.event_id, "decision_id": event.decision_id, "attempts": attempts,
                    "error": error, "retry_in_s": round(wait, 1)}})
        except StoreUnavailable:
            pass  # the lease lapses and the event is tried again: at least once

    async def gauges(self) -> None:
        count, oldest = await asyncio.to_thread(self.store.pending)
        metrics.CALLBACK_PENDING.set(count)
        metrics.CALLBACK_OLDEST_SECONDS.set((self.now() - oldest).total_seconds() if oldest else 0.0)

    async def close(self) -> None:
        await self.pool.close()
