"""PostgreSQL: the shared store of several replicas (``LOAN_DATABASE_URL=postgresql://…``).

psycopg 3 (synchronous) with a connection pool, called only from the stores' own threads — the
decision writer, the gathering thread, the health monitor, and a worker thread for a claim —
never from the event loop. Chosen by measurement (``loadtests/bench_driver.py``; RESULTS.md,
"Several replicas on PostgreSQL"): one lookup costs 24 µs of client CPU against asyncpg's 28 and
psycopg-async's 69; a batch of 64 costs 3.7 µs a key against asyncpg's 1.4 — a difference of
microseconds beside the ≈ 1.7 ms a decision costs — and the synchronous API keeps the threads
the SQLite stores already use, so both backends have one set of interfaces and the event loop
never waits on the network.

The schema is versioned SQL under ``migrations/`` (``NNNN_name.sql``), applied in order by
``loan-decision db migrate`` and recorded in ``schema_migrations``; a replica serves only on the
schema its code was written for.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from service.store.decisions import StoreUnavailable

log = logging.getLogger("service.store.postgres")
MIGRATE_LOCK = 0x6C6F616E  # any constant: one migrating process at a time
CONNECT_TIMEOUT_S = 2
HEALTH_EVERY_S = 0.25


class SchemaMismatch(Exception):
    """The database's schema is not the one this code was written for."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    folder = resources.files(__package__) / "migrations"
    found = []
    for entry in folder.iterdir():
        stem = entry.name.removesuffix(".sql")
        if entry.name.endswith(".sql") and stem[:4].isdigit():
            found.append(Migration(int(stem[:4]), stem, entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def code_version() -> int:
    return migrations()[-1].version


def _applied(conn: psycopg.Connection) -> int:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(url: str) -> list[str]:
    """Apply what is missing, each migration in its own transaction with its record; returns
    the names applied. Safe to run twice and from several replicas at once (an advisory lock
    makes the others wait, then they find nothing to do). Refuses a schema newer than the code."""
    applied_now = []
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, "
                         "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            current = _applied(conn)
            if current > code_version():
                raise SchemaMismatch(f"the database schema is version {current}, newer than this code's "
                                     f"{code_version()}: run a newer release")
            for migration in migrations():
                if migration.version <= current:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)  # type: ignore[call-overload]  # our own files
                    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                                 (migration.version, migration.name))
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
    return applied_now


def check_schema(url: str) -> None:
    """Raise SchemaMismatch unless the database is at exactly this code's schema version."""
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        current = _applied(conn)
    expected = code_version()
    if current < expected:
        raise SchemaMismatch(f"the database schema is version {current}, this code needs {expected}: "
                             "run `loan-decision db migrate`")
    if current > expected:
        raise SchemaMismatch(f"the database schema is version {current}, newer than this code's "
                             f"{expected}: run a newer release")


class Database:
    """A connection pool and a health flag kept fresh by a monitor thread (so ``/readyz`` never
    waits on the network, and turns 503 within a second of an outage)."""

    def __init__(self, url: str, max_size: int = 8, timeout_s: float = 2.0) -> None:
        self.url = url
        self.pool = ConnectionPool(url, min_size=1, max_size=max_size, timeout=timeout_s, open=False,
                                   kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
                                           "prepare_threshold": 0},
                                   reconnect_timeout=0, name="loan-decision")
        self.healthy = False
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._users = 0
        self._lock = threading.Lock()

    def open(self) -> None:
        """Several stores share one Database; the first opens it, the last to close closes it."""
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            self.pool.open(wait=False)
            self._stop.clear()
            self._check()
            self._monitor = threading.Thread(target=self._watch, name="postgres-health", daemon=True)
            self._monitor.start()

    def close(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            self._stop.set()
            if self._monitor is not None:
                self._monitor.join()
                self._monitor = None
            self.pool.close()
            self.healthy = False

    def _check(self) -> None:
        try:
            with self.pool.connection(timeout=1.0) as conn:
                conn.execute("SELECT 1")
            healthy = True
        except (psycopg.Error, Exception):  # noqa: BLE001 - any failure means not healthy
            healthy = False
        if healthy and not self.healthy:
            # Back after an outage: the pooled connections from before it are dead; drop them
            # now rather than fail a request on each.
            self.pool.check()
        if healthy != self.healthy:
            log.log(logging.INFO if healthy else logging.ERROR, "database reachable" if healthy
                    else "database unreachable", extra={"fields": {"healthy": healthy}})
        self.healthy = healthy

    def _watch(self) -> None:
        while not self._stop.wait(HEALTH_EVERY_S):
            self._check()

    def run(self, work: Any, *args: Any) -> Any:
        """``work(connection, *args)`` on a pooled connection. The database being unreachable
        (no connection within the pool's timeout, a connection lost) is StoreUnavailable."""
        try:
            with self.pool.connection() as conn:
                return work(conn, *args)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc


class OnDatabase:
    """A store on the shared database: opening it takes a share of the database's pool."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def open(self) -> None:
        self.db.open()

    def close(self) -> None:
        self.db.close()
