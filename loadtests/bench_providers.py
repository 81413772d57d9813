"""CPU per provider call: aiohttp (the adapters' client until 2026-11-29) against the lean
keep-alive client on httptools (``service.verification.http``), in one run.

The provider simulator runs as its own process on CPU 1 at 0 ms; this process, pinned to CPU 0,
makes ``--calls`` SMS checks with ``--concurrency`` in flight through each client in turn and
reads its own CPU time (user + system) per call. Latency is the simulator's, so CPU is what
counts: it is what a decision's three calls take from the worker's core.

    .venv/bin/python loadtests/bench_providers.py [--calls 6000] [--concurrency 16] [--rounds 3] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from loadtests.bench import free_port, pinned, write_result  # noqa: E402
from service.verification.http import ConnectionPool  # noqa: E402

PATH = "/sms/v1/verify"
HEADERS = {"Authorization": "Bearer bench"}


async def with_aiohttp(url: str, calls: int, concurrency: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession(base_url=url + "/", headers=HEADERS,
                                     connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=30),
                                     timeout=aiohttp.ClientTimeout(total=None),
                                     json_serialize=lambda o: orjson.dumps(o).decode()) as session:
        async def one(n: int) -> None:
            async with asyncio.timeout(1):
                async with session.post(PATH.lstrip("/"), json=payload(n)) as response:
                    assert response.status == 200
                    orjson.loads(await response.read())

        return await timed(one, calls, concurrency)


async def with_pool(url: str, calls: int, concurrency: int) -> float:
    pool = ConnectionPool(url, HEADERS, limit=32)
    line = pool.request_line(PATH)

    async def one(n: int) -> None:
        async with asyncio.timeout(1):
            status, body = await pool.post(line, orjson.dumps(payload(n)))
        assert status == 200
        orjson.loads(body)

    try:
        return await timed(one, calls, concurrency)
    finally:
        await pool.close()


def payload(n: int) -> dict:
    return {"request_id": f"r-{n}", "code": "123456", "phone": "13800138000"}


async def timed(one, calls: int, concurrency: int) -> float:
    """CPU µs per call of this process, after a warm-up."""
    queue = iter(range(calls))

    async def worker() -> None:
        for n in queue:
            await one(n)

    await asyncio.gather(*(one(n) for n in range(concurrency)))  # connections open, code warm
    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="200 calls, one round, nothing written")
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.rounds = 200, 1
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    import uvloop

    uvloop.install()  # the service's event loop
    port = free_port()
    simulator = subprocess.Popen(pinned([sys.executable, "-m", "service.cli", "providers", "simulate",
                                         "--port", str(port)], 1), cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/", timeout=0.2)
            except urllib.error.HTTPError:
                break  # it answers (404)
            except OSError:
                time.sleep(0.05)
        results: dict[str, list[float]] = {"aiohttp": [], "httptools_pool": []}
        for _ in range(args.rounds):  # alternate, so that drift hits both alike
            results["aiohttp"].append(asyncio.run(with_aiohttp(url, args.calls, args.concurrency)))
            results["httptools_pool"].append(asyncio.run(with_pool(url, args.calls, args.concurrency)))
    finally:
        simulator.terminate()
        simulator.wait()
    summary = {name: {"cpu_us_per_call_median": round(statistics.median(v), 1),
                      "rounds": [round(x, 1) for x in v]} for name, v in results.items()}
    ratio = summary["aiohttp"]["cpu_us_per_call_median"] / summary["httptools_pool"]["cpu_us_per_call_median"]
    for name, row in summary.items():
        print(f"{name:>15}: {row['cpu_us_per_call_median']:7.1f} µs of CPU per call {row['rounds']}")
    print(f"aiohttp / httptools pool = {ratio:.2f}")
    if not args.smoke:
        write_result("providers", {"calls": args.calls, "concurrency": args.concurrency, "rounds": args.rounds,
                                   "results": summary, "aiohttp_over_pool": round(ratio, 2)})


if __name__ == "__main__":
    main()
