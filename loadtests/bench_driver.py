"""Which PostgreSQL driver: psycopg 3 (synchronous, as the stores' threads call it) against
asyncpg and psycopg's async API (on an event loop), for the lookups the stores make.

A throw-away cluster on loopback (tests/pgcluster.py), a 100,000-row table keyed by 16-byte
hashes like the whitelist's; N point lookups one by one (prepared), then in batches of 64
(``= ANY``, what the gathering thread sends under load). Client and server pinned to CPU 0, so
the wall time includes the server's share and the client CPU is this process's alone.

    .venv/bin/python loadtests/bench_driver.py [--lookups 20000] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.bench import write_result  # noqa: E402
from tests.pgcluster import Cluster  # noqa: E402

POINT = "SELECT segment, credit_limit FROM entries WHERE key = {}"
BATCH = "SELECT key, segment, credit_limit FROM entries WHERE key = ANY({})"


def timed(label: str, count: int, run: Callable[[], None]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    out = {"wall_us": round((time.perf_counter() - wall) / count * 1e6, 1),
           "client_cpu_us": round((time.process_time() - cpu) / count * 1e6, 1)}
    print(f"{label}: {out['wall_us']} µs wall, {out['client_cpu_us']} µs client CPU per key", flush=True)
    return out


def on_loop(make: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    return lambda: asyncio.run(make())  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--smoke", action="store_true", help="640 lookups, nothing written")
    args = parser.parse_args()
    if args.smoke:
        args.lookups = 640
    import asyncpg
    import psycopg

    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    cluster = Cluster(fsync=False).init().start()
    try:
        url = cluster.url
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE entries (key bytea PRIMARY KEY, segment text, credit_limit float8)")
            conn.execute("INSERT INTO entries SELECT decode(md5(i::text), 'hex'), 'consumer', i "
                          "FROM generate_series(1, 100000) i")
        keys = [hashlib.md5(str(1 + i % 100_000).encode()).digest() for i in range(args.lookups)]
        batches = [keys[i:i + 64] for i in range(0, len(keys), 64)]
        results: dict[str, dict[str, float]] = {}

        with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
            cur = conn.cursor()
            point, batch = POINT.format("%s"), BATCH.format("%s")
            results["psycopg_sync_point"] = timed("psycopg sync, one key", len(keys), lambda: [
                cur.execute(point, (k,)).fetchone() for k in keys])
            results["psycopg_sync_batch64"] = timed("psycopg sync, batches of 64", len(keys), lambda: [
                cur.execute(batch, (b,)).fetchall() for b in batches])

        async def asyncpg_point() -> None:
            conn = await asyncpg.connect(url)
            statement = await conn.prepare(POINT.format("$1"))
            for k in keys:
                await statement.fetchrow(k)
            await conn.close()

        async def asyncpg_batch() -> None:
            conn = await asyncpg.connect(url)
            statement = await conn.prepare(BATCH.format("$1"))
            for b in batches:
                await statement.fetch(b)
            await conn.close()

        async def psycopg_async_point() -> None:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0)
            cur = conn.cursor()
            for k in keys:
                await cur.execute(POINT.format("%s"), (k,))
                await cur.fetchone()
            await conn.close()

        results["asyncpg_point"] = timed("asyncpg, one key", len(keys), on_loop(asyncpg_point))
        results["asyncpg_batch64"] = timed("asyncpg, batches of 64", len(keys), on_loop(asyncpg_batch))
        results["psycopg_async_point"] = timed("psycopg async, one key", len(keys), on_loop(psycopg_async_point))
        if not args.smoke:
            write_result("driver", {"lookups": args.lookups, "setup": "client and server on CPU 0, loopback",
                                    "psycopg": psycopg.__version__, "asyncpg": asyncpg.__version__,
                                    "results": results})
    finally:
        cluster.remove()


if __name__ == "__main__":
    main()
