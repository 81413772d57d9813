"""Benchmark the decision endpoint over real HTTP on loopback.

Starts ``loan-decision serve`` (one worker) pinned to CPU 0 with its own data folder, then drives
it from this process pinned to CPU 1:

- fixed rates (open loop): requests are sent on a schedule and latency is measured from the
  *scheduled* send time, so a stalled server cannot hide its queueing (no coordinated omission);
- maximum rate (closed loop): N keep-alive connections send back to back.

Every request is a distinct, valid application (unique application id), so each one runs the
whole pipeline and a durable commit. Writes JSON with the machine and date to loadtests/results/.

    .venv/bin/python loadtests/bench.py [--rates 200,500,1000] [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.factories import CLIENT_KEY, application  # noqa: E402

RESULTS = ROOT / "loadtests" / "results"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def write_result(label: str, record: dict) -> Path:
    """Save a run as loadtests/results/<UTC time>-<label>.json, stamped with date and machine."""
    now = dt.datetime.now(dt.timezone.utc)
    record = {"date": now.isoformat(timespec="seconds"), "machine": machine(), **record}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{now:%Y-%m-%dT%H%M}-{label}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Requests:
    """Pre-encoded HTTP/1.1 requests, each with a fresh application id and device id (so the
    device velocity rule does not decline them all; phone, ID number and IP stay the same)."""

    def __init__(self, port: int, path: str = "/v1/decisions") -> None:
        self.counter = 0
        self.run = os.urandom(4).hex()
        template = json.dumps(application("APPID", device={"device_id": "dev-APPID"})).encode()
        self.parts = template.split(b"APPID")
        self.prefix = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       f"Authorization: Bearer {CLIENT_KEY}\r\nContent-Type: application/json\r\n").encode()

    def next(self) -> bytes:
        self.counter += 1
        body = f"b{self.run}-{self.counter}".encode().join(self.parts)
        return self.prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def fixed_rate(port: int, rate: float, seconds: float, connections: int) -> dict:
    reqs = Requests(port)
    total = int(rate * seconds)
    interval = 1.0 / rate
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    start = time.perf_counter() + 0.05

    async def one(scheduled: float) -> None:
        reader, writer = await pool.get()
        try:
            writer.write(reqs.next())
            status = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError):
            status = 0
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1
        pool.put_nowait((reader, writer))

    tasks = []
    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait()[1].close()
    return summary(f"fixed {rate:g}/s", latencies, statuses, elapsed, offered=rate)


async def max_rate(port: int, seconds: float, connections: int, path: str = "/v1/decisions") -> dict:
    reqs = Requests(port, path)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    async def conn() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            writer.write(reqs.next())
            status = await read_response(reader)
            latencies.append(time.perf_counter() - sent)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(conn() for _ in range(connections)))
    return summary(f"max rate, {connections} connections", latencies, statuses,
                   time.perf_counter() - start)


def summary(name: str, latencies: list[float], statuses: dict[int, int], elapsed: float,
            offered: float | None = None) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=1000) if len(ms) > 1 else ms * 999

    def pct(p: float) -> float:
        return round(q[int(p * 10) - 1], 3)

    out = {"name": name, "offered_per_s": offered, "requests": len(ms),
           "throughput_per_s": round(len(ms) / elapsed, 1), "statuses": statuses,
           "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": round(ms[-1], 3)}
    print(json.dumps(out), flush=True)
    return out


def start_server(port: int, data_dir: str, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "service.cli", "serve"]
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "LOAN_PORT": str(port),
                                                 "LOAN_DATA_DIR": data_dir, "LOAN_LOG_LEVEL": "WARNING", **env})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the service did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="200,500,1000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--label", default="decisions")
    parser.add_argument("--providers-latency-ms", type=float, default=None,
                        help="verify through the provider simulator (on CPU 1) at this latency; "
                             "default: no providers (every check is not_configured)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    port = free_port()
    env, simulator = {}, None
    if args.providers_latency_ms is not None:
        sim_port = free_port()
        simulator = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "providers", "simulate", "--port", str(sim_port),
             "--latency-ms", str(args.providers_latency_ms)], cwd=ROOT, stdout=subprocess.DEVNULL)
        env = {"LOAN_PROVIDERS_URL": f"http://127.0.0.1:{sim_port}", "LOAN_PROVIDER_KEY": "bench"}
    with tempfile.TemporaryDirectory() as data_dir:
        server = start_server(port, data_dir, env)
        try:
            asyncio.run(max_rate(port, 2, args.connections))  # warm-up
            runs = [asyncio.run(fixed_rate(port, float(r), args.seconds, args.connections))
                    for r in args.rates.split(",") if r]
            runs.append(asyncio.run(max_rate(port, args.seconds, args.connections)))
        finally:
            server.terminate()
            server.wait(15)
            if simulator is not None:
                simulator.terminate()
                simulator.wait(15)
    write_result(args.label, {
              "setup": {"server": "one uvicorn worker pinned to CPU 0 (uvloop, httptools)",
                        "providers": (f"simulator on CPU 1 at {args.providers_latency_ms:g} ms"
                                      if simulator else "none (not_configured)"),
                        "load": "this process pinned to CPU 1", "durability": "SQLite WAL synchronous=FULL, group commit",
                        "seconds": args.seconds, "connections": args.connections},
              "runs": runs})


if __name__ == "__main__":
    main()
