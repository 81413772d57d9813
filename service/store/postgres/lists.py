"""Lists on PostgreSQL: every replica reads the shared tables directly, so a change made through
any replica (or the CLI) is seen by all of them at its commit — nothing is cached but the
declared lists. A batch of applications' memberships is one query."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from service.store.keys import KeyedHash
from service.store.lists import Change, Statements, apply_change, probe, validate_entries
from service.store.postgres import Database

MEMBERSHIPS = """
SELECT c.i FROM unnest(%(lists)s::text[], %(keys)s::bytea[], %(idx)s::int[]) AS c(list, key, i)
 WHERE EXISTS (SELECT 1 FROM list_entries e WHERE e.list = c.list AND e.key = c.key)
UNION ALL
SELECT c.i FROM unnest(%(ip_lists)s::text[], %(points)s::bytea[], %(ip_idx)s::int[]) AS c(list, p, i)
 WHERE EXISTS (SELECT 1 FROM list_ip_ranges r WHERE r.list = c.list AND r.lo <= c.p AND r.hi >= c.p)
"""


STATEMENTS = Statements(
    "INSERT INTO list_ip_ranges VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
    "DELETE FROM list_ip_ranges WHERE list = %s AND lo = %s AND hi = %s",
    "INSERT INTO list_entries VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
    "DELETE FROM list_entries WHERE list = %s AND key = %s",
    "INSERT INTO list_audit (list, action, entry, actor, key_id, reason, at) VALUES (%s, %s, %s, %s, %s, %s, %s)")


class PostgresLists:
    def __init__(self, database: Database, keyed: KeyedHash) -> None:
        self.db = database
        self.keyed = keyed
        self.kinds: dict[str, str] = {}

    def open(self) -> None:
        self.db.open()

    def close(self) -> None:
        self.db.close()

    def healthy(self) -> bool:
        return self.db.healthy

    def declare(self, kinds: dict[str, str]) -> None:
        self.kinds = dict(kinds)

    def contains(self, name: str, value: Any) -> bool:
        return (name, value) in self.memberships({name: [value]})

    def memberships(self, candidates: dict[str, list[str]]) -> frozenset[tuple[str, str]]:
        return self.memberships_many([candidates])[0]

    def memberships_many(self, batch: list[dict[str, list[str]]]) -> list[frozenset[tuple[str, str]]]:
        asked: list[tuple[int, str, str]] = []  # (application, list, value)
        params: dict[str, list[Any]] = {k: [] for k in ("lists", "keys", "idx", "ip_lists", "points", "ip_idx")}
        for application, candidates in enumerate(batch):
            for name, values in candidates.items():
                kind = self.kinds.get(name)
                for value in values:
                    point = probe(kind, value, self.keyed) if kind is not None else None
                    if point is None:
                        continue
                    if kind == "ip":
                        params["ip_lists"].append(name)
                        params["points"].append(point)
                        params["ip_idx"].append(len(asked))
                    else:
                        params["lists"].append(name)
                        params["keys"].append(point)
                        params["idx"].append(len(asked))
                    asked.append((application, name, value))
        found: list[set[tuple[str, str]]] = [set() for _ in batch]
        if asked:
            for (i,) in self.db.run(lambda conn: conn.execute(MEMBERSHIPS, params).fetchall()):
                application, name, value = asked[i]
                found[application].add((name, value))
        return [frozenset(f) for f in found]

    def change(self, change: Change, values: list[Any]) -> int:
        """Add or remove ``values`` with their audit rows in one transaction (see SqliteLists)."""
        kind, parsed = validate_entries(self.kinds, change.list, values)
        now = dt.datetime.now(dt.UTC)

        def work(conn: psycopg.Connection) -> int:
            changed = 0
            with conn.transaction():
                for value in parsed:
                    changed += apply_change(conn, STATEMENTS, self.keyed, kind, change, value, now)
            return changed
        return self.db.run(work)


    def sizes(self) -> dict[str, int]:
        counts = dict.fromkeys(self.kinds, 0)
        rows = self.db.run(lambda conn: conn.execute(
            "SELECT list, count(*) FROM list_entries GROUP BY list UNION ALL "
            "SELECT list, count(*) FROM list_ip_ranges GROUP BY list").fetchall())
        for name, count in rows:
            if name in counts:
                counts[name] += count
        return counts

    def audit(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.run(lambda conn: conn.execute(
            "SELECT id, action, entry, actor, key_id, reason, at FROM list_audit WHERE list = %s "
            "ORDER BY id DESC LIMIT %s", (name, limit)).fetchall())
        return [dict(zip(("id", "action", "entry", "actor", "key_id", "reason", "at"),
                         (*row[:6], row[6].astimezone(dt.UTC).isoformat(timespec="seconds")))) for row in rows]
