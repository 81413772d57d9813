"""POST /v1/decisions as a pure ASGI handler: the hot path, kept off FastAPI's request machinery.

FastAPI's routing, dependency solving, query-parameter models, exception and telemetry
middleware cost a tenth of a decision's CPU at full load (py-spy, loadtests/RESULTS.md). This
handler reads the headers, the query string and the body straight from the ASGI messages and
answers with the same problem+json errors. The FastAPI route of the same path stays for the
OpenAPI document and answers with this handler's ``answer`` too, so both give identical responses.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

from service import metrics
from service.api.auth import KeyRing
from service.api.problems import MEDIA_TYPE, ProblemError, from_validation_error, reject_duplicate_keys
from service.api.ratelimit import RateLimiter
from service.decisions import IdempotencyConflict
from service.engine.messages import localise, negotiate
from service.runtime import Runtime
from service.schemas import DecisionRequest
from service.store.decisions import StoreUnavailable

BODY_LIMIT = 64 * 1024
JSON = "application/json"
PATH = "/v1/decisions"
_OVERSIZE = b"\0" * (BODY_LIMIT + 1)
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}  # as FastAPI reads a bool
log = logging.getLogger("service.api")
Answer = tuple[int, bytes, str, dict[str, str]]  # status, body, media type, extra headers


def json_media(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def explain_flag(query: str) -> bool:
    if not query:
        return False
    explain = False
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name != "explain":
            continue
        if value.lower() not in TRUE | FALSE:
            raise ProblemError(422, "validation", "1 parameter(s) failed validation", [{
                "field": "query.explain", "pointer": "/query/explain",
                "message": "Input should be a valid boolean, unable to interpret input"}])
        explain = value.lower() in TRUE
    return explain


class DecisionEndpoint:
    def __init__(self, runtime: Runtime, keys: KeyRing, limiter: RateLimiter) -> None:
        self.runtime = runtime
        self.keys = keys
        self.limiter = limiter

    async def answer(self, authorization: str | None, content_type: str, query: str, body: bytes,
                     received: float, accept_language: str | None = None) -> Answer:
        """The response to one POST /v1/decisions; never raises."""
        try:
            status, content, media, headers = await self._decide(authorization, content_type, query, body, received)
            language = negotiate(accept_language)  # the answer is 200: errors are not translated
            return status, localise(content, language), media, {"Content-Language": language, "Vary": "Accept-Language"}
        except ProblemError as exc:
            return exc.status, exc.body(), MEDIA_TYPE, exc.headers
        except IdempotencyConflict as exc:
            problem = ProblemError(409, "idempotency-conflict", str(exc))
        except StoreUnavailable as exc:
            log.error("decision store unavailable", extra={"fields": {"error": str(exc)}})
            problem = ProblemError(503, "store-unavailable",
                                   "the decision could not be stored; retry with the same body")
        except Exception:  # noqa: BLE001 - the contract: no input produces anything but a problem
            log.exception("unexpected error")
            problem = ProblemError(500, "internal", "unexpected error; it has been logged")
        return problem.status, problem.body(), MEDIA_TYPE, problem.headers

    async def _decide(self, authorization: str | None, content_type: str, query: str, body: bytes,
                      received: float) -> Answer:
        self.limiter.take(self.keys.require(authorization, "client"), "decisions")
        explain = explain_flag(query)
        require_json(content_type)
        require_size(body)
        runtime = self.runtime
        ruleset = runtime.ruleset
        if ruleset is None:
            raise ProblemError(503, "not-ready", "no valid ruleset is loaded")
        try:
            application = DecisionRequest.model_validate_json(body)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        reject_duplicate_keys(body)  # after the schema: the common bad request pays nothing more
        started = time.perf_counter()
        decided = await runtime.decisions.decide(application, ruleset, received)
        if not decided.replayed:
            metrics.DECISION_SECONDS.observe(time.perf_counter() - started)
        record = decided.record
        return 200, record.with_trace() if explain else record.response, JSON, {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> int:
        """Answer one request; returns its status (for the request counter)."""
        received = time.perf_counter()
        authorization, content_type, declared, language = None, "", None, None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"accept-language":
                language = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                declared = value.decode("latin-1")
        try:
            body = await read_body(receive, declared)
        except ClientDisconnected:
            return CLIENT_CLOSED
        status, content, media, headers = await self.answer(
            authorization, content_type, scope.get("query_string", b"").decode("latin-1"), body, received, language)
        raw_headers = [(b"content-type", media.encode()), (b"content-length", str(len(content)).encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})
        return status


def require_json(content_type: str) -> None:
    if not json_media(content_type):
        raise ProblemError(415, "unsupported-media-type", "send the body as 'Content-Type: application/json'")


def require_size(body: bytes) -> None:
    if len(body) > BODY_LIMIT:
        raise ProblemError(413, "body-too-large", f"the body may be at most {BODY_LIMIT} bytes")


class ClientDisconnected(Exception):
    """The client left before its body arrived whole: nothing is decided, nothing answered."""


CLIENT_CLOSED = 499  # the status counted for it (nginx's "client closed request"); never sent


async def read_body(receive: Any, declared: str | None) -> bytes:
    """The request body; once it is known to be too large (by its declared Content-Length, not
    read, or while reading), BODY_LIMIT + 1 bytes that ``require_size`` refuses. Not raising
    here lets the caller check the key before the size. ClientDisconnected if the client left
    before the body ended: a part of a body is never taken for the whole."""
    if declared is not None and declared.isdigit() and int(declared) > BODY_LIMIT:
        return _OVERSIZE
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > BODY_LIMIT:
            return _OVERSIZE
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


PROBES = frozenset(("/healthz", "/readyz", "/metrics"))  # answered whatever the load
OVERLOADED = ProblemError(503, "overloaded", "this worker has too many requests in flight; retry shortly",
                          headers={"Retry-After": "1"})


class FastPath:
    """The outermost ASGI layer: POST /v1/decisions goes straight to the endpoint, past every
    Starlette and FastAPI middleware (FastAPI's own telemetry included), and is counted here
    like every other request; everything else goes to the FastAPI app. Beyond ``max_in_flight``
    requests at once a request is answered 503 with Retry-After at once, probes excepted."""

    def __init__(self, app: Any, endpoint: DecisionEndpoint, max_in_flight: int = 512) -> None:
        self.app = app
        self.endpoint = endpoint
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.in_flight >= self.max_in_flight and path not in PROBES:
            await _send_problem(send, OVERLOADED)
            metrics.child(metrics.HTTP_REQUESTS, "overloaded", scope["method"], "503").inc()
            return
        self.in_flight += 1
        try:
            if path == PATH and scope["method"] == "POST":
                status = 500
                try:
                    status = await self.endpoint(scope, receive, send)
                finally:
                    metrics.child(metrics.HTTP_REQUESTS, PATH, "POST", str(status)).inc()
            else:
                await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _send_problem(send: Any, problem: ProblemError) -> None:
    body = problem.body()
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
