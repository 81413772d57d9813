"""Velocity: how many earlier applications came from the same device, phone, ID number or IP
in the last hour, day, week and 30 days. Embedded implementation: one SQLite file.

Exact, not estimated: each application is one event row per identifier (its keyed hash). The
count and the recording of the current application happen in one ``BEGIN IMMEDIATE``
transaction, and the clock is read inside it, so two simultaneous applications from one device
— in one worker or in several — are serialised: one sees 0 and the other 1, never both 0.
Every earlier application counts, whatever its outcome; the current one never does, and an
application id is recorded once per identifier, so a retried request does not count itself.
Counts are exact up to ``CAP`` (below).

Cost: the transaction writes a few random B-tree pages to the WAL, ≈ 170 µs per decision with
fresh identifiers and ≈ 370 µs when all four are hot (benchmark machine) — the largest single
cost of a decision. Batching commits
does not help much (random keys share no pages); a shared in-memory store (Redis sorted sets,
the networked implementation) is the way to raise it, and the one for several replicas anyway.

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
# Counts are exact up to CAP and report CAP beyond it: a rule's threshold is far below it, and
# a hot key (a carrier-grade NAT address, a bot) then costs at most CAP index steps per window
# instead of a scan of everything it ever sent.
CAP = 100
# Expired events are swept one 1/256 slice of the key space every SWEEP_EVERY calls, so no
# call pays for a whole-table scan; counts never read them anyway (every window is bounded).
SWEEP_EVERY, SLICES = 1000, 256

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    key            BLOB NOT NULL,
    at             REAL NOT NULL,
    application_id TEXT NOT NULL,
    PRIMARY KEY (key, at, application_id)
) WITHOUT ROWID;
"""
_WINDOW_COUNT = f"(SELECT count(*) FROM (SELECT 1 FROM events WHERE key = ?1 AND at > ?{{}} LIMIT {CAP + 1}))"
# A retry of this application is looked for among the key's latest CAP + 1 events: a retry
# comes seconds later, and a key with more events in between is saturated at CAP anyway.
_PRIOR = (f"(SELECT at FROM (SELECT at, application_id FROM events WHERE key = ?1 "
          f"ORDER BY at DESC LIMIT {CAP + 1}) WHERE application_id = ?6)")
COUNT = "SELECT " + ", ".join([_WINDOW_COUNT.format(n) for n in range(2, 6)] + [_PRIOR])
RECORD = "INSERT INTO events (key, at, application_id) VALUES (?, ?, ?)"
SWEEP = "DELETE FROM events WHERE key >= ? AND key < ? AND at <= ?"


class SqliteVelocity:
    def __init__(self, path: Path, keyed: KeyedHash, clock=time.time) -> None:
        self.path = path
        self.keyed = keyed
        self.clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, one transaction at a time
        self._calls = 0

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
        return self.count_and_record_many([(application_id, identifiers)])[0]

    def count_and_record_many(self, applications: list[tuple[str, dict[str, str | None]]]
                              ) -> list[dict[str, int | None]]:
        """``count_and_record`` for several applications in one transaction, in their order:
        each sees the ones before it, exactly as if they had come one by one."""
        conn = self._conn
        assert conn is not None, "velocity store not open"
        out = []
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = self.clock()  # read under the write lock: events are ordered as serialised
                bounds = [now - seconds for seconds in WINDOWS.values()]
                for application_id, identifiers in applications:
                    out.append(self._count_and_record(conn, now, bounds, application_id, identifiers))
                self._calls += len(applications)
                if self._calls // SWEEP_EVERY != (self._calls - len(applications)) // SWEEP_EVERY:
                    step = self._calls // SWEEP_EVERY % SLICES
                    high = bytes([step + 1]) if step + 1 < SLICES else b"\xff" * 17
                    conn.execute(SWEEP, (bytes([step]), high, now - LONGEST))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return out

    def _count_and_record(self, conn: sqlite3.Connection, now: float, bounds: list[float],
                          application_id: str, identifiers: dict[str, str | None]) -> dict[str, int | None]:
        counts: dict[str, int | None] = dict.fromkeys(NAMES)
        for kind, value in identifiers.items():
            if value is None:
                continue
            key = self.keyed(f"velocity_{kind}", value)
            *row, prior = conn.execute(COUNT, (key, *bounds, application_id)).fetchone()
            for window, bound, count in zip(WINDOWS, bounds, row):
                itself = prior is not None and prior > bound  # a retry of this one
                counts[f"velocity.{kind}_{window}"] = min(count - itself, CAP)
            if prior is None:
                conn.execute(RECORD, (key, now, application_id))
        return counts

    def healthy(self) -> bool:
        try:
            return self._conn is not None and self._conn.execute("SELECT 1").fetchone() == (1,)
        except sqlite3.Error:
            return False
