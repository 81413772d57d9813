"""A circuit breaker per provider: stop calling a provider that is failing or slow, so that
decisions fail fast (and refer) instead of each waiting out the deadline, and probe it back.

The decision is made on *rates* over a sliding window of the last ``window`` calls, never on
a raw count: it opens when at least ``min_calls`` calls are in the window and either the failure
rate or the slow-call rate reaches its threshold. Open, it refuses every call for ``open_s``;
then it is half-open and lets ``probes`` calls through: if they all succeed it closes (with an
empty window), if one fails it opens again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from service import metrics

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
GAUGE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

log = logging.getLogger("service.verification.breaker")


@dataclass(frozen=True)
class BreakerPolicy:
    window: int = 20
    min_calls: int = 5
    failure_rate: float = 0.5
    slow_rate: float = 0.8
    slow_s: float = 1.0
    open_s: float = 5.0
    probes: int = 3


class CircuitBreaker:
    def __init__(self, name: str, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.policy = policy
        self.clock = clock
        self.state = CLOSED
        self._calls: deque[tuple[bool, bool]] = deque(maxlen=policy.window)  # (failed, slow)
        self._failed = self._slow = 0  # among _calls, kept as they come and go
        self._opened_at = 0.0
        self._probes_left = 0
        self._probes_ok = 0
        metrics.BREAKER_STATE.labels(name).set(GAUGE_VALUE[CLOSED])

    def allow(self) -> bool:
        """May a call go out now? (A half-open breaker admits only its probes.)"""
        if self.state == OPEN:
            if self.clock() - self._opened_at < self.policy.open_s:
                return False
            self._move(HALF_OPEN)
            self._probes_left, self._probes_ok = self.policy.probes, 0
        if self.state == HALF_OPEN:
            if self._probes_left == 0:
                return False
            self._probes_left -= 1
        return True

    def record(self, failed: bool, seconds: float) -> None:
        slow = seconds >= self.policy.slow_s
        if self.state == HALF_OPEN:
            if failed or slow:
                self._open()
                return
            self._probes_ok += 1
            if self._probes_ok >= self.policy.probes:
                self._calls.clear()
                self._failed = self._slow = 0
                self._move(CLOSED)
            return
        if self.state == OPEN:
            return  # a call that was already out when it opened
        calls = self._calls
        if len(calls) == calls.maxlen:
            gone_failed, gone_slow = calls[0]
            self._failed -= gone_failed
            self._slow -= gone_slow
        calls.append((failed, slow))
        self._failed += failed
        self._slow += slow
        count = len(calls)
        if count < self.policy.min_calls:
            return
        if self._failed / count >= self.policy.failure_rate or self._slow / count >= self.policy.slow_rate:
            self._open()

    def _open(self) -> None:
        self._opened_at = self.clock()
        self._move(OPEN)

    def _move(self, state: str) -> None:
        if state == self.state:
            return
        log.warning("circuit breaker %s", state, extra={"fields": {
            "provider": self.name, "from": self.state, "to": state}})
        self.state = state
        metrics.BREAKER_STATE.labels(self.name).set(GAUGE_VALUE[state])
        metrics.BREAKER_TRANSITIONS.labels(self.name, state).inc()
