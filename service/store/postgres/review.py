"""Review cases, their audit trail and the callback outbox on PostgreSQL: the queries of
``service.store.review``, with row locks (``FOR UPDATE``) where SQLite takes its file lock, and
``SKIP LOCKED`` so that replicas delivering callbacks share the outbox instead of queueing on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import psycopg

from service.store.decisions import StoreUnavailable
from service.store.postgres import OnDatabase
from service.store.review import CASE_COLUMNS, ReviewStore


class PostgresReviews(OnDatabase, ReviewStore):
    placeholder = "%s"
    _skip_locked = " FOR UPDATE SKIP LOCKED"

    def _read(self, work: Callable[[Any], Any]) -> Any:
        return self._run(work)

    def _transaction(self, work: Callable[[Any], Any]) -> Any:
        def in_transaction(conn: psycopg.Connection) -> Any:
            with conn.transaction():
                return work(conn)
        return self._run(in_transaction)

    def _run(self, work: Callable[[Any], Any]) -> Any:
        try:
            return self.db.run(work)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"review store failed: {type(exc).__name__}") from exc

    def _lock_case(self, conn: Any, case_id: str) -> tuple[Any, ...] | None:
        return conn.execute(f"SELECT {CASE_COLUMNS} FROM review_cases WHERE case_id = %s FOR UPDATE",
                            (case_id,)).fetchone()

    def _time_in(self, value: dt.datetime | None) -> Any:
        return value

    def _time_out(self, value: Any) -> dt.datetime | None:
        return value.astimezone(dt.UTC) if value is not None else None
