"""Connections a worker will not let hold it: a request must arrive whole within a deadline.

uvicorn times out a connection only between requests (keep-alive); one that sends nothing, or
its headers or body a byte at a time (slow loris), stays open for ever, and enough of them use
up the worker's file descriptors so that real requests fail. This protocol — uvicorn's own,
for httptools — gives every request ``request_timeout_s`` from the connection (or the previous
answer) to its last byte, then closes the connection.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class DeadlineHttp(HttpToolsProtocol):
    request_timeout_s = 10.0
    _request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()  # the request is here; deciding it has the decision's own deadline
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request gets the same time

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._request_timer = self.loop.call_later(self.request_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _too_slow(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def with_request_timeout(seconds: float) -> type[DeadlineHttp]:
    return type("DeadlineHttp", (DeadlineHttp,), {"request_timeout_s": seconds})


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (a connection is a file);
    returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft
