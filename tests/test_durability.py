"""Nothing acknowledged is lost: SIGKILL the server mid-burst, restart, find every 200."""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from service.config import REPO_ROOT
from tests.conftest import LiveServer
from tests.factories import CLIENT, application, as_answered


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
                if resp.status_code != 200 or as_answered(resp.content) != orjson.loads(body):
                    missing.append(app_id)
        assert not missing, f"{len(missing)} acknowledged decisions lost, e.g. {missing[:5]}"
    finally:
        restarted.stop()


def test_workers_opening_a_fresh_data_folder_at_once_all_start(tmp_path):
    """Six processes open one fresh store file at the same instant, five times over: none fails
    with "database is locked" (SQLite does not wait when switching a fresh file to WAL)."""
    import subprocess
    import sys
    import time

    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from service.store.sqlite import connect\n"
        "start = float(sys.argv[2])\n"
        "while time.time() < start: pass\n"
        "conn = connect(Path(sys.argv[1]), 'FULL', 'CREATE TABLE IF NOT EXISTS t (x PRIMARY KEY)')\n"
        "conn.execute('INSERT OR IGNORE INTO t VALUES (1)')\n"
    )
    failures = []
    for round_ in range(5):
        path, start = tmp_path / f"fresh-{round_}.sqlite3", time.time() + 0.6
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(start)], cwd=REPO_ROOT,
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
        failures += [p.communicate(timeout=30)[1][-200:] for p in procs if p.wait(timeout=30)]
    assert not failures, failures


def test_data_files_are_private_to_the_service(live_server):
    """Decisions, velocity, lists and their WAL files hold personal data: no group or other access."""
    resp = httpx.post(live_server.url + "/v1/decisions", json=application("app-private"), headers=CLIENT)
    assert resp.status_code == 200
    data = Path(live_server.env["LOAN_DATA_DIR"])
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name == "decisions.sqlite3" for p in files)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files if p.stat().st_mode & 0o077} == {}
