"""Decisions on PostgreSQL: the same group commit as SQLite (one transaction, one fsync per
batch), and the claim that keeps racing replicas from deciding an application twice.

A claim is a row in the UNLOGGED ``decision_claims`` table, written with ``synchronous_commit``
off: it costs no fsync. It only spares the providers a second call; what guarantees one decision
per application is still the decisions' UNIQUE constraint. A claim lapses after its ttl (its
replica died mid-decision) and the next request takes it over; the decision's commit removes it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
from typing import Any

import psycopg

from service.store.decisions import COLUMNS, Claim, DecisionRecord, DecisionStore, StoreUnavailable
from service.store.postgres import Database

SELECT = f"SELECT {COLUMNS} FROM decisions"
SWEEP_CLAIMS_EVERY = 1000
# One statement, so one round trip and one commit for a batch: insert what is new, drop the
# batch's claims; an application already decided (by another replica) inserts nothing.
WRITE = f"""
WITH batch AS (
    SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::text[], %s::text[], %s::text[],
                         %s::timestamptz[], %s::bytea[], %s::bytea[], %s::bytea[], %s::bytea[])
             AS b({COLUMNS}, application)
), inserted AS (
    INSERT INTO decisions ({COLUMNS}, application) SELECT {COLUMNS}, application FROM batch
    ON CONFLICT (application_id) DO NOTHING RETURNING decision_id
), released AS (
    DELETE FROM decision_claims WHERE application_id IN (SELECT application_id FROM batch)
)
SELECT decision_id FROM inserted
"""


def _record(row: tuple[Any, ...]) -> DecisionRecord:
    values = list(row)
    values[2], values[7], values[8], values[9] = (bytes(values[i]) for i in (2, 7, 8, 9))
    values[6] = values[6].astimezone(dt.UTC).isoformat()
    return DecisionRecord(*values)


class PostgresDecisions(DecisionStore):
    def __init__(self, database: Database, linger_s: float = 0.0, max_batch: int = 512) -> None:
        super().__init__(linger_s, max_batch)
        self.db = database
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self._batches = 0

    def open(self) -> None:
        self.db.open()
        self._start_writer()

    def close(self) -> None:
        self._stop_writer()
        self.db.close()

    def healthy(self) -> bool:
        return self._writer is not None and self._writer.is_alive() and self.db.healthy

    # --- reads: on a thread, never on the event loop ------------------------------------

    def get(self, decision_id: str) -> DecisionRecord | None:
        return self._one("decision_id", decision_id)

    def get_by_application(self, application_id: str) -> DecisionRecord | None:
        return self._one("application_id", application_id)

    def _one(self, column: str, value: str) -> DecisionRecord | None:
        try:
            row = self.db.run(lambda conn: conn.execute(f"{SELECT} WHERE {column} = %s", (value,)).fetchone())
        except psycopg.Error as exc:
            raise StoreUnavailable(f"decision store read failed: {type(exc).__name__}") from exc
        except Exception as exc:  # the pool timed out: the database is down
            raise StoreUnavailable(f"decision store read failed: {type(exc).__name__}") from exc
        return _record(row) if row else None

    async def find(self, decision_id: str) -> DecisionRecord | None:
        return await asyncio.to_thread(self.get, decision_id)

    async def find_by_application(self, application_id: str) -> DecisionRecord | None:
        return await asyncio.to_thread(self.get_by_application, application_id)

    async def claim(self, application_id: str, body_sha256: bytes, ttl_s: float) -> DecisionRecord | Claim:
        return await asyncio.to_thread(self._claim, application_id, body_sha256, ttl_s)

    async def application_of(self, decision_id: str) -> bytes | None:
        row = await asyncio.to_thread(self.db.run, lambda conn: conn.execute(
            "SELECT application FROM decisions WHERE decision_id = %s", (decision_id,)).fetchone())
        return bytes(row[0]) if row and row[0] is not None else None

    def _claim(self, application_id: str, body_sha256: bytes, ttl_s: float) -> DecisionRecord | Claim:
        def work(conn: psycopg.Connection) -> DecisionRecord | Claim:
            status, *row = conn.execute("SELECT * FROM decision_claim(%s, %s, %s, %s)",
                                        (application_id, body_sha256, self.replica, ttl_s)).fetchone()  # type: ignore[misc]
            return _record(tuple(row)) if status == "stored" else Claim(status)
        try:
            return self.db.run(work)
        except Exception as exc:  # noqa: BLE001 - psycopg errors and the pool's timeout alike
            raise StoreUnavailable(f"decision store claim failed: {type(exc).__name__}") from exc

    # --- writes: the writer thread ------------------------------------------------------

    def _write(self, records: list[DecisionRecord]) -> list[tuple[DecisionRecord, bool]]:
        def work(conn: psycopg.Connection) -> list[tuple[DecisionRecord, bool]]:
            columns = list(zip(*((rec.decision_id, rec.application_id, rec.body_sha256, rec.outcome, rec.product,
                                  rec.arm, rec.decided_at, rec.response, rec.trace, rec.shadow, rec.application)
                                 for rec in records)))
            cases = [rec for rec in records if rec.case is not None]
            if not cases:  # the common batch: one statement, committed on its own
                created = {row[0] for row in conn.execute(WRITE, [list(c) for c in columns]).fetchall()}
            else:  # referrals: their review cases commit with them
                with conn.transaction():
                    created = {row[0] for row in conn.execute(WRITE, [list(c) for c in columns]).fetchall()}
                    for rec in cases:
                        if rec.decision_id in created and rec.case is not None:
                            self._open_case(conn, rec.case)
            lost = [rec.application_id for rec in records if rec.decision_id not in created]
            earlier = {}
            if lost:  # decided before (elsewhere): answer with what was stored
                earlier = {row[1]: _record(row) for row in conn.execute(
                    f"{SELECT} WHERE application_id = ANY(%s)", (lost,)).fetchall()}
            self._batches += 1
            if self._batches % SWEEP_CLAIMS_EVERY == 0:  # claims whose replica died, long lapsed
                conn.execute("DELETE FROM decision_claims WHERE expires_at < now() - interval '1 hour'")
            return [(rec, True) if rec.decision_id in created else (earlier[rec.application_id], False)
                    for rec in records]
        return self.db.run(work)
