"""Time an explanation per decision, beside its anchor, the score it explains.

For every bundled model, over the German-credit applications: the ``score`` call the decision
made (the anchor), and ``explain`` of that score (best attributes, then the Shapley orders in
one batched graph run) — what ``GET /v1/decisions/{id}/explanation`` costs in CPU, on a worker
thread. Pinned to one CPU.

    .venv/bin/python loadtests/bench_explain.py [--applications 200] [--cpu 0] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from loadtests.bench import write_result  # noqa: E402
from loadtests.bench_scoring import percentiles  # noqa: E402
from offline.training import read_labelled  # noqa: E402
from service.decide import application_facts  # noqa: E402
from service.engine.ruleset import load_ruleset  # noqa: E402
from service.scoring.explain import explain  # noqa: E402
from service.scoring.model import load_models  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applications", type=int, default=200)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="5 applications, nothing written")
    args = parser.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {args.cpu})
    count = 5 if args.smoke else args.applications
    labelled = read_labelled(ROOT / "models/data/german_credit/applications.jsonl")
    ruleset = load_ruleset(ROOT / "rules")
    facts = [application_facts(r, ruleset) for r in labelled.requests[:count]]
    results = {}
    for name, model in load_models(ROOT / "models").items():
        scored, explained = [], []
        for i, f in enumerate(facts):
            t0 = time.perf_counter()
            _, detail = model.score(f)
            t1 = time.perf_counter()
            result = explain(model, orjson.loads(orjson.dumps(detail["features"])), f"dec_{i}")
            t2 = time.perf_counter()
            assert abs(sum(x.points for x in result.factors) - (result.points - result.reference_points)) < 1e-6
            scored.append(t1 - t0)
            explained.append(t2 - t1)
        results[name] = {"method": result.method, "score": percentiles(scored), "explain": percentiles(explained)}
        print(f"{name:<18} score p50 {results[name]['score']['p50_us']:>8.1f} µs   "
              f"explain ({result.method}) p50 {results[name]['explain']['p50_us'] / 1000:>6.2f} ms   "
              f"p99 {results[name]['explain']['p99_us'] / 1000:>6.2f} ms")
    if not args.smoke:
        write_result("explain", {"applications": count, "cpu": args.cpu, "models": results})


if __name__ == "__main__":
    main()
