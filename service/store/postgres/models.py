"""The model archive on PostgreSQL: the same table and statements as SQLite's."""

from __future__ import annotations

import datetime as dt

import psycopg

from service.store.models import INSERT, LIST, SELECT, ArchivedModel, columns, from_row
from service.store.postgres import OnDatabase


class PostgresModels(OnDatabase):
    def keep(self, model: ArchivedModel, now: dt.datetime) -> bool:
        def work(conn: psycopg.Connection) -> bool:
            with conn.transaction():
                return conn.execute(INSERT.replace("?", "%s"),
                                    (model.version, model.name, *columns(model), now)).rowcount == 1
        return bool(self.db.run(work))

    def get(self, version: str) -> ArchivedModel | None:
        row = self.db.run(lambda conn: conn.execute(SELECT.replace("?", "%s"), (version,)).fetchone())
        return from_row(row) if row else None

    def versions(self) -> list[tuple[str, str, dt.datetime]]:
        return self.db.run(lambda conn: conn.execute(LIST).fetchall())
