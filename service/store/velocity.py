"""Velocity: how many earlier applications came from the same device, phone, ID number or IP
in the last hour, day, week and 30 days. Embedded implementation: one SQLite file.

Exact, not estimated: each application is one event row per identifier (its keyed hash). The
count and the recording of the current application happen in one ``BEGIN IMMEDIATE``
transaction, and the clock is read inside it, so two simultaneous applications from one device
— in one worker or in several — are serialised: one sees 0 and the other 1, never both 0.
Every earlier application counts, whatever its outcome; the current one never does, and an
application id is recorded once per identifier, so a retried request does not count itself.
Events older than the longest window are pruned per key in the same transaction.

Durability: WAL with ``synchronous=NORMAL``: a power cut may forget the last few events (a
count slightly low), never corrupt the file; decisions themselves are in the fsync'd store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from service.store.keys import KeyedHash
from service.store.sqlite import connect

KINDS = ("device", "phone", "id", "ip")
WINDOWS = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
LONGEST = max(WINDOWS.values())
NAMES = [f"velocity.{kind}_{window}" for kind in KINDS for window in WINDOWS]

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    key            BLOB NOT NULL,
    at             REAL NOT NULL,
    application_id TEXT NOT NULL,
    PRIMARY KEY (key, at, application_id)
) WITHOUT ROWID;
"""
# One pass over one key's last 30 days: the four window counts, the current application excluded.
COUNT = ("SELECT coalesce(sum(at > ?), 0), coalesce(sum(at > ?), 0), coalesce(sum(at > ?), 0), count(*) "
         "FROM events WHERE key = ? AND at > ? AND application_id != ?")
RECORD = ("INSERT INTO events (key, at, application_id) SELECT ?, ?, ? WHERE NOT EXISTS "
          "(SELECT 1 FROM events WHERE key = ? AND application_id = ?)")
PRUNE = "DELETE FROM events WHERE key = ? AND at <= ?"


class SqliteVelocity:
    def __init__(self, path: Path, keyed: KeyedHash, clock=time.time) -> None:
        self.path = path
        self.keyed = keyed
        self.clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, one transaction at a time

    def open(self) -> None:
        self._conn = connect(self.path, "NORMAL", SCHEMA)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def count_and_record(self, application_id: str, identifiers: dict[str, str | None]
                         ) -> dict[str, int | None]:
        """Counts of earlier applications per identifier kind and window, recording this one.

        ``identifiers`` maps a kind (device, phone, id, ip) to its value; a missing value gives
        null counts for that kind."""
        keys = {kind: self.keyed(f"velocity_{kind}", value) for kind, value in identifiers.items()
                if value is not None}
        counts: dict[str, int | None] = dict.fromkeys(NAMES)
        conn = self._conn
        assert conn is not None, "velocity store not open"
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = self.clock()  # read under the write lock: events are ordered as serialised
                for kind, key in keys.items():
                    bounds = [now - WINDOWS[w] for w in ("1h", "24h", "7d")]
                    row = conn.execute(COUNT, (*bounds, key, now - LONGEST, application_id)).fetchone()
                    for window, value in zip(WINDOWS, row):
                        counts[f"velocity.{kind}_{window}"] = value
                    conn.execute(PRUNE, (key, now - LONGEST))
                    conn.execute(RECORD, (key, now, application_id, key, application_id))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return counts

    def healthy(self) -> bool:
        try:
            return self._conn is not None and self._conn.execute("SELECT 1").fetchone() == (1,)
        except sqlite3.Error:
            return False
