"""How every embedded store opens its SQLite file: autocommit (transactions are explicit), WAL so
readers never block the writer, and a busy timeout for writers in other workers."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: Path, synchronous: str = "FULL", schema: str = "") -> sqlite3.Connection:
    """``synchronous``: FULL when an acknowledged write must survive power loss, NORMAL when
    losing the last few is acceptable (it never corrupts the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    if schema:
        conn.executescript(schema)
    return conn
