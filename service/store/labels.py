"""Repayment labels: whether an application's loan went good or bad, as the bank observed it.

One row per application id; a later observation replaces an earlier one (a loan 30 days past
due in March may be 90 in June), an older one never replaces a newer one. Stored beside the
decisions (the same SQLite file, or the same PostgreSQL database) so that the backtest and the
funnel join them without a copy.
"""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.store.sqlite import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    application_id TEXT PRIMARY KEY,
    status         TEXT NOT NULL CHECK (status IN ('good', 'bad')),
    days_past_due  INTEGER NOT NULL CHECK (days_past_due >= 0),
    observed_on    TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    recorded_by    TEXT NOT NULL
);
"""
STATUSES = ("good", "bad")
MAX_DAYS_PAST_DUE = 10_000
FIELDS = ("application_id", "status", "days_past_due", "observed_on")
UPSERT = ("INSERT INTO labels (application_id, status, days_past_due, observed_on, recorded_at, recorded_by) "
          "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (application_id) DO UPDATE SET status = excluded.status, "
          "days_past_due = excluded.days_past_due, observed_on = excluded.observed_on, "
          "recorded_at = excluded.recorded_at, recorded_by = excluded.recorded_by "
          "WHERE excluded.observed_on >= labels.observed_on")


@dataclass(frozen=True, slots=True)
class Label:
    application_id: str
    status: str  # good | bad
    days_past_due: int
    observed_on: dt.date


class LabelErrors(Exception):
    """Rows that are not labels, each with its number and why; nothing was stored."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(errors)} bad label row(s)")
        self.errors = errors


def _application_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and all(c.isascii() and (c.isalnum() or c in "_-")
                                                                  for c in value)


def parse(rows: Iterable[dict[str, Any]], today: dt.date) -> list[Label]:
    """Check every row (all or nothing); raises LabelErrors listing each bad row (1-based)."""
    labels: list[Label] = []
    errors: list[tuple[int, str]] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, 1):
        app, status, days, observed = (row.get(k) for k in FIELDS)
        app = app if isinstance(app, str) else None
        try:
            if app is None or not _application_id(app):
                raise ValueError("application_id: 1–64 letters, digits, '_' or '-'")
            if app in seen:
                raise ValueError(f"application_id '{app}' appears twice")
            if status not in STATUSES:
                raise ValueError("status: good or bad")
            if isinstance(days, str) and days.strip().isdigit():
                days = int(days)
            if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_DAYS_PAST_DUE:
                raise ValueError(f"days_past_due: a whole number from 0 to {MAX_DAYS_PAST_DUE}")
            try:
                on = observed if isinstance(observed, dt.date) else dt.date.fromisoformat(str(observed))
            except ValueError:
                raise ValueError("observed_on: a date, YYYY-MM-DD") from None
            if on > today:
                raise ValueError(f"observed_on: {on} is in the future")
        except ValueError as exc:
            errors.append((number, str(exc)))
            continue
        seen.add(app)
        labels.append(Label(app, status, days, on))
    if errors:
        raise LabelErrors(errors)
    return labels


def read_csv(path: Path, today: dt.date) -> list[Label]:
    """A CSV file with the header application_id,status,days_past_due,observed_on."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise LabelErrors([(0, f"the header lacks {', '.join(sorted(missing))}")])
        return parse(reader, today)


class SqliteLabels(SqliteFile):
    schema = SCHEMA

    def put(self, labels: list[Label], by: str, now: dt.datetime) -> int:
        """Store ``labels`` in one transaction; returns how many were new or newer."""
        at = now.astimezone(dt.UTC).isoformat()
        return self._transaction(lambda conn: sum(conn.execute(UPSERT, (
            row.application_id, row.status, row.days_past_due, row.observed_on.isoformat(), at, by)).rowcount
            for row in labels))

    def get_many(self, application_ids: list[str]) -> dict[str, Label]:
        def work(conn: sqlite3.Connection) -> dict[str, Label]:
            found: dict[str, Label] = {}
            for start in range(0, len(application_ids), 500):
                chunk = application_ids[start:start + 500]
                for app, status, days, on in conn.execute(
                        "SELECT application_id, status, days_past_due, observed_on FROM labels "
                        f"WHERE application_id IN ({','.join('?' * len(chunk))})", chunk):
                    found[app] = Label(app, status, days, dt.date.fromisoformat(on))
            return found
        return self._read(work)
