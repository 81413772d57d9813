"""Import a whitelist of N customers (default 10 million) and time lookups at that size.

Writes the CSV and the whitelist versions to a temporary folder (removed at the end, never under
the repository): the CSV of 10^7 rows is about 500 MB and the SQLite version about 450 MB.
Measures: CSV generation (not part of the import), import wall time and rows/s, file size, peak
RSS of the importing process, and lookup latency p50/p99 for listed and unlisted customers
through ``SqliteWhitelist.lookup`` (keyed hash + one indexed query), cold-ish and warm.

With ``--database postgresql://…`` (or ``--database throwaway``: a temporary cluster on loopback,
tests/pgcluster.py) the same, into PostgreSQL: COPY in one transaction, then lookups over
loopback through ``PostgresWhitelist`` one at a time and in batches of 64 (what the gathering
thread sends under load).

    .venv/bin/python loadtests/bench_whitelist.py [--rows 10000000] [--lookups 100000] [--database URL] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from loadtests.bench import percentiles, write_result  # noqa: E402
from service.store.keys import KeyedHash  # noqa: E402
from service.store.whitelist import SqliteWhitelist, import_whitelist  # noqa: E402
from tests import factories  # noqa: E402

REGIONS = ("110105", "110101", "310101", "120101", "140121", "210122", "330122", "340121")
FIRST = dt.date(1950, 1, 1)


def id_number(i: int) -> str:
    """The i-th synthetic customer: 1000 per birth date per region, all distinct and valid."""
    region = REGIONS[i % len(REGIONS)]
    j = i // len(REGIONS)
    return factories.id_number(f"{(FIRST + dt.timedelta(days=j // 1000)):%Y%m%d}", region, f"{j % 1000:03d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--database", default="", help="postgresql://… or 'throwaway'; default: SQLite")
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, 200 lookups, nothing written")
    args = parser.parse_args()
    cluster = None
    if args.database == "throwaway":
        from tests.pgcluster import Cluster

        cluster = Cluster().init().start()
        args.database = cluster.url
    if args.smoke:
        args.rows, args.lookups = 2_000, 200
    keyed = KeyedHash("bench-pii-key-0123456789abcdef0123456789")
    work = Path(tempfile.mkdtemp(prefix="bench-whitelist-"))
    try:
        source = work / "whitelist.csv"
        started = time.perf_counter()
        with source.open("w") as out:
            out.write("id_number,segment,limit,rate_tier,valid_until\n")
            segments = ("farmer", "merchant", "consumer")
            for i in range(args.rows):
                out.write(f"{id_number(i)},{segments[i % 3]},{10_000 + (i % 50) * 1000},T{1 + i % 3},2027-06-30\n")
        generated = time.perf_counter() - started
        print(f"generated {args.rows:,} rows in {generated:.1f} s ({source.stat().st_size / 1e6:.0f} MB)")

        def progress(n: int) -> None:
            if n % 1_000_000 == 0:
                print(f"  {n:,}", end="\r", flush=True)

        database = None
        if args.database:
            from service.store.postgres import Database, migrate
            from service.store.postgres.whitelist import PostgresWhitelist
            from service.store.postgres.whitelist import import_whitelist as import_shared

            migrate(args.database)
            report = import_shared(args.database, source, keyed, progress)
            database = Database(args.database)
            database.open()
            size = database.run(lambda conn: conn.execute(
                f"SELECT pg_total_relation_size('{report.version}')").fetchone()[0])
            whitelist = PostgresWhitelist(database, keyed, poll_s=3600)
        else:
            report = import_whitelist(work / "wl", source, keyed, progress)
            size = (work / "wl" / report.version).stat().st_size
            whitelist = SqliteWhitelist(work / "wl", keyed, poll_s=3600)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"imported in {report.seconds:.1f} s ({args.rows / report.seconds:,.0f} rows/s), "
              f"{size / 1e6:.0f} MB, peak RSS {peak_rss_mb:.0f} MB")

        rng = random.Random(7)
        listed = [id_number(rng.randrange(args.rows)) for _ in range(args.lookups)]
        unlisted = [id_number(args.rows + rng.randrange(args.rows)) for _ in range(args.lookups)]
        timings = {}
        for label, numbers in (("listed", listed), ("unlisted", unlisted)):
            samples = []
            for number in numbers:
                t0 = time.perf_counter()
                entry = whitelist.lookup(number)
                samples.append(time.perf_counter() - t0)
                assert (entry is not None) == (label == "listed")
            timings[label] = percentiles(samples)
            print(f"lookup {label}: p50 {timings[label]['p50_us']} µs, p99 {timings[label]['p99_us']} µs")
        samples = []
        for start in range(0, len(listed), 64):  # the gathering thread's batches
            t0 = time.perf_counter()
            found = whitelist.lookup_many(listed[start:start + 64])
            samples.append((time.perf_counter() - t0) / len(found))
            assert all(entry is not None for entry in found)
        timings["listed_batch_64_per_customer"] = percentiles(samples)
        print(f"lookup in batches of 64, per customer: p50 {timings['listed_batch_64_per_customer']['p50_us']} µs")
        if database is not None:
            database.close()
        if args.smoke:
            return
        write_result("whitelist-postgres" if args.database else "whitelist", {
            "store": "postgresql" if args.database else "sqlite",
            "rows": args.rows, "generate_s": round(generated, 1), "import_s": round(report.seconds, 1),
            "import_rows_per_s": round(args.rows / report.seconds), "file_mb": round(size / 1e6),
            "csv_mb": round(source.stat().st_size / 1e6), "import_peak_rss_mb": round(peak_rss_mb),
            "lookups": args.lookups, "lookup": timings})
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if cluster is not None:
            cluster.remove()


if __name__ == "__main__":
    main()
