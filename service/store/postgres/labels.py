"""Repayment labels on PostgreSQL: the same upsert as SQLite (a newer observation wins)."""

from __future__ import annotations

import datetime as dt

import psycopg

from service.store.labels import UPSERT, Label
from service.store.postgres import OnDatabase

_UPSERT = UPSERT.replace("?", "%s")


class PostgresLabels(OnDatabase):
    def put(self, labels: list[Label], by: str, now: dt.datetime) -> int:
        def work(conn: psycopg.Connection) -> int:
            changed = 0
            with conn.transaction(), conn.cursor() as cursor:
                for label in labels:
                    cursor.execute(_UPSERT, (label.application_id, label.status, label.days_past_due,
                                             label.observed_on, now, by))
                    changed += cursor.rowcount
            return changed
        return self.db.run(work)

    def get_many(self, application_ids: list[str]) -> dict[str, Label]:
        rows = self.db.run(lambda conn: conn.execute(
            "SELECT application_id, status, days_past_due, observed_on FROM labels WHERE application_id = ANY(%s)",
            (application_ids,)).fetchall())
        return {r[0]: Label(*r) for r in rows}
