"""The weekly funnel: per product and experiment arm, how many applications entered each stage,
how many left at it (declined or referred), and the reason codes each stage gave.

An application leaves the automatic path at the stage of its first reason code (reasons are
recorded in stage order); one with no reason went through every stage and was approved at the
strategy. A referral then enters the review stage: cases opened, approved, declined, still
pending, and breached (undecided at their deadline). Read from the decision store, read-only, so
it can run beside a live service.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from service.identifiers import CHINA

STAGES = ("validation", "verification", "enrichment", "fraud", "scoring", "strategy")
TOP = 5
SELECT = ("SELECT d.product, d.arm, d.outcome, d.response, c.state, c.outcome, c.breached_at FROM decisions d "
          "LEFT JOIN review_cases c ON c.decision_id = d.decision_id WHERE d.decided_at >= ? AND d.decided_at < ?")


def parse_time(text: str) -> dt.datetime:
    """'2026-11-16' (midnight, Beijing time), '2026-11-16T08:00' (Beijing time) or any ISO time
    with an offset → an aware UTC datetime."""
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA)
    return value.astimezone(dt.UTC)


class _Path:
    """One product × arm: counts per stage."""

    def __init__(self) -> None:
        self.total = 0
        self.left: dict[str, Counter] = defaultdict(Counter)  # stage → outcome → count
        self.reasons: dict[str, Counter] = defaultdict(Counter)  # stage → code → applications
        self.approved = 0
        self.review: Counter = Counter()

    def add(self, outcome: str, reasons: list[dict[str, str]], case: tuple[Any, ...]) -> None:
        self.total += 1
        state, final, breached = case
        if state is not None:
            self.review["opened"] += 1
            self.review[f"{final}d" if final else "pending"] += 1  # approved | declined | pending
            self.review["breached"] += breached is not None
        if reasons:
            self.left[reasons[0]["stage"]][outcome] += 1
        else:
            self.approved += 1
        for stage, code in {(r["stage"], r["code"]) for r in reasons}:
            self.reasons[stage][code] += 1

    def report(self) -> dict[str, Any]:
        stages, entered = [], self.total
        for stage in STAGES:
            left = self.left.get(stage, Counter())
            stages.append({"stage": stage, "entered": entered, "declined": left["decline"],
                           "referred": left["refer"], "left": sum(left.values()),
                           "top_reasons": self.reasons.get(stage, Counter()).most_common(TOP)})
            entered -= sum(left.values())
        review = {k: self.review[k] for k in ("opened", "approved", "declined", "pending", "breached")}
        return {"applications": self.total, "approved": self.approved, "stages": stages, "review": review}


def funnel(database: Path | str, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    """The funnel of decisions made in [since, until), from an SQLite file or a PostgreSQL URL;
    read-only either way, rows streamed (never all in memory)."""
    paths: dict[tuple[str, str], _Path] = defaultdict(_Path)
    for product, arm, outcome, response, *case in _decisions(database, since, until):
        paths[(product, arm)].add(outcome, orjson.loads(response)["reasons"], tuple(case))
    return {"since": since.isoformat(), "until": until.isoformat(),
            "applications": sum(p.total for p in paths.values()),
            "paths": [{"product": product, "arm": arm, **path.report()}
                      for (product, arm), path in sorted(paths.items())]}


def _decisions(database: Path | str, since: dt.datetime, until: dt.datetime) -> Iterator[tuple[Any, ...]]:
    if isinstance(database, str) and database.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(database) as conn:
            conn.read_only = True
            with conn.cursor(name="funnel") as cursor:  # server-side: fetched in chunks
                cursor.execute(SELECT.replace("?", "%s"), (since, until))
                for product, arm, outcome, response, *case in cursor:
                    yield product, arm, outcome, bytes(response), *case
        return
    if not Path(database).exists():
        raise FileNotFoundError(f"no decision store at {database}")
    embedded = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        cases = embedded.execute("SELECT 1 FROM sqlite_master WHERE name = 'review_cases'").fetchone()
        sql = SELECT if cases else ("SELECT product, arm, outcome, response, NULL, NULL, NULL FROM decisions d "
                                    "WHERE decided_at >= ? AND decided_at < ?")  # a file from before reviews
        yield from embedded.execute(sql, (since.isoformat(), until.isoformat()))
    finally:
        embedded.close()


def render(report: dict[str, Any]) -> Iterable[str]:
    yield f"decisions from {report['since']} until {report['until']}: {report['applications']:,}"
    for path in report["paths"]:
        yield ""
        yield (f"{path['product']} / arm {path['arm']}: {path['applications']:,} applications, "
               f"{path['approved']:,} approved ({path['approved'] / path['applications']:.1%})")
        yield f"  {'stage':<13}{'entered':>9}{'declined':>10}{'referred':>10}   top reasons"
        for s in path["stages"]:
            reasons = ", ".join(f"{code} {n}" for code, n in s["top_reasons"])
            yield f"  {s['stage']:<13}{s['entered']:>9,}{s['declined']:>10,}{s['referred']:>10,}   {reasons}"
        r = path["review"]
        if r["opened"]:
            yield (f"  review: {r['opened']:,} opened, {r['approved']:,} approved, {r['declined']:,} declined, "
                   f"{r['pending']:,} pending, {r['breached']:,} breached the deadline")
