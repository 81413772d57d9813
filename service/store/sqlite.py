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
from pathlib import Path

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
