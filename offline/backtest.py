"""Backtest: what one ruleset (with its models) would decide on past applications, and how a
second one would differ.

Input is JSON lines, each a ``POST /v1/decisions`` body plus two optional keys:

- ``label``: 1 if the loan went bad, 0 if not (only lines with a label count in bad rates);
- ``recorded``: the stage facts as they were at the time — ``verification.<check>.status`` (and
  ``.score``, ``.error``), ``whitelist.*`` and ``velocity.*`` — because a backtest never calls a
  provider or reads today's whitelist or counters. A check with no recorded status counts as
  unavailable (``error``: the bundled rules refer); unrecorded whitelist or velocity facts are
  unknown (``null``), as in a rule test;
- ``lists``: the entries that were on the bank's lists then and concern this application, by list
  name (``{"black_devices": ["dev-123"]}``; IP ranges as CIDR). Lists not given are empty.

Every application is decided by the same ``decide`` as live traffic, on the experiment arm it
would be assigned live unless an arm is named. Scoring is batched, in two passes over a chunk:
the first decides every application with models that only encode their inputs (what it decides
stands for the applications that never reach scoring), then one onnxruntime run per model
scores every encoded row, and the applications that reached scoring are decided again with
those scores.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import ipaddress
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, ValidationError, field_validator
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from service.decide import application_facts, decide
from service.engine.facts import BOOL, DATE, NUMBER, RECORDABLE, STRING, list_candidates
from service.engine.ruleset import OUTCOMES, Ruleset
from service.schemas import DecisionRequest
from service.scoring.model import OnnxModel
from service.stages.decision import NO_LISTS, Decision, ListLookup, Memberships
from service.store.lists import EntryError, MemoryLists

CHUNK = 4096
_TYPES: dict[str, Any] = {BOOL: bool, NUMBER: float, STRING: str, DATE: dt.date}


# The recordable facts as a TypedDict, so that pydantic-core checks names and types (no Python
# per key): an unknown name is "Extra inputs are not permitted" at recorded.<name>.
Recorded = TypedDict("Recorded", {name: _TYPES[kind] | None for name, kind in RECORDABLE.items()},  # type: ignore[misc]
                     total=False)  # built from the catalogue: mypy cannot see its keys
Recorded.__pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[attr-defined]


class PastApplication(DecisionRequest):
    """One input line: the request as it was sent, its label and the facts recorded then."""

    label: Literal[0, 1] | None = None
    recorded: Recorded | None = None
    lists: dict[str, Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=100)]] | None = None

    @field_validator("lists")
    @classmethod
    def _networks_parse(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for name, entries in (value or {}).items():
            for entry in entries:
                if "/" in entry:
                    try:
                        ipaddress.ip_network(entry, strict=True)  # as the list stores take them
                    except ValueError:
                        raise ValueError(f"{name}: {entry!r} is not an IP range") from None
        return value

    def stage_facts(self) -> dict[str, Any]:
        """The recorded facts. A required check with no recorded status counts as unavailable
        (the verification stage's rule for every caller)."""
        return dict(self.recorded or {})


@dataclass(slots=True)
class Result:
    """What one ruleset decided for one application: only what the report needs."""

    application_id: str
    product: str
    label: int | None
    outcome: str
    reasons: tuple[tuple[str, str], ...]  # (code, stage)
    grade: str | None
    pd: float | None
    amount: float  # offered amount when approved, else 0


def read(path: Path | str, errors: list[str], limit: int = 20,
         lines: Iterable[bytes] | None = None) -> Iterator[list[PastApplication]]:
    """Chunks of parsed lines, from the file ``path`` or from ``lines`` (``path`` then names their
    source). A bad line is recorded in ``errors`` (``file:line: why``) and skipped; the caller
    decides what a run with errors is worth."""
    chunk: list[PastApplication] = []
    with contextlib.ExitStack() as stack:
        source = lines if lines is not None else stack.enter_context(Path(path).open("rb"))
        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                chunk.append(PastApplication.model_validate_json(line))
            except ValidationError as exc:
                if len(errors) < limit:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"]) or "line"
                    errors.append(f"{path}:{number}: {where}: {first['msg']}")
                else:
                    errors.append("")  # counted, not shown
                continue
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


ROW = "_row"  # an application's place in its chunk: a fact no rule can name (no '_' names)


class _Encoding:
    """Pass one's model: encodes the inputs for the batch, answers a placeholder score."""

    def __init__(self, model: OnnxModel, rows: list[list[float]], owners: list[int]) -> None:
        self.model, self.rows, self.owners = model, rows, owners
        self.version = model.version

    @property
    def name(self) -> str:
        return self.model.name

    def score(self, facts: dict[str, Any], lists: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        row, _ = self.model.spec.encode(facts, lists)  # Refused: unscored, in both passes
        self.rows.append(row)
        self.owners.append(facts[ROW])
        return {"model": self.version, "pd": None, "points": None, "grade": None}, {}


class _Scored:
    """Pass two's model: the batch's score for each application."""

    def __init__(self, model: OnnxModel, scores: dict[int, dict[str, Any]]) -> None:
        self.model, self.scores, self.version = model, scores, model.version

    @property
    def name(self) -> str:
        return self.model.name

    def score(self, facts: dict[str, Any], lists: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.scores[facts[ROW]], {}


class Evaluator:
    """One ruleset and its models over chunks of past applications."""

    def __init__(self, ruleset: Ruleset, models: dict[str, OnnxModel], arm: str | None = None) -> None:
        self.ruleset = ruleset
        self.models = models
        self.arm = ruleset.experiment.arm(arm) if arm else None
        if arm and self.arm is None:
            raise ValueError(f"ruleset {ruleset.version} has no arm {arm!r}")

    def evaluate(self, chunk: list[PastApplication]) -> list[Result]:
        ruleset, arm = self.ruleset, self.arm
        facts = [self._facts(row, app) for row, app in enumerate(chunk)]
        lists = [self._lists(app, f) for app, f in zip(chunk, facts)]
        batches = {name: _Encoding(model, [], []) for name, model in self.models.items()}
        first = [decide(dict(f, flags=[]), ruleset, arm, models=batches, lists=ls, traced=False)
                 for f, ls in zip(facts, lists)]
        scored: dict[int, dict[str, Any]] = {}
        for batch in batches.values():
            if batch.rows:
                pds = batch.model.sample_pds(np.array(batch.rows, dtype=np.float32))
                scored.update(zip(batch.owners, map(batch.model.result, pds.tolist())))
        models = {name: _Scored(model, scored) for name, model in self.models.items()}
        return [self._result(app, decide(f, ruleset, arm, models=models, lists=ls, traced=False)
                             if row in scored else d)
                for row, (app, f, ls, d) in enumerate(zip(chunk, facts, lists, first))]

    def _facts(self, row: int, app: PastApplication) -> dict[str, Any]:
        facts = application_facts(app, self.ruleset)
        facts.update(app.stage_facts())
        facts[ROW] = row
        return facts

    @staticmethod
    def _result(app: PastApplication, d: Decision) -> Result:
        score, offer, outcome = d.score, d.offer, d.outcome.label
        return Result(app.application_id, app.product, app.label, outcome,
                      tuple((r["code"], r["stage"]) for r in d.reasons),
                      score["grade"] if score else None, score["pd"] if score else None,
                      offer["amount"] if offer and outcome == "approve" else 0.0)

    def _lists(self, app: PastApplication, facts: dict[str, Any]) -> ListLookup:
        if not app.lists:
            return NO_LISTS
        kinds = self.ruleset.list_kinds
        try:
            entries = MemoryLists(kinds, app.lists)
        except (EntryError, KeyError) as exc:  # what no list store would have held
            raise ValueError(f"application {app.application_id}: lists: {exc}") from None
        return Memberships(entries.memberships(list_candidates(facts, kinds)))


@dataclass
class Summary:
    """The report of one ruleset over the whole input."""

    ruleset: str
    count: int = 0
    outcomes: Counter = field(default_factory=Counter)
    decline_reasons: Counter = field(default_factory=Counter)
    refer_reasons: Counter = field(default_factory=Counter)
    by_grade: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_product: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    labelled: Counter = field(default_factory=Counter)  # approved / approved_bad / all / bad
    # approved / approved_bad / expected_loss, in CNY
    amounts: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, result: Result) -> None:
        self.count += 1
        outcome = result.outcome
        self.outcomes[outcome] += 1
        if outcome != "approve":
            target = self.decline_reasons if outcome == "decline" else self.refer_reasons
            target.update({code for code, _ in result.reasons})
        self.by_grade[result.grade or "unscored"][outcome] += 1
        self.by_product[result.product][outcome] += 1
        if outcome == "approve":
            self.amounts["approved"] += result.amount
            self.amounts["expected_loss"] += (result.pd or 0.0) * result.amount
        if result.label is not None:
            self.labelled["all"] += 1
            self.labelled["bad"] += result.label
            if outcome == "approve":
                self.labelled["approved"] += 1
                self.labelled["approved_bad"] += result.label
                self.amounts["approved_bad"] += result.amount * result.label

    def report(self) -> dict[str, Any]:
        n = self.count or 1
        out: dict[str, Any] = {
            "ruleset": self.ruleset, "applications": self.count,
            "outcomes": {o: self.outcomes[o] for o in OUTCOMES},
            "rates": {o: round(self.outcomes[o] / n, 4) for o in OUTCOMES},
            "decline_reasons": self.decline_reasons.most_common(),
            "refer_reasons": self.refer_reasons.most_common(),
            "by_grade": {g: dict(c) for g, c in sorted(self.by_grade.items())},
            "by_product": {p: dict(c) for p, c in sorted(self.by_product.items())},
            "approved_amount": round(self.amounts["approved"], 2),
            # model-based: sum of PD x offered amount over approvals (LGD taken as 100 %)
            "expected_loss_proxy": round(self.amounts["expected_loss"], 2),
            "expected_loss_rate": _ratio(self.amounts["expected_loss"], self.amounts["approved"]),
        }
        if self.labelled["all"]:
            out["labelled"] = {
                "applications": self.labelled["all"],
                "bad_rate_all": _ratio(self.labelled["bad"], self.labelled["all"]),
                "approved": self.labelled["approved"],
                "bad_rate_approved": _ratio(self.labelled["approved_bad"], self.labelled["approved"]),
                # realised: the amount lent to approvals that went bad, as a share of all lent
                "bad_amount_rate_approved": _ratio(self.amounts["approved_bad"], self.amounts["approved"]),
            }
        return out


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass
class Swaps:
    """Applications whose outcome differs between ruleset A and B, with examples."""

    examples: int = 5
    matrix: Counter = field(default_factory=Counter)
    bad: Counter = field(default_factory=Counter)
    labelled: Counter = field(default_factory=Counter)
    ids: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, a: Result, b: Result) -> None:
        key = (a.outcome, b.outcome)
        self.matrix[key] += 1
        if a.label is not None:
            self.labelled[key] += 1
            self.bad[key] += a.label
        if a.outcome != b.outcome and len(self.ids[key]) < self.examples:
            self.ids[key].append(a.application_id)

    def report(self) -> dict[str, Any]:
        cells = []
        for a in OUTCOMES:
            for b in OUTCOMES:
                cell: dict[str, Any] = {"from": a, "to": b, "count": self.matrix[(a, b)]}
                if self.labelled[(a, b)]:
                    cell["bad_rate"] = _ratio(self.bad[(a, b)], self.labelled[(a, b)])
                if a != b:
                    cell["examples"] = self.ids.get((a, b), [])
                cells.append(cell)
        return {"cells": cells, "changed": sum(c["count"] for c in cells if c["from"] != c["to"])}


def run(input_path: Path | str, evaluators: list[Evaluator],
        lines: Iterable[bytes] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Evaluate every line (of the file, or ``lines``) with each evaluator; (report, input errors)."""
    errors: list[str] = []
    summaries = [Summary(e.ruleset.version) for e in evaluators]
    swaps = Swaps() if len(evaluators) == 2 else None
    started = time.perf_counter()
    evaluated = 0
    gc.collect()
    gc.freeze()  # the long-lived objects (models, rules) need no more scanning
    gc.disable()  # chunks are acyclic: reference counting frees them
    try:
        for chunk in read(input_path, errors, lines=lines):
            results = [e.evaluate(chunk) for e in evaluators]
            for summary, rows in zip(summaries, results):
                for row in rows:
                    summary.add(row)
            if swaps is not None:
                for a, b in zip(*results):
                    swaps.add(a, b)
            evaluated += len(chunk)
    finally:
        gc.enable()
        gc.unfreeze()
    elapsed = time.perf_counter() - started
    report: dict[str, Any] = {
        "input": str(input_path), "applications": evaluated, "invalid_lines": len(errors),
        "seconds": round(elapsed, 3),
        "applications_per_second": round(evaluated * len(evaluators) / elapsed) if elapsed else None,
        "rulesets": [s.report() for s in summaries],
    }
    if swaps is not None:
        report["swaps"] = swaps.report()
    return report, [e for e in errors if e]


def from_store(database: Path | str, since: dt.datetime, until: dt.datetime) -> Iterator[bytes]:
    """Past applications decided in [since, until) as backtest lines, straight from the decision
    store (an SQLite file or a PostgreSQL URL; read-only, streamed): each decision's recorded
    application with its repayment label, when one came back (bad → 1, good → 0)."""
    sql = ("SELECT d.application, l.status FROM decisions d LEFT JOIN labels l ON l.application_id = "
           "d.application_id WHERE d.decided_at >= ? AND d.decided_at < ? AND d.application IS NOT NULL "
           "ORDER BY d.decided_at")
    if isinstance(database, str) and database.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(database) as conn:
            conn.read_only = True
            with conn.cursor(name="backtest") as cursor:  # server-side: fetched in chunks
                cursor.execute(sql.replace("?", "%s"), (since, until))
                for application, status in cursor:
                    yield _labelled(bytes(application), status)
        return
    if not Path(database).exists():
        raise FileNotFoundError(f"no decision store at {database}")
    import sqlite3

    embedded = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        for application, status in embedded.execute(sql, (since.isoformat(), until.isoformat())):
            yield _labelled(application, status)
    finally:
        embedded.close()


def _labelled(application: bytes, status: str | None) -> bytes:
    return application if status is None else application[:-1] + b',"label":%d}' % (status == "bad")


def render(report: dict[str, Any]) -> Iterable[str]:
    """The report as text for the terminal."""
    names = "AB"
    yield (f"{report['applications']} applications from {report['input']} in {report['seconds']} s "
           f"({report['applications_per_second']:,} evaluations/s)")
    for name, s in zip(names, report["rulesets"]):
        rates = s["rates"]
        yield ""
        yield (f"{name} {s['ruleset']}: approve {rates['approve']:.1%}  decline {rates['decline']:.1%}  "
               f"refer {rates['refer']:.1%}   approved amount {s['approved_amount']:,.0f} CNY, "
               f"expected loss proxy {s['expected_loss_proxy']:,.0f} ({s['expected_loss_rate'] or 0:.2%})")
        if "labelled" in s:
            lab = s["labelled"]
            yield (f"  labelled {lab['applications']}: bad rate all {lab['bad_rate_all']:.1%}, approved "
                   f"{lab['approved']} with bad rate {lab['bad_rate_approved'] or 0:.1%} "
                   f"(bad amount {lab['bad_amount_rate_approved'] or 0:.1%})")
        yield "  decline reasons: " + ", ".join(f"{c} {n}" for c, n in s["decline_reasons"][:8])
        yield "  refer reasons:   " + ", ".join(f"{c} {n}" for c, n in s["refer_reasons"][:8])
        yield "  by grade: " + "  ".join(
            f"{g} " + "/".join(str(c.get(o, 0)) for o in OUTCOMES) for g, c in s["by_grade"].items()) \
            + "   (approve/decline/refer)"
        yield "  by product: " + "  ".join(
            f"{p} " + "/".join(str(c.get(o, 0)) for o in OUTCOMES) for p, c in s["by_product"].items())
    if "swaps" in report:
        yield ""
        yield f"swap set A → B: {report['swaps']['changed']} applications change outcome"
        for cell in report["swaps"]["cells"]:
            if cell["from"] != cell["to"] and cell["count"]:
                bad = f", bad rate {cell['bad_rate']:.1%}" if "bad_rate" in cell else ""
                yield (f"  {cell['from']} → {cell['to']}: {cell['count']}{bad}; e.g. "
                       + ", ".join(cell["examples"]))
