"""Published rulesets and the replicas' heartbeats (migrations/0002). A ruleset is stored as its
files (relative path → text); what they mean is the rule language's business, not the store's."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from service.store.postgres import Database

LIVE_S = 10.0  # a replica not seen for this long is not listed


class PublishedRulesets:
    def __init__(self, database: Database) -> None:
        self.db = database

    def publish(self, version: str, files: dict[str, str], by: str) -> bool:
        """Store ``files`` as ``version`` and make it the active one; False if it already was."""
        def work(conn: psycopg.Connection) -> bool:
            with conn.transaction():
                conn.execute("INSERT INTO rulesets (version, files, published_by) VALUES (%s, %s, %s) "
                             "ON CONFLICT (version) DO NOTHING", (version, Jsonb(files), by))
                row = conn.execute(
                    "INSERT INTO ruleset_active (version) VALUES (%s) ON CONFLICT (only_one) DO UPDATE "
                    "SET version = EXCLUDED.version, activated_at = now() "
                    "WHERE ruleset_active.version <> EXCLUDED.version RETURNING 1", (version,)).fetchone()
            return row is not None
        return bool(self.db.run(work))

    def active(self) -> str | None:
        row = self.db.run(lambda conn: conn.execute("SELECT version FROM ruleset_active").fetchone())
        return row[0] if row else None

    def files(self, version: str) -> dict[str, str]:
        row = self.db.run(lambda conn: conn.execute("SELECT files FROM rulesets WHERE version = %s",
                                                    (version,)).fetchone())
        if row is None:
            raise KeyError(version)
        return dict(row[0])

    def heartbeat(self, replica: str, ruleset: str | None, errors: list[str], started_at: dt.datetime) -> None:
        self.db.run(lambda conn: conn.execute(
            "INSERT INTO replicas (replica, ruleset, errors, started_at, seen_at) VALUES (%s, %s, %s, %s, now()) "
            "ON CONFLICT (replica) DO UPDATE SET ruleset = EXCLUDED.ruleset, errors = EXCLUDED.errors, "
            "seen_at = now()", (replica, ruleset, Jsonb(errors), started_at)))

    def replicas(self) -> list[dict[str, Any]]:
        rows = self.db.run(lambda conn: conn.execute(
            "SELECT replica, ruleset, errors, started_at, seen_at FROM replicas "
            "WHERE seen_at > now() - make_interval(secs => %s) ORDER BY replica", (LIVE_S,)).fetchall())
        return [{"replica": r[0], "ruleset": r[1], "errors": r[2],
                 "started_at": r[3].astimezone(dt.UTC).isoformat(timespec="seconds"),
                 "seen_at": r[4].astimezone(dt.UTC).isoformat(timespec="seconds")} for r in rows]
