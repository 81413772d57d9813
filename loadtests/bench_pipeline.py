"""In-process cost of one decision, no HTTP: p50 and p99 of each step and each stage.

A real Runtime (bundled rules and models, SQLite stores with durability on, a whitelist of the
customers) decides ``--decisions`` distinct applications one after another, each a new customer
who is verified, found, scored and approved. The providers answer in process with the
simulator's outcomes (no sockets): what is measured is this service's own work. The steps are
those of ``Decisions.decide`` (claim, gather, decide, store), timed one by one; the durable
commit (the fsync of the decision store's writer thread) is reported apart, since it is
waiting, not work.

    .venv/bin/python loadtests/bench_pipeline.py [--decisions 5000] [--cpu 0] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from loadtests.bench import percentiles, write_result  # noqa: E402
from loadtests.customers import Customers  # noqa: E402
from service.config import Settings  # noqa: E402
from service.decide import application_facts, decide  # noqa: E402
from service.decisions import fingerprint, new_decision_id, response  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.schemas import DecisionRequest  # noqa: E402
from service.store.decisions import DecisionRecord  # noqa: E402
from service.store.keys import KeyedHash
from service.store.whitelist import import_whitelist  # noqa: E402
from service.verification import simulator  # noqa: E402
from service.verification.providers import APIS  # noqa: E402


class InstantProvider:
    """The simulator's answer, computed in process and read by the real result parser."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.api = APIS[name]

    async def check(self, request: DecisionRequest, timeout_s: float) -> dict:
        return self.api.result(simulator.OUTCOMES[self.name](self.api.payload(request)))


async def measure(runtime: Runtime, bodies: list[bytes]) -> dict[str, list[float]]:
    steps: dict[str, list[float]] = {}
    store, gatherer, ruleset = runtime.store, runtime.gatherer, runtime.ruleset
    assert ruleset is not None
    clock = time.perf_counter

    def add(name: str, seconds: float) -> None:
        steps.setdefault(name, []).append(seconds)

    for raw in bodies:
        t0 = clock()
        request = DecisionRequest.model_validate_json(raw)
        t1 = clock()
        digest = fingerprint(request)
        assert store.get_by_application(request.application_id) is None
        t2 = clock()
        facts = application_facts(request, ruleset)
        t3 = clock()
        gathered = await gatherer.gather(request, facts, ruleset, time.monotonic() + 3)
        t4 = clock()
        d = decide(facts, ruleset, models=runtime.models, lists=gathered.lists, shadows=True)
        t5 = clock()
        gathered.annotate(d.trace)
        decided_at = dt.datetime.now(dt.timezone.utc)
        body = response(d, request, new_decision_id(), t0, decided_at)
        record = DecisionRecord(body["decision_id"], request.application_id, digest, body["outcome"],
                                request.product, d.arm.name, decided_at.isoformat(),
                                orjson.dumps(body), orjson.dumps(d.trace, default=str), orjson.dumps(d.shadow))
        t6 = clock()
        await store.save(record)
        t7 = clock()
        assert body["outcome"] == "approve", d.reasons
        add("parse + validate", t1 - t0)
        add("idempotency: fingerprint + stored look-up", t2 - t1)
        add("facts: request, product, derived", t3 - t2)
        add("gather: providers + store thread (wall)", t4 - t3)
        for stage in d.trace:
            add(f"stage {stage['stage']} (with its I/O)", stage["ms"] / 1000)
        add("decide: six stages", t5 - t4)
        add("response + record (three orjson dumps)", t6 - t5)
        add("decision without the commit", t6 - t0)
        add("durable commit (writer thread, fsync)", t7 - t6)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="50 decisions, nothing written")
    args = parser.parse_args()
    warm = 50 if args.smoke else 500
    if args.smoke:
        args.decisions = 50
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {args.cpu})
    import uvloop

    uvloop.install()  # the service's event loop
    customers = Customers(args.decisions + warm)
    bodies = [orjson.dumps(customers.application(i, f"inproc-{i}", f"dev-{i}")) for i in range(customers.count)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), log_level="WARNING")
        import_whitelist(settings.whitelist_dir, customers.whitelist_csv(Path(tmp) / "wl.csv"), KeyedHash(settings.pii_key))
        runtime = Runtime.from_settings(settings)
        runtime.start()
        runtime.gatherer.providers = {name: InstantProvider(name) for name in simulator.OUTCOMES}
        gc.collect()
        gc.freeze()  # as the service does after start-up
        try:
            asyncio.run(measure(runtime, bodies[:warm]))  # warm-up: caches, first-use costs
            steps = asyncio.run(measure(runtime, bodies[warm:]))
        finally:
            runtime.stop()
    table = {name: percentiles(samples) for name, samples in steps.items()}
    width = max(map(len, table))
    for name, row in table.items():
        print(f"{name:<{width}}  p50 {row['p50_us']:>8.1f} µs   p99 {row['p99_us']:>8.1f} µs")
    if not args.smoke:
        write_result("pipeline", {"decisions": args.decisions, "cpu": args.cpu, "steps": table})


if __name__ == "__main__":
    main()
