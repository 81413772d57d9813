"""The decision store: every answered decision, durable before its 200 goes out.

``DecisionStore`` is the interface and the group commit both backends share; ``SqliteDecisions``
is the embedded one, ``service.store.postgres.decisions.PostgresDecisions`` the one for replicas.

SQLite in WAL mode with ``synchronous=FULL``: a commit returns only after the WAL is fsync'd.
One writer thread owns the write connection and commits in groups: it takes everything queued,
inserts it in one transaction and commits once, so one fsync acknowledges a whole batch. While
that fsync runs, new decisions queue up and form the next batch, so batches grow with load and
an idle service adds no waiting. An optional linger lets the writer wait a little for more.

The application id is claimed by the table's UNIQUE constraint (``INSERT … ON CONFLICT DO
NOTHING``), never by select-then-insert: when two replicas race, the loser learns the winner's
row from the same transaction. Before the providers are called, ``claim`` tells a request whether
the application is already decided, free, or being decided elsewhere (PostgreSQL; one SQLite
file serves one host, where the in-process wait of ``service.decisions`` does that job).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from service import metrics
from service.store import review
from service.store.review import CaseEvent, CaseRow
from service.store.sqlite import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id    TEXT PRIMARY KEY,
    application_id TEXT NOT NULL UNIQUE,
    body_sha256    BLOB NOT NULL,
    outcome        TEXT NOT NULL,
    product        TEXT NOT NULL,
    arm            TEXT NOT NULL,
    decided_at     TEXT NOT NULL,
    response       BLOB NOT NULL,
    trace          BLOB NOT NULL,
    shadow         BLOB NOT NULL DEFAULT x'5b5d',
    application    BLOB
);
CREATE INDEX IF NOT EXISTS decisions_decided_at ON decisions(decided_at);
"""
# Columns added after the first release, added in place to an older file when it is opened.
MIGRATIONS = {"shadow": "ALTER TABLE decisions ADD COLUMN shadow BLOB NOT NULL DEFAULT x'5b5d'",
              "application": "ALTER TABLE decisions ADD COLUMN application BLOB"}
COLUMNS = "decision_id, application_id, body_sha256, outcome, product, arm, decided_at, response, trace, shadow"


class StoreUnavailable(Exception):
    """The decision could not be made durable; the caller must not acknowledge it."""


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    decision_id: str
    application_id: str
    body_sha256: bytes
    outcome: str
    product: str
    arm: str
    decided_at: str
    response: bytes  # the exact bytes answered, without the trace
    trace: bytes  # the trace as JSON, added to the answer on ?explain=true
    shadow: bytes = b"[]"  # shadow arms' results as JSON: recorded, never answered
    case: CaseRow | None = None  # a live referral's review case: opened in the same transaction
    # What it was decided on, as a backtest line: the request, the recorded stage facts, the list
    # hits. Written, read only by the backtest (never with the record).
    application: bytes | None = None

    def with_trace(self) -> bytes:
        """The response with its trace, composed the same way every time (byte-stable replays)."""
        return self.response[:-1] + b',"trace":' + self.trace + b"}"


class Claim(enum.Enum):
    OURS = "ours"  # decide it
    ELSEWHERE = "elsewhere"  # another replica is deciding it: wait for its stored decision


@dataclass(slots=True)
class _Pending:
    record: DecisionRecord
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


_STOP = object()


