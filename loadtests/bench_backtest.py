"""Backtest throughput: evaluations per second on one core, and where the time goes; and how fast
the funnel report reads a week of decisions.

Builds a temporary input of ``--copies`` copies of the 1000 German-credit applications (fresh
application ids), then runs ``offline.backtest.run`` with the bundled ruleset alone and against
itself (two evaluations per application), pinned to one CPU. A second pass times each step per
application (parse, facts, ``decide`` and each of its stages) on the same data.

Funnel: ``--funnel-decisions`` synthetic decisions (two thirds approved, a third declined with
two validation reasons, 1 KB answers) in a temporary decision store, one per second of a week.

    .venv/bin/python loadtests/bench_backtest.py [--copies 20] [--funnel-decisions 500000] [--smoke]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from loadtests.bench import write_result  # noqa: E402
from offline.backtest import Evaluator, PastApplication, run  # noqa: E402
from service.decide import application_facts, decide  # noqa: E402
from service.engine.ruleset import load_ruleset  # noqa: E402
from service.scoring.model import load_models  # noqa: E402

SOURCE = ROOT / "models/data/german_credit/applications.jsonl"


def make_input(folder: Path, copies: int) -> Path:
    lines = SOURCE.read_bytes().splitlines()
    path = folder / "applications.jsonl"
    with path.open("wb") as out:
        for copy in range(copies):
            for line in lines:
                body = orjson.loads(line)
                body["application_id"] = f"{body['application_id']}-{copy:03d}"
                out.write(orjson.dumps(body) + b"\n")
    return path


def steps(path: Path, evaluator: Evaluator) -> dict[str, float]:
    """Mean µs per application of each step, measured separately (gc off, as in run())."""
    raw = path.read_bytes().splitlines()
    gc.disable()
    clock = time.perf_counter
    t0 = clock()
    apps = [PastApplication.model_validate_json(line) for line in raw]
    t1 = clock()
    ruleset, models = evaluator.ruleset, evaluator.models
    facts = [application_facts(a, ruleset) | a.stage_facts() for a in apps]
    t2 = clock()
    decisions = [decide(f, ruleset, models=models) for f in facts]
    t3 = clock()
    gc.enable()
    n = len(apps)
    out = {"parse_us": (t1 - t0) / n * 1e6, "facts_us": (t2 - t1) / n * 1e6, "decide_us": (t3 - t2) / n * 1e6}
    for index, step in enumerate(decisions[0].trace):
        ran = [d.trace[index]["ms"] for d in decisions if "skipped" not in d.trace[index]["detail"]]
        out[f"{step['stage']}_us_when_run"] = sum(ran) / max(1, len(ran)) * 1000
        out[f"{step['stage']}_share_run"] = len(ran) / n
    return out


def funnel_speed(folder: Path, count: int) -> dict[str, float]:
    import datetime as dt
    import sqlite3

    from offline.funnel import funnel
    from service.store.decisions import SCHEMA

    path = folder / "decisions.sqlite3"
    approved = orjson.dumps({"outcome": "approve", "reasons": [], "padding": "x" * 900})
    declined = orjson.dumps({"outcome": "decline", "padding": "x" * 800, "reasons": [
        {"code": "TERM_NOT_OFFERED", "stage": "validation", "message": "m"},
        {"code": "AGE_ABOVE_MAXIMUM", "stage": "validation", "message": "m"}]})
    start = dt.datetime(2026, 11, 16, tzinfo=dt.timezone.utc)
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany(
            "INSERT INTO decisions (decision_id, application_id, body_sha256, outcome, product, arm, "
            "decided_at, response, trace) VALUES (?,?,?,?,?,?,?,?,?)",
            ((f"dec_{i:09d}", f"app-{i}", b"x" * 32, "decline" if i % 3 == 0 else "approve", "consumer_quick",
              "champion", (start + dt.timedelta(seconds=i)).isoformat(), declined if i % 3 == 0 else approved, b"[]")
             for i in range(count)))
    t0 = time.perf_counter()
    report = funnel(path, start, start + dt.timedelta(days=7))
    seconds = time.perf_counter() - t0
    assert report["applications"] == min(count, 7 * 86_400)
    print(f"funnel: {report['applications']:,} decisions in {seconds:.2f} s")
    return {"decisions": report["applications"], "seconds": round(seconds, 3),
            "decisions_per_second": round(report["applications"] / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--cpu", type=int, default=0, help="the one CPU to run on")
    parser.add_argument("--funnel-decisions", type=int, default=500_000)
    parser.add_argument("--smoke", action="store_true", help="one copy, 1000 stored decisions, nothing written")
    args = parser.parse_args()
    if args.smoke:
        args.copies, args.funnel_decisions = 1, 1000
    os.sched_setaffinity(0, {args.cpu})
    models = load_models(ROOT / "models")
    ruleset = load_ruleset(ROOT / "rules", set(models))

    def evaluator() -> Evaluator:
        return Evaluator(ruleset, models)

    with tempfile.TemporaryDirectory() as tmp:
        path = make_input(Path(tmp), args.copies)
        runs = {}
        for label, evaluators in (("one_ruleset", [evaluator()]), ("against", [evaluator(), evaluator()])):
            report, errors = run(path, evaluators)
            assert not errors, errors[:3]
            runs[label] = {"applications": report["applications"], "seconds": report["seconds"],
                           "evaluations_per_second_one_core": report["applications_per_second"]}
            print(f"{label}: {report['applications']:,} applications in {report['seconds']} s → "
                  f"{report['applications_per_second']:,} evaluations/s on one core")
        breakdown = {k: round(v, 2) for k, v in steps(path, evaluator()).items()}
        funnel_run = funnel_speed(Path(tmp), args.funnel_decisions)
    print("per application:", ", ".join(f"{k} {v}" for k, v in breakdown.items()))
    if not args.smoke:
        write_result("backtest", {"copies": args.copies, "cpu": args.cpu, "runs": runs, "steps": breakdown,
                                  "funnel": funnel_run})


if __name__ == "__main__":
    main()
