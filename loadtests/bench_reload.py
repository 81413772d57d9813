"""Live traffic during rule reloads: p99 at a fixed rate without reloads, then with a reload of
the bundled rules every ``--every`` seconds, side by side in one run.

One service worker pinned to CPU 0 (bundled rules and models, durable store, the provider
simulator at 0 ms on CPU 1); this process drives it from CPU 1 at ``--rate`` decisions/s (open
loop, latency from the scheduled send time) and posts ``/admin/rules/reload`` meanwhile.

    .venv/bin/python loadtests/bench_reload.py [--rate 200] [--seconds 10] [--every 1] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.bench import Requests, fixed_rate, free_port, pinned, service, stop, write_result  # noqa: E402
from loadtests.customers import Customers  # noqa: E402
from service.config import DEV_ADMIN_KEY  # noqa: E402


async def with_reloads(reqs: Requests, port: int, rate: float, seconds: float, every: float) -> tuple[dict, int]:
    reloads = 0

    def reload() -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/admin/rules/reload", method="POST",
                                         headers={"Authorization": f"Bearer {DEV_ADMIN_KEY}"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200

    async def reloader() -> None:
        nonlocal reloads
        while True:
            await asyncio.to_thread(reload)
            reloads += 1
            await asyncio.sleep(every)

    task = asyncio.ensure_future(reloader())
    try:
        run = await fixed_rate("reloading", reqs, [port], rate, seconds, 32)
    finally:
        task.cancel()
    return run, reloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between the end of a reload and the next")
    parser.add_argument("--smoke", action="store_true", help="a second at 20/s, nothing written")
    args = parser.parse_args()
    if args.smoke:
        args.rate, args.seconds = 20, 1.5
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    import uvloop

    uvloop.install()
    customers = Customers(int(args.rate * args.seconds * 2) + 200)
    sim_port = free_port()
    simulator = subprocess.Popen(pinned([sys.executable, "-m", "service.cli", "providers", "simulate",
                                         "--port", str(sim_port)], 1), cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        with service(ROOT, sim_port, customers) as (port, _):
            reqs = Requests(port, customers)
            asyncio.run(fixed_rate("warm-up", reqs, [port], args.rate, 1.0, 32))
            calm = asyncio.run(fixed_rate("calm", reqs, [port], args.rate, args.seconds, 32))
            busy, reloads = asyncio.run(with_reloads(reqs, port, args.rate, args.seconds, args.every))
    finally:
        stop(simulator)
    ratio = round(busy["p99_ms"] / calm["p99_ms"], 2) if calm["p99_ms"] else None
    print(f"p99 {calm['p99_ms']} ms without reloads, {busy['p99_ms']} ms with {reloads} reloads: {ratio}×")
    assert reloads >= 1 and set(busy["statuses"]) == {200} and set(calm["statuses"]) == {200}
    if not args.smoke:
        write_result("reload", {"rate": args.rate, "seconds": args.seconds, "every_s": args.every,
                                "reloads": reloads, "p99_ratio": ratio, "runs": [calm, busy]})


if __name__ == "__main__":
    main()