class DecisionStore(abc.ABC):
    """One writer thread commits whatever is queued as one transaction (group commit)."""

    def __init__(self, linger_s: float = 0.0, max_batch: int = 512) -> None:
        self.reviews: review.ReviewStore | None = None  # set by service.store.backends
        self.linger_s = linger_s
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    def _start_writer(self) -> None:
        self._writer = threading.Thread(target=self._run_writer, name="decision-writer", daemon=True)
        self._writer.start()

    def _stop_writer(self) -> None:
        """Commit what is queued, then stop the writer."""
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join()
            self._writer = None

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def healthy(self) -> bool:
        """Cheap: answered from memory (``/readyz`` and every decision ask)."""

    @abc.abstractmethod
    async def find(self, decision_id: str) -> DecisionRecord | None: ...

    @abc.abstractmethod
    async def find_by_application(self, application_id: str) -> DecisionRecord | None: ...

    @abc.abstractmethod
    async def application_of(self, decision_id: str) -> bytes | None:
        """What the decision was made on (the backtest line), if it was stored with it."""

    @abc.abstractmethod
    async def claim(self, application_id: str, body_sha256: bytes, ttl_s: float) -> DecisionRecord | Claim:
        """The stored decision for ``application_id``, or whether this request may decide it.
        A claim lapses after ``ttl_s`` (its replica died): the next request takes it over."""

    @abc.abstractmethod
    def _write(self, records: list[DecisionRecord]) -> list[tuple[DecisionRecord, bool]]:
        """Insert ``records`` in one transaction; for each, (the stored record, created)."""

    async def save(self, record: DecisionRecord) -> tuple[DecisionRecord, bool]:
        """Make ``record`` durable. Returns (the stored record, True) when this call claimed the
        application id, or (the record stored earlier for that id, False)."""
        if self._writer is None:
            raise StoreUnavailable("decision store is not open")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Pending(record, future, loop))
        return await future

    def _run_writer(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            if self.linger_s:
                time.sleep(self.linger_s)
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)

    def _open_case(self, conn: object, case: CaseRow) -> None:
        assert self.reviews is not None, "a review case needs the review store"
        self.reviews.insert_case(conn, case, CaseEvent(case.case_id, case.opened_at, "system", "opened",
                                                      None, case.state))

    def _commit(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            results: list = self._write([pending.record for pending in batch])
        except Exception as exc:  # noqa: BLE001 - any failure must reach the waiting requests
            error = StoreUnavailable(f"decision store write failed: {type(exc).__name__}: {exc}")
            self._resolve(batch, [error] * len(batch))
            return
        metrics.STORE_COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.STORE_BATCH_SIZE.observe(len(batch))
        self._resolve(batch, results)

    @staticmethod
    def _resolve(batch: list[_Pending], outcomes: list) -> None:
        # One wake-up per event loop per batch, not one per decision.
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for pending, outcome in zip(batch, outcomes):
            by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # the loop closed while we were committing
                pass


class SqliteDecisions(DecisionStore):
    def __init__(self, path: Path, linger_s: float = 0.0, max_batch: int = 512) -> None:
        super().__init__(linger_s, max_batch)
        self.path = path
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        self._conn = connect(self.path, "FULL", SCHEMA + review.SCHEMA)
        present = {row[1] for row in self._conn.execute("PRAGMA table_info(decisions)")}
        for column, statement in MIGRATIONS.items():
            if column not in present:
                self._conn.execute(statement)
        self._read = connect(self.path)
        self._start_writer()

    def close(self) -> None:
        self._stop_writer()
        for conn in (self._read, self._conn):
            if conn is not None:
                conn.close()
        self._read = self._conn = None

    def healthy(self) -> bool:
        if self._writer is None or not self._writer.is_alive() or self._read is None:
            return False
        try:
            self._read.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    # --- reads: point lookups by key. The async ones run on a worker thread: a WAL reader
    # takes no lock, but may still wait on the busy timeout (the WAL index being rebuilt) or
    # a cold page; the hop costs ≈ 35 µs of CPU (RESULTS.md, issue 13), and keeps the loop free.

    def get(self, decision_id: str) -> DecisionRecord | None:
        return self._one("decision_id", decision_id)

    def get_by_application(self, application_id: str) -> DecisionRecord | None:
        return self._one("application_id", application_id)

    async def find(self, decision_id: str) -> DecisionRecord | None:
        return await asyncio.to_thread(self.get, decision_id)

    async def find_by_application(self, application_id: str) -> DecisionRecord | None:
        return await asyncio.to_thread(self.get_by_application, application_id)

    async def claim(self, application_id: str, body_sha256: bytes, ttl_s: float) -> DecisionRecord | Claim:
        return await self.find_by_application(application_id) or Claim.OURS

    async def application_of(self, decision_id: str) -> bytes | None:
        def read() -> bytes | None:
            assert self._read is not None, "store is not open"
            with self._read_lock:
                row = self._read.execute("SELECT application FROM decisions WHERE decision_id = ?",
                                         (decision_id,)).fetchone()
            return bytes(row[0]) if row and row[0] is not None else None
        return await asyncio.to_thread(read)

    def _one(self, column: str, value: str) -> DecisionRecord | None:
        assert self._read is not None, "store is not open"
        with self._read_lock:  # one read connection, used from the worker threads one at a time
            row = self._read.execute(f"SELECT {COLUMNS} FROM decisions WHERE {column} = ?", (value,)).fetchone()
        return DecisionRecord(*row) if row else None

    # --- writes ------------------------------------------------------------------------------

    def _write(self, records: list[DecisionRecord]) -> list[tuple[DecisionRecord, bool]]:
        conn = self._conn
        assert conn is not None
        results: list[tuple[DecisionRecord, bool]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for rec in records:
                cur = conn.execute(
                    f"INSERT INTO decisions ({COLUMNS}, application) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(application_id) DO NOTHING",
                    (rec.decision_id, rec.application_id, rec.body_sha256, rec.outcome,
                     rec.product, rec.arm, rec.decided_at, rec.response, rec.trace, rec.shadow, rec.application),
                )
                if cur.rowcount == 1:
                    if rec.case is not None:
                        self._open_case(conn, rec.case)
                    results.append((rec, True))
                else:
                    row = conn.execute(f"SELECT {COLUMNS} FROM decisions WHERE application_id = ?",
                                       (rec.application_id,)).fetchone()
                    results.append((DecisionRecord(*row), False))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results


def _settle(items: list) -> None:
    for future, outcome in items:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
