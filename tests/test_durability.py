"""Nothing acknowledged is lost: SIGKILL the server mid-burst, restart, find every 200."""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time

import httpx
import orjson
import pytest

from tests.conftest import LiveServer
from tests.factories import CLIENT, application


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_every_acknowledged_decision_survives_a_stop(tmp_path, sig):
    """SIGKILL: no shutdown hook runs. SIGTERM: in-flight requests drain, the writer commits
    what is queued and the store closes cleanly. Either way every 200 is on disk."""
    server = LiveServer(tmp_path / "data").start()
    statuses: set[int] = set()
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
                statuses.add(resp.status_code)
                if resp.status_code == 200:
                    with lock:
                        acknowledged[app_id] = resp.content

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(worker, i) for i in range(8)]
        deadline = time.monotonic() + 20
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.proc.send_signal(sig)
        stop.set()
        exit_code = server.proc.wait(15)
        for f in futures:
            f.result()
    assert len(acknowledged) >= 300, "the burst did not get going"
    assert statuses <= {200, 503}, statuses  # a draining server may refuse, never fail
    assert exit_code == -sig  # uvicorn re-raises SIGTERM once its graceful shutdown is done
    # A clean close checkpoints the WAL into the database and removes it; SIGKILL leaves it.
    assert (tmp_path / "data" / "decisions.sqlite3-wal").exists() == (sig == signal.SIGKILL)

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
