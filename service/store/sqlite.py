"""How every embedded store opens its SQLite file: autocommit (transactions are explicit), WAL so
readers never block the writer, and a busy timeout for writers in other workers.

Switching a fresh file to WAL takes an exclusive lock and SQLite does not wait for it (the busy
timeout does not apply), so two workers starting at once on a fresh data folder could fail with
"database is locked". The switch and the schema are made under a file lock beside the database,
one process at a time; after that the busy timeout covers everything.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_MS = 5000


def connect(path: Path, synchronous: str = "FULL", schema: str = "") -> sqlite3.Connection:
    """``synchronous``: FULL when an acknowledged write must survive power loss, NORMAL when
    losing the last few is acceptable (it never corrupts the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        conn.execute("PRAGMA journal_mode=WAL")
        if schema:
            conn.executescript(schema)
    finally:
        os.close(lock)  # releases the lock
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


class SqliteFile:
    """One connection to a store's file, used by one thread at a time: reads, and write
    transactions that take the write lock first (``BEGIN IMMEDIATE``: no upgrade deadlock)."""

    schema = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        self._conn = connect(self.path, "FULL", self.schema)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        assert self._conn is not None, f"{type(self).__name__} is not open"
        with self._lock:
            return work(self._conn)

    def _transaction(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = self._conn
        assert conn is not None, f"{type(self).__name__} is not open"
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
