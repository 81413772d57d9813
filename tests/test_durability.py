"""Nothing acknowledged is lost: SIGKILL the server mid-burst, restart, find every 200."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import orjson

from tests.conftest import LiveServer
from tests.factories import CLIENT, application


def test_every_acknowledged_decision_survives_sigkill(tmp_path):
    server = LiveServer(tmp_path / "data").start()
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def worker(worker_id: int) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            for n in range(10_000):
                if stop.is_set():
                    return
                app_id = f"w{worker_id}-{n}"
                try:
                    resp = http.post("/v1/decisions", content=orjson.dumps(application(app_id)), headers=CLIENT)
                except httpx.HTTPError:
                    return  # the server died under us: that request was never acknowledged
                if resp.status_code == 200:
                    with lock:
                        acknowledged[app_id] = resp.content

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(worker, i) for i in range(8)]
        deadline = time.monotonic() + 20
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # SIGKILL: no shutdown hook, no final commit
        stop.set()
        for f in futures:
            f.result()
    assert len(acknowledged) >= 300, "the burst did not get going"

    restarted = LiveServer(tmp_path / "data").start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=5) as http:
            missing = []
            for app_id, body in acknowledged.items():
                resp = http.get("/v1/decisions", params={"application_id": app_id}, headers=CLIENT)
                if resp.status_code != 200 or resp.content != body:
                    missing.append(app_id)
        assert not missing, f"{len(missing)} acknowledged decisions lost, e.g. {missing[:5]}"
    finally:
        restarted.stop()
