"""Rate limits per API key and endpoint class, as token buckets in this worker.

A key's calls of one class (``decisions``, ``admin``, ``reviews``) draw from one bucket that
refills at ``rate`` a second up to ``burst``; an empty bucket is a 429 with ``Retry-After``. The
buckets live in each worker: with N replicas behind a balancer a key may make up to N times the
rate, which is what a per-replica guard against a runaway caller needs (the bank's gateway holds
the contractual quota).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.api.problems import ProblemError


@dataclass(frozen=True)
class Limit:
    rate: float  # calls a second, sustained
    burst: float  # calls at once


class RateLimiter:
    def __init__(self, limits: dict[str, tuple[float, float]], clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = {kind: Limit(rate, burst) for kind, (rate, burst) in limits.items()}
        self.clock = clock
        self._buckets: dict[tuple[str, str], list[float]] = {}  # (key name, class) → [tokens, at]

    def take(self, key: str, kind: str) -> None:
        """One call of ``kind`` by ``key``, or ProblemError 429 saying when to retry."""
        limit = self.limits.get(kind)
        if limit is None:
            return
        now = self.clock()
        bucket = self._buckets.get((key, kind))
        if bucket is None:
            bucket = self._buckets[(key, kind)] = [limit.burst, now]
        tokens = min(limit.burst, bucket[0] + (now - bucket[1]) * limit.rate)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return
        bucket[0] = tokens
        wait = math.ceil((1 - tokens) / limit.rate)
        raise ProblemError(429, "rate-limited", f"this key's {kind} calls are over {limit.rate:g}/s; "
                                                f"retry in {wait} s", headers={"Retry-After": str(wait)})
