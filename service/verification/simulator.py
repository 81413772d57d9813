"""``loan-decision providers simulate``: the identity, face, SMS and business-registry APIs on loopback,
with deterministic outcomes and configurable latency and failures, for local runs, tests and
load tests. It speaks plain HTTP/1.1 with keep-alive over asyncio streams, so that it can also
misbehave the way real providers do: answer late, never answer, reset the connection, send a
broken body, or drip the body a byte at a time.

Endpoints (every call needs an ``Authorization`` header, any value; without one: 401):

    POST /identity/v1/verify  {name, id_number, phone?}      → {"result": match|mismatch|not_found}
    POST /face/v1/compare     {liveness_token, id_number}    → {"liveness": pass|fail, "similarity": 0–1}
    POST /sms/v1/verify       {request_id, code, phone}      → {"result": verified|wrong_code|expired}
    POST /business/v1/verify  {uscc, name, representative: {name, id_number}}
                              → {"status": active|deregistered|revoked|not_found,
                                 "representative_match": bool, "established": "YYYY-MM-DD",
                                 "abnormal_operations": bool}
    POST /_sim/behaviour      {provider: {latency_ms, jitter_ms, failure, failure_rate}}

Outcomes, by input:
- identity: ID sequence digits (the 15th–17th characters) ``999`` → not_found, ``998`` →
  mismatch; anything else → match.
- face: a token starting ``tok-spoof`` → liveness fail; ``tok-low`` → similarity 0.60;
  ``tok-good`` → 0.97; any other token → 0.90–0.99, fixed by its hash.
- sms: code ``000000`` → wrong_code; a request id starting ``expired`` → expired; else verified.
- business, by the USCC's 15th–17th characters: ``999`` → not_found, ``998`` → revoked, ``997``
  → deregistered, ``996`` → active but on the abnormal-operations list, ``995`` → active but
  the applicant is not its legal representative or operator, ``994`` → established 120 days
  ago; anything else → active, the applicant its representative, not listed, established on
  a date between 2010 and 2020 fixed by the code's hash.

Failures (``failure`` with ``failure_rate`` of the calls, drawn from a seeded generator):
``timeout`` (answers after 30 s), ``hang`` (never answers), ``5xx`` (503), ``reset`` (closes the
connection with a TCP reset), ``malformed`` (200 with a body that is not JSON), ``slow_drip``
(a valid answer, one byte every 200 ms).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

FAILURES = ("timeout", "hang", "5xx", "reset", "malformed", "slow_drip")
PATHS = {"/identity/v1/verify": "identity", "/face/v1/compare": "face", "/sms/v1/verify": "sms",
         "/business/v1/verify": "business"}


@dataclass
class Behaviour:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0  # uniform ± around latency_ms
    failure: str | None = None
    failure_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.failure is not None and self.failure not in FAILURES:
            raise ValueError(f"failure must be one of {', '.join(FAILURES)}")
        if not 0 <= self.failure_rate <= 1 or self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("failure_rate in [0, 1]; latency_ms and jitter_ms ≥ 0")


def identity_outcome(body: dict[str, Any]) -> dict[str, Any]:
    sequence = str(body.get("id_number", ""))[14:17]
    return {"result": {"999": "not_found", "998": "mismatch"}.get(sequence, "match")}


def face_outcome(body: dict[str, Any]) -> dict[str, Any]:
    token = str(body.get("liveness_token", ""))
    if token.startswith("tok-spoof"):
        return {"liveness": "fail", "similarity": 0.0}
    if token.startswith("tok-low"):
        return {"liveness": "pass", "similarity": 0.60}
    if token.startswith("tok-good"):
        return {"liveness": "pass", "similarity": 0.97}
    return {"liveness": "pass", "similarity": round(0.90 + hashlib.sha256(token.encode()).digest()[0] / 255 * 0.09, 4)}


def sms_outcome(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("code") == "000000":
        return {"result": "wrong_code"}
    if str(body.get("request_id", "")).startswith("expired"):
        return {"result": "expired"}
    return {"result": "verified"}


def business_outcome(body: dict[str, Any]) -> dict[str, Any]:
    uscc = str(body.get("uscc", ""))
    marker = uscc[14:17]
    status = {"999": "not_found", "998": "revoked", "997": "deregistered"}.get(marker, "active")
    if status == "not_found":
        return {"status": status}
    if marker == "994":
        established = dt.date.today() - dt.timedelta(days=120)
    else:
        established = dt.date(2010, 1, 1) + dt.timedelta(days=hashlib.sha256(uscc.encode()).digest()[0] * 14)
    return {"status": status, "representative_match": marker != "995", "established": established.isoformat(),
            "abnormal_operations": marker == "996"}


OUTCOMES = {"identity": identity_outcome, "face": face_outcome, "sms": sms_outcome,
            "business": business_outcome}


@dataclass
class Simulator:
    behaviours: dict[str, Behaviour] = field(default_factory=lambda: {p: Behaviour() for p in OUTCOMES})
    seed: int = 0
    calls: list[tuple[str, float, float]] = field(default_factory=list)  # (provider, start, end)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # what each was sent

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._handlers):  # hung and dripping answers end with the simulator
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, provider: str, **settings: Any) -> None:
        self.behaviours[provider] = Behaviour(**settings)

    # --- HTTP ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                keep = await self._answer(writer, method, path, headers, body)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if not writer.is_closing():
                writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, method: str, path: str,
                      headers: dict[str, str], raw: bytes) -> bool:
        if method == "POST" and path == "/_sim/behaviour":
            try:
                for provider, settings in json.loads(raw).items():
                    if provider not in OUTCOMES:
                        raise ValueError(f"unknown provider {provider}")
                    self.set(provider, **settings)
            except (ValueError, TypeError) as exc:
                return await self._send(writer, 422, {"error": str(exc)})
            return await self._send(writer, 200, {p: vars(b) for p, b in self.behaviours.items()})
        provider = PATHS.get(path)
        if method != "POST" or provider is None:
            return await self._send(writer, 404, {"error": "not found"})
        if "authorization" not in headers:
            return await self._send(writer, 401, {"error": "credentials required"})
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return await self._send(writer, 400, {"error": "body must be a JSON object"})
        started = time.monotonic()
        self.received.append((provider, body))
        behaviour = self.behaviours.get(provider, Behaviour())
        delay = behaviour.latency_ms + self._random.uniform(-behaviour.jitter_ms, behaviour.jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        failure = behaviour.failure if self._random.random() < behaviour.failure_rate else None
        try:
            return await self._respond(writer, provider, body, failure)
        finally:
            self.calls.append((provider, started, time.monotonic()))

    async def _respond(self, writer: asyncio.StreamWriter, provider: str, body: dict[str, Any],
                       failure: str | None) -> bool:
        outcome = OUTCOMES[provider](body)
        if failure == "timeout":
            await asyncio.sleep(30)
        elif failure == "hang":
            await asyncio.sleep(3600)
            return False
        elif failure == "5xx":
            return await self._send(writer, 503, {"error": "temporarily unavailable"})
        elif failure == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        elif failure == "malformed":
            return await self._send(writer, 200, None, raw=b'{"result": "match"')
        elif failure == "slow_drip":
            payload = json.dumps(outcome).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(payload))
            for byte in payload:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)
            return True
        return await self._send(writer, 200, outcome)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, body: Any, raw: bytes | None = None) -> bool:
        payload = raw if raw is not None else json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                  422: "Unprocessable Entity", 503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        await writer.drain()
        return True


async def serve_forever(host: str, port: int, behaviours: dict[str, Behaviour], seed: int) -> None:
    simulator = Simulator(behaviours, seed)
    await simulator.start(host, port)
    print(f"provider simulator on http://{host}:{simulator.port} "
          f"(identity, face, sms, business; POST /_sim/behaviour to change latency and failures)", flush=True)
    await asyncio.Event().wait()
