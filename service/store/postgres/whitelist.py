"""The whitelist on PostgreSQL: one table per imported version, ``whitelist_vN``.

An import is one transaction: create the version's table, stream the validated rows in with
COPY, add the primary key (which finds duplicate customers), record the version and point
``whitelist_active`` at it. Until the commit every replica keeps reading the previous version;
an import that dies (killed, connection lost) rolls back and leaves nothing. A session advisory
lock keeps two imports from running at once. The active and the previous version are kept.

Replicas read the active version's name at most every ``poll_s`` and look a batch of applicants
up in one query.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from service.store.decisions import StoreUnavailable
from service.store.keys import KeyedHash
from service.store.postgres import Database
from service.store.whitelist import (
    SHOWN_ERRORS,
    ImportReport,
    Rows,
    WhitelistEntry,
    WhitelistImportError,
    WhitelistUnavailable,
)

IMPORT_LOCK = 0x77686974  # one import at a time
BATCH = 50_000


def _table(version: int) -> str:
    return f"whitelist_v{int(version)}"


def import_whitelist(url: str, source: Path, keyed: KeyedHash,
                     progress: Callable[[int], None] | None = None) -> ImportReport:
    """Validate every row of ``source`` and publish it for every replica, or raise
    WhitelistImportError and change nothing."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (IMPORT_LOCK,)).fetchone()[0]:  # type: ignore[index]
            raise WhitelistImportError(["another whitelist import is running"], 0)
        with conn.transaction():
            row = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM whitelist_versions").fetchone()
            version = int(row[0])  # type: ignore[index]
            table = _table(version)
            previous = conn.execute("SELECT version FROM whitelist_active").fetchone()
            conn.execute(f"CREATE TABLE {table} (key bytea NOT NULL, line int NOT NULL, segment text NOT NULL, "
                         "credit_limit float8 NOT NULL, rate_tier text NOT NULL, valid_until date NOT NULL)")
            rows = Rows(source, keyed)
            with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
                for n, entry in enumerate(rows, 1):
                    copy.write_row(entry)
                    if progress and n % BATCH == 0:
                        progress(n)
            try:
                with conn.transaction():
                    conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (key)")
            except psycopg.errors.UniqueViolation:
                duplicates = conn.execute(
                    f"SELECT string_agg(line::text, ', ' ORDER BY line), count(*) FROM {table} "
                    f"GROUP BY key HAVING count(*) > 1 LIMIT %s", (SHOWN_ERRORS,)).fetchall()
                raise WhitelistImportError([f"lines {lines}: the same customer {count} times"
                                            for lines, count in duplicates], len(duplicates)) from None
            conn.execute(f"ALTER TABLE {table} DROP COLUMN line")
            conn.execute("INSERT INTO whitelist_versions VALUES (%s, %s, %s, %s, now())",
                         (version, rows.rows, source.name, rows.digest.hexdigest()))
            conn.execute("INSERT INTO whitelist_active (version) VALUES (%s) ON CONFLICT (only_one) "
                         "DO UPDATE SET version = EXCLUDED.version", (version,))
            for (old,) in conn.execute("SELECT version FROM whitelist_versions WHERE version < %s",
                                       (previous[0] if previous else version,)).fetchall():
                conn.execute(f"DROP TABLE IF EXISTS {_table(old)}")
                conn.execute("DELETE FROM whitelist_versions WHERE version = %s", (old,))
    return ImportReport(table, rows.rows, time.perf_counter() - started,
                        _table(previous[0]) if previous else None)


class PostgresWhitelist:
    def __init__(self, database: Database, keyed: KeyedHash, poll_s: float = 1.0) -> None:
        self.db = database
        self.keyed = keyed
        self.poll_s = poll_s
        self.version: str | None = None
        self._checked = -math.inf

    def open(self) -> None:
        self.db.open()
        try:
            self.active()
        except StoreUnavailable:
            pass  # not ready until the database answers; the runtime keeps asking

    def close(self) -> None:
        self.db.close()

    def active(self) -> str | None:
        if time.monotonic() - self._checked >= self.poll_s:
            row = self.db.run(lambda conn: conn.execute("SELECT version FROM whitelist_active").fetchone())
            self.version = _table(row[0]) if row else None
            self._checked = time.monotonic()
        return self.version

    def lookup(self, id_number: str) -> WhitelistEntry | None:
        return self.lookup_many([id_number])[0]

    def lookup_many(self, id_numbers: list[str], retry: bool = True) -> list[WhitelistEntry | None]:
        table = self.active()
        if table is None:
            raise WhitelistUnavailable("no whitelist version is active")
        keys = [self.keyed("id_number", n) for n in id_numbers]
        try:
            rows = self.db.run(lambda conn: conn.execute(
                f"SELECT key, segment, credit_limit, rate_tier, valid_until FROM {table} WHERE key = ANY(%s)",
                (keys,)).fetchall())
        except psycopg.errors.UndefinedTable:  # two imports since we looked: read the pointer again
            if not retry:
                raise
            self._checked = -math.inf
            return self.lookup_many(id_numbers, retry=False)
        found = {bytes(r[0]): WhitelistEntry(r[1], r[2], r[3], r[4]) for r in rows}
        return [found.get(k) for k in keys]

