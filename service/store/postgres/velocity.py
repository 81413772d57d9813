"""Velocity on PostgreSQL: exact counts across replicas.

One call of ``velocity_count_and_record`` (migrations/0001) per batch: it locks the batch's
identifiers (advisory locks, sorted), reads the database's clock, then counts and records each
application in order — one round trip and one commit for the whole batch. Two replicas with
applications from one device are serialised on that device's lock, so the counts come out
0, 1, 2… exactly once each, as in one SQLite file. Events live in daily partitions; the oldest
are dropped (``velocity_maintain``) rather than deleted.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from service.store.keys import KeyedHash
from service.store.postgres import Database
from service.store.velocity import CAP, KINDS, LONGEST, NAMES, WINDOWS

MAINTAIN_EVERY_S = 3600
KEEP_DAYS = LONGEST // 86_400 + 1


class PostgresVelocity:
    def __init__(self, database: Database, keyed: KeyedHash, clock: Callable[[], float] | None = None) -> None:
        self.db = database
        self.keyed = keyed
        self.clock = clock  # None: the database's clock (the tests pass their own)
        self._maintained = -float(MAINTAIN_EVERY_S)

    def open(self) -> None:
        self.db.open()
        self.maintain()

    def close(self) -> None:
        self.db.close()

    def healthy(self) -> bool:
        return self.db.healthy

    def maintain(self) -> None:
        """Create the coming days' partitions and drop those past the longest window."""
        self._maintained = time.monotonic()
        self.db.run(lambda conn: conn.execute("SELECT velocity_maintain(%s)", (KEEP_DAYS,)))

    def count_and_record(self, application_id: str, identifiers: dict[str, str | None]) -> dict[str, int | None]:
        return self.count_and_record_many([(application_id, identifiers)])[0]

    def count_and_record_many(self, applications: list[tuple[str, dict[str, str | None]]]
                              ) -> list[dict[str, int | None]]:
        if time.monotonic() - self._maintained > MAINTAIN_EVERY_S:
            self.maintain()
        keys, apps, where = [], [], []
        for index, (application_id, identifiers) in enumerate(applications):
            for kind in KINDS:
                value = identifiers.get(kind)
                if value is not None:
                    keys.append(self.keyed(f"velocity_{kind}", value))
                    apps.append(application_id)
                    where.append((index, kind))
        out: list[dict[str, int | None]] = [dict.fromkeys(NAMES) for _ in applications]
        if not keys:
            return out
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC) if self.clock else None
        rows = self.db.run(lambda conn: conn.execute(
            "SELECT idx, counts FROM velocity_count_and_record(%s, %s, %s, %s, %s)",
            (keys, apps, [float(s) for s in WINDOWS.values()], CAP, now)).fetchall())
        for idx, counts in rows:
            index, kind = where[idx - 1]
            for window, count in zip(WINDOWS, counts):
                out[index][f"velocity.{kind}_{window}"] = count
        return out
