"""Time the scoring stage per application: feature encoding, one ONNX run, PD → points → grade.

Runs every bundled model over the 1000 German-credit applications (facts built beforehand, as
the pipeline would have them) a few times, one application at a time as in production, and
reports p50/p99 of the encoding, the graph run and the whole ``score`` call, plus the batch
throughput of the graph alone (the backtest path).

    .venv/bin/python loadtests/bench_scoring.py [--rounds 5] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from loadtests.bench import write_result  # noqa: E402
from offline.training import read_labelled  # noqa: E402
from service.decide import application_facts  # noqa: E402
from service.engine.ruleset import load_ruleset  # noqa: E402
from service.scoring.model import load_models  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
            "p99_us": round(ordered[int(len(ordered) * 0.99)] * 1e6, 1),
            "mean_us": round(statistics.fmean(ordered) * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="50 applications, one round, nothing written")
    args = parser.parse_args()
    labelled = read_labelled(ROOT / "models/data/german_credit/applications.jsonl")
    ruleset = load_ruleset(ROOT / "rules")
    requests = labelled.requests[:50] if args.smoke else labelled.requests
    rounds = 1 if args.smoke else args.rounds
    facts = [application_facts(r, ruleset) for r in requests]
    results = {}
    for name, model in load_models(ROOT / "models").items():
        encode, run, whole = [], [], []
        for _ in range(rounds):
            for f in facts:
                t0 = time.perf_counter()
                row, _ = model.spec.encode(f)
                t1 = time.perf_counter()
                model.sample_pds(np.array([row], dtype=np.float32))
                t2 = time.perf_counter()
                model.score(f)
                t3 = time.perf_counter()
                encode.append(t1 - t0)
                run.append(t2 - t1)
                whole.append(t3 - t2)
        matrix = np.array([model.spec.encode(f)[0] for f in facts], dtype=np.float32)
        t0 = time.perf_counter()
        for _ in range(rounds):
            model.sample_pds(matrix)
        batch = len(facts) * rounds / (time.perf_counter() - t0)
        results[name] = {"version": model.version, "columns": matrix.shape[1],
                         "encode": percentiles(encode), "onnx_run": percentiles(run),
                         "score": percentiles(whole), "batch_rows_per_s": round(batch)}
        print(f"{name}: score p50 {results[name]['score']['p50_us']} µs, p99 "
              f"{results[name]['score']['p99_us']} µs (encode p50 {results[name]['encode']['p50_us']}, "
              f"graph p50 {results[name]['onnx_run']['p50_us']}); batch {batch:,.0f} rows/s")
    if not args.smoke:
        write_result("scoring", {"applications": len(facts), "rounds": rounds, "results": results})


if __name__ == "__main__":
    main()
