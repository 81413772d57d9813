"""HTTP adapters for the identity, face and SMS providers.

Pooled keep-alive ``httpx.AsyncClient``s per provider, capped at ``concurrency`` calls in
flight. The pool is sharded into clients of ``SHARD`` connections, taken in turn: httpcore
scans every connection of a pool for each queued request (encode/httpx#3215), which measured
here as 270 calls/s through one 16-connection client and 110/s through one of 32, against
430–520/s through four to sixteen small ones. Every call is bounded by what is left of the decision's deadline (waiting for a slot
included); a failed call is retried only if it is safe — the request never left (connection
refused), the provider said 503, or the call is idempotent (identity and face look-ups; never
the SMS check, which consumes the code) — and only if the budget still holds a backoff
(jittered, exponential) plus a useful attempt. Each provider has its own circuit breaker.

Each provider is sent only what it needs: the identity authority gets name, ID number and phone;
the face provider the liveness token and ID number (to fetch the ID photo); the SMS provider the
request id, code and phone. Answers are reduced to their result fields before they reach the
decision: no token, image or raw body is kept.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from service import metrics
from service.schemas import DecisionRequest
from service.verification.breaker import CircuitBreaker

log = logging.getLogger("service.verification")

SHARD = 4  # connections per httpx client (see above)
MIN_ATTEMPT_S = 0.05  # no retry unless at least this much budget remains after the backoff
BACKOFF_S = 0.02


def _identity_payload(r: DecisionRequest) -> dict[str, Any]:
    return {"name": r.applicant.name, "id_number": r.applicant.id_number, "phone": r.applicant.phone}


def _face_payload(r: DecisionRequest) -> dict[str, Any]:
    return {"liveness_token": r.verification.face.liveness_token, "id_number": r.applicant.id_number}


def _sms_payload(r: DecisionRequest) -> dict[str, Any]:
    return {"request_id": r.verification.sms.request_id, "code": r.verification.sms.code,
            "phone": r.applicant.phone}


def _identity_result(body: Any) -> dict[str, Any]:
    status = body.get("result") if isinstance(body, dict) else None
    if status not in ("match", "mismatch", "not_found"):
        raise ValueError("identity: no valid 'result'")
    return {"status": status}


def _face_result(body: Any) -> dict[str, Any]:
    liveness = body.get("liveness") if isinstance(body, dict) else None
    score = body.get("similarity") if isinstance(body, dict) else None
    if liveness not in ("pass", "fail") or isinstance(score, bool) or not isinstance(score, (int, float)) \
            or not 0 <= score <= 1:
        raise ValueError("face: no valid 'liveness' and 'similarity'")
    return {"status": liveness, "score": float(score)}


def _sms_result(body: Any) -> dict[str, Any]:
    status = body.get("result") if isinstance(body, dict) else None
    if status not in ("verified", "wrong_code", "expired"):
        raise ValueError("sms: no valid 'result'")
    return {"status": status}


@dataclass(frozen=True)
class Api:
    path: str
    payload: Callable[[DecisionRequest], dict[str, Any]]
    result: Callable[[Any], dict[str, Any]]
    idempotent: bool  # may a call that might have reached the provider be repeated?


APIS = {
    "identity": Api("/identity/v1/verify", _identity_payload, _identity_result, True),
    "face": Api("/face/v1/compare", _face_payload, _face_result, True),
    "sms": Api("/sms/v1/verify", _sms_payload, _sms_result, False),
}


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    url: str
    credential: str  # sent as a bearer token; never logged
    timeout_s: float = 0.8
    concurrency: int = 32
    retries: int = 1


class _Failure(Exception):
    def __init__(self, kind: str, retry_safe: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_safe = retry_safe


class HttpProvider:
    def __init__(self, config: ProviderConfig, breaker: CircuitBreaker,
                 rng: random.Random | None = None) -> None:
        self.name = config.name
        self.config = config
        self.api = APIS[config.name]
        self.breaker = breaker
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(config.concurrency)
        size = min(SHARD, config.concurrency)
        self.clients = [httpx.AsyncClient(
            base_url=config.url, timeout=httpx.Timeout(config.timeout_s),
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            headers={"Authorization": f"Bearer {config.credential}"})
            for _ in range(-(-config.concurrency // size))]
        self._turn = itertools.cycle(self.clients)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()

    async def check(self, request: DecisionRequest, budget_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + budget_s
        payload = self.api.payload(request)
        attempt = 0
        while True:
            if not self.breaker.allow():
                metrics.PROVIDER_CALLS.labels(self.name, "circuit_open").inc()
                return {"status": "error", "error": "circuit_open"}
            try:
                return await self._attempt(payload, deadline)
            except _Failure as failure:
                kind, safe = failure.kind, failure.retry_safe
            attempt += 1
            backoff = BACKOFF_S * 2 ** (attempt - 1) * self._rng.uniform(0.5, 1.5)
            if attempt > self.config.retries or not safe \
                    or deadline - time.monotonic() < backoff + MIN_ATTEMPT_S:
                return {"status": "error", "error": kind}
            await asyncio.sleep(backoff)

    async def _attempt(self, payload: dict[str, Any], deadline: float) -> dict[str, Any]:
        started = time.monotonic()
        kind, safe, result = "ok", False, None
        try:
            remaining = deadline - started
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(min(remaining, self.config.timeout_s)):
                async with self._slots:
                    response = await next(self._turn).post(self.api.path, json=payload)
            result, kind, safe = self._read(response)
        except (TimeoutError, httpx.TimeoutException) as exc:
            # a connect timeout never reached the provider; any other may have
            kind, safe = "timeout", isinstance(exc, httpx.ConnectTimeout) or self.api.idempotent
        except httpx.ConnectError:
            kind, safe = "unavailable", True
        except httpx.TransportError:  # reset, broken protocol: it may have been processed
            kind, safe = "unavailable", self.api.idempotent
        elapsed = time.monotonic() - started
        metrics.PROVIDER_SECONDS.labels(self.name).observe(elapsed)
        metrics.PROVIDER_CALLS.labels(self.name, kind).inc()
        self.breaker.record(kind != "ok", elapsed)
        if result is None:
            raise _Failure(kind, safe)
        return result

    def _read(self, response: httpx.Response) -> tuple[dict[str, Any] | None, str, bool]:
        """(result or None, result kind, safe to retry)."""
        status = response.status_code
        if status == 200:
            try:
                return self.api.result(response.json()), "ok", False
            except ValueError:
                return None, "bad_response", self.api.idempotent
        if status in (401, 403):
            log.error("provider refused our credentials", extra={"fields": {"provider": self.name, "status": status}})
            return None, "unauthorized", False
        if status == 503:
            return None, "unavailable", True  # not processed: safe for every provider
        if status >= 500:
            return None, "unavailable", self.api.idempotent
        return None, "bad_response", False
