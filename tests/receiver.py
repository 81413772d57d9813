"""A real HTTP receiver on loopback for callback tests: it records what arrives, checks nothing,
and can be told to answer 5xx, to hang, or be stopped and started again on the same port."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hooks/loan"
        self.mode = "ok"  # ok | fail (HTTP 503) | slow (answers after `delay` seconds)
        self.delay = 3.0
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.attempts += 1
                if owner.mode == "slow":
                    time.sleep(owner.delay)
                status = 503 if owner.mode == "fail" else 204
                if status == 204 and owner.mode == "ok":
                    owner.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
