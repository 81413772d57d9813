"""Import a whitelist of N customers (default 10 million) and time lookups at that size.

Writes the CSV and the whitelist versions to a temporary folder (removed at the end, never under
the repository): the CSV of 10^7 rows is about 500 MB and the SQLite version about 450 MB.
Measures: CSV generation (not part of the import), import wall time and rows/s, file size, peak
RSS of the importing process, and lookup latency p50/p99 for listed and unlisted customers
through ``SqliteWhitelist.lookup`` (keyed hash + one indexed query), cold-ish and warm.

    .venv/bin/python loadtests/bench_whitelist.py [--rows 10000000] [--lookups 100000] [--smoke]
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
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, 200 lookups, nothing written")
    args = parser.parse_args()
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

        report = import_whitelist(work / "wl", source, keyed,
                                  progress=lambda n: print(f"  {n:,}", end="\r", flush=True)
                                  if n % 1_000_000 == 0 else None)
        size = (work / "wl" / report.version).stat().st_size
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"imported in {report.seconds:.1f} s ({args.rows / report.seconds:,.0f} rows/s), "
              f"{size / 1e6:.0f} MB, peak RSS {peak_rss_mb:.0f} MB")

        whitelist = SqliteWhitelist(work / "wl", keyed, poll_s=3600)
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
        if args.smoke:
            return
        write_result("whitelist", {
            "rows": args.rows, "generate_s": round(generated, 1), "import_s": round(report.seconds, 1),
            "import_rows_per_s": round(args.rows / report.seconds), "file_mb": round(size / 1e6),
            "csv_mb": round(source.stat().st_size / 1e6), "import_peak_rss_mb": round(peak_rss_mb),
            "lookups": args.lookups, "lookup": timings})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
