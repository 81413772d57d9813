"""A lean HTTP/1.1 keep-alive client for the verification providers: asyncio's protocol API and
httptools' response parser (the C parser uvicorn reads requests with).

Why not aiohttp, which the adapters used before: three provider calls were the largest CPU cost
of a decision. Measured by ``loadtests/bench_providers.py`` (the simulator on the other core,
16 calls in flight), aiohttp spends about three times the CPU per call of this client; see
``loadtests/RESULTS.md``. The client does only what the adapters need — POST a small JSON body
on a pooled connection and read a small answer — and every provider fault test
(timeouts, hangs, resets, 5xx, malformed and dripping answers, refused connections, bursts)
runs through it.

Errors are exceptions the adapter maps to its error kinds: ``Unreachable`` (the request never
left: connecting failed), ``Disconnected`` (the connection broke after the request may have been
sent), ``BadResponse`` (not HTTP). Timeouts are the caller's (``asyncio.timeout``); a
connection interrupted mid-exchange is closed, never reused.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any
from urllib.parse import urlsplit

import httptools


class HttpFailure(Exception):
    pass


class Unreachable(HttpFailure):
    """The connection could not be made: the request never left."""


class Disconnected(HttpFailure):
    """The connection closed before the whole answer arrived: the request may have been processed."""


class BadResponse(HttpFailure):
    """The answer was not valid HTTP/1.1."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.reusable = True

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadResponse(str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(Disconnected("the provider closed the connection"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.reusable and self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self.chunks)))
        self.chunks = []

    def _fail(self, exc: HttpFailure) -> None:
        self.reusable = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()


class ConnectionPool:
    """Up to ``limit`` keep-alive connections to one origin; a call beyond it waits for one."""

    def __init__(self, url: str, headers: dict[str, str], limit: int = 32) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.prefix = parts.path.rstrip("/")
        host = self.host if parts.port is None else f"{self.host}:{self.port}"
        fixed = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head = f"Host: {host}\r\n{fixed}Content-Type: application/json\r\nContent-Length: ".encode()
        self.limit = limit
        self._idle: list[_Connection] = []
        self._open = 0  # connections open or being opened
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()

    def request_line(self, path: str) -> bytes:
        return f"POST {self.prefix}{path} HTTP/1.1\r\n".encode()

    async def post(self, request_line: bytes, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of one POST; ``headers``: this request's own, CRLF-terminated lines.
        Raises HttpFailure; cancellation closes the connection."""
        connection = await self._acquire()
        try:
            answer = await connection.exchange(request_line + headers + self._head + b"%d\r\n\r\n" % len(body)
                                               + body)
        except BaseException:
            connection.close()
            self._release(connection)
            raise
        self._release(connection)
        return answer

    async def _acquire(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection
            self._open -= 1
        if self._open >= self.limit:
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                given = waiter.result() if waiter.done() and not waiter.cancelled() else None
                if given is not None:
                    self._release(given)  # handed over just as we gave up
                elif waiter.done() and not waiter.cancelled():
                    self._open -= 1  # a slot handed over just as we gave up
                    self._wake()
                raise
            if handed is not None:
                return handed
        else:
            self._open += 1  # a slot handed over by _release keeps its count
        try:
            _, protocol = await asyncio.get_running_loop().create_connection(
                _Connection, self.host, self.port, ssl=self.ssl)
        except BaseException as exc:
            self._open -= 1
            self._wake()
            if isinstance(exc, (OSError, ssl.SSLError)):
                raise Unreachable(f"{type(exc).__name__}: {exc}") from None
            raise
        return protocol

    def _release(self, connection: _Connection) -> None:
        if connection.reusable:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(connection)
                    return
            self._idle.append(connection)
        else:
            connection.close()
            self._open -= 1
            self._wake()

    def _wake(self) -> None:
        """A slot freed: let the first waiter open a connection of its own."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._open += 1
                waiter.set_result(None)
                return

    def stats(self) -> tuple[int, int, int]:
        """(connections open or opening, idle among them, calls waiting for one)."""
        return self._open, len(self._idle), sum(not w.done() for w in self._waiters)

    async def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
        self._open = 0
