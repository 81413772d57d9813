"""HTTP adapters for the identity, face and SMS providers.

One pool of keep-alive connections per provider (``service.verification.http``: asyncio and
httptools), capped at ``concurrency`` connections. Not httpx (2.6 ms of CPU per call here, and a
pool that scans every connection for each queued request, encode/httpx#3215), nor aiohttp any
more (about three times this client's CPU per call): ``loadtests/RESULTS.md`` has the figures.

Every call is bounded by what is left of the decision's deadline (waiting for a connection
included); a failed call is retried only if it is safe — the request never left (connection
refused), the provider said 503, or the call is idempotent (identity and face look-ups; never
the SMS check, which consumes the code) — and only if the budget still holds a backoff
(jittered, exponential) plus a useful attempt. Each provider has its own circuit breaker.

Each provider is sent only what it needs: the identity authority gets name, ID number and phone;
the face provider the liveness token and ID number (to fetch the ID photo); the SMS provider the
request id, code and phone; the business registry the USCC, the business name and the
applicant's name and ID number (as its legal representative or operator). Answers are reduced
to their result fields before they reach the decision: no token, image or raw body is kept.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from service import metrics
from service.schemas import DecisionRequest
from service.verification.breaker import CircuitBreaker
from service.verification.http import BadResponse, ConnectionPool, Disconnected, Unreachable

log = logging.getLogger("service.verification")

MIN_ATTEMPT_S = 0.05  # no retry unless at least this much budget remains after the backoff
BACKOFF_S = 0.02


def _identity_payload(r: DecisionRequest) -> dict[str, Any]:
    return {"name": r.applicant.name, "id_number": r.applicant.id_number, "phone": r.applicant.phone}


def _face_payload(r: DecisionRequest) -> dict[str, Any]:
    return {"liveness_token": r.verification.face.liveness_token, "id_number": r.applicant.id_number}


def _sms_payload(r: DecisionRequest) -> dict[str, Any]:
    return {"request_id": r.verification.sms.request_id, "code": r.verification.sms.code,
            "phone": r.applicant.phone}


def _business_payload(r: DecisionRequest) -> dict[str, Any]:
    business = r.business
    return {"uscc": business.uscc if business else None, "name": business.name if business else None,
            "representative": {"name": r.applicant.name, "id_number": r.applicant.id_number}}


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


REGISTRY_STATUSES = ("active", "deregistered", "revoked", "not_found")


def _business_result(body: Any) -> dict[str, Any]:
    """The registry's answer: status, whether the applicant is the legal representative or
    operator, the establishment date, and presence on the abnormal-operations list."""
    if not isinstance(body, dict) or body.get("status") not in REGISTRY_STATUSES:
        raise ValueError("business: no valid 'status'")
    status = body["status"]
    if status == "not_found":
        return {"status": status}
    match, abnormal = body.get("representative_match"), body.get("abnormal_operations")
    if not isinstance(match, bool) or not isinstance(abnormal, bool):
        raise ValueError("business: 'representative_match' and 'abnormal_operations' must be true or false")
    try:
        established = dt.date.fromisoformat(str(body["established"]))
    except (KeyError, ValueError):
        raise ValueError("business: 'established' must be a date") from None
    return {"status": status, "representative_match": match, "established": established, "abnormal": abnormal}


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
    "business": Api("/business/v1/verify", _business_payload, _business_result, True),
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
        self.pool = ConnectionPool(config.url, {"Authorization": f"Bearer {config.credential}"},
                                   config.concurrency)
        self._request_line = self.pool.request_line(self.api.path)
        self._seconds = metrics.PROVIDER_SECONDS.labels(self.name)

    async def aclose(self) -> None:
        await self.pool.close()

    async def check(self, request: DecisionRequest, budget_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + budget_s
        payload = orjson.dumps(self.api.payload(request))
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

    async def _attempt(self, payload: bytes, deadline: float) -> dict[str, Any]:
        started = time.monotonic()
        kind, safe, result = "ok", False, None
        try:
            remaining = deadline - started
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(min(remaining, self.config.timeout_s)):
                status, body = await self.pool.post(self._request_line, payload)
            result, kind, safe = self._read(status, body)
        except TimeoutError:  # it may have reached the provider
            kind, safe = "timeout", self.api.idempotent
        except Unreachable:  # never reached it
            kind, safe = "unavailable", True
        except (Disconnected, BadResponse):  # reset, broken protocol: it may have been processed
            kind, safe = "unavailable", self.api.idempotent
        elapsed = time.monotonic() - started
        self._seconds.observe(elapsed)
        metrics.child(metrics.PROVIDER_CALLS, self.name, kind).inc()
        self.breaker.record(kind != "ok", elapsed)
        if result is None:
            raise _Failure(kind, safe)
        return result

    def _read(self, status: int, body: bytes) -> tuple[dict[str, Any] | None, str, bool]:
        """(result or None, result kind, safe to retry)."""
        if status == 200:
            try:
                return self.api.result(orjson.loads(body)), "ok", False
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
