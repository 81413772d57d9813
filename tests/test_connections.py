"""Connections cannot take a worker down: silent and slow-loris connections are closed after the
request deadline, real requests go on being answered among thousands of them, and beyond the
in-flight cap a request gets 503 with Retry-After at once (probes excepted)."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import orjson

from service.api.app import create_app
from service.config import Settings
from service.runtime import Runtime
from tests.conftest import LiveServer

from .factories import CLIENT, application


def test_two_thousand_idle_and_slow_loris_connections_do_not_stop_real_requests(tmp_path):
    server = LiveServer(tmp_path / "data", env={"LOAN_REQUEST_TIMEOUT_S": "3"}).start()
    held: list[socket.socket] = []
    try:
        for n in range(2000):
            sock = socket.create_connection(("127.0.0.1", server.port))
            if n % 2:  # slow loris: the start of a request, then nothing
                sock.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n")
            held.append(sock)
        with httpx.Client(base_url=server.url, headers=CLIENT, timeout=10) as client:
            statuses = [client.post("/v1/decisions", content=orjson.dumps(application(f"held-{n}")),
                                    headers={"Content-Type": "application/json"}).status_code for n in range(20)]
        assert statuses == [200] * 20
        time.sleep(3.5)  # the request deadline passes: the server closes what never finished
        closed = 0
        for sock in held[:200]:
            sock.settimeout(2)
            try:
                closed += sock.recv(1) == b""
            except (TimeoutError, OSError):
                pass
        assert closed == 200
    finally:
        for sock in held:
            sock.close()
        server.stop()


async def test_beyond_the_in_flight_cap_a_request_gets_503_with_retry_after(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", max_in_flight=1)
    runtime = Runtime.from_settings(settings)
    runtime.start()
    release = asyncio.Event()
    gather = runtime.gatherer.gather

    async def held(*args):
        await release.wait()
        return await gather(*args)

    runtime.gatherer.gather = held  # type: ignore[method-assign]
    try:
        transport = httpx.ASGITransport(app=create_app(settings, runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = asyncio.ensure_future(client.post("/v1/decisions", json=application("cap-1"), headers=CLIENT))
            await asyncio.sleep(0.05)
            second = await client.post("/v1/decisions", json=application("cap-2"), headers=CLIENT)
            assert second.status_code == 503 and second.headers["retry-after"] == "1"
            assert second.headers["content-type"] == "application/problem+json"
            assert (await client.get("/healthz")).status_code == 200  # probes are always answered
            release.set()
            assert (await first).status_code == 200
            assert (await client.post("/v1/decisions", json=application("cap-2"), headers=CLIENT)).status_code == 200
        assert runtime.store.get_by_application("cap-2") is not None
    finally:
        runtime.stop()
