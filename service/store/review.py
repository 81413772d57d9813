"""Review cases, their audit trail and the callback outbox: the rows behind the manual-review
channel, on SQLite (the decisions' own file) or PostgreSQL — one interface.

The store knows rows, not rules: what a claim or a verdict does to a case is decided by
``service.review`` in a function the store runs inside one transaction, with the case's row
locked (``BEGIN IMMEDIATE`` on SQLite, ``SELECT … FOR UPDATE`` on PostgreSQL). So two reviewers
on two replicas claiming one case are serialised by the database, and a case's new state, its
audit events and the outbox event for the bank's backend commit together or not at all.

A case is opened by the decision writer in the same transaction as its ``refer`` decision
(``open_case``), never separately.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, fields
from typing import Any

from service.store.sqlite import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS review_cases (
    case_id        TEXT PRIMARY KEY,
    decision_id    TEXT NOT NULL UNIQUE,
    application_id TEXT NOT NULL,
    product        TEXT NOT NULL,
    state          TEXT NOT NULL,
    opened_at      TEXT NOT NULL,
    submitted_at   TEXT NOT NULL,
    due_at         TEXT NOT NULL,
    amount         REAL NOT NULL,
    context        BLOB NOT NULL,
    holder         TEXT,
    lease_until    TEXT,
    proposal       BLOB,
    verdict        BLOB,
    outcome        TEXT,
    decided_by     TEXT,
    confirmed_by   TEXT,
    decided_at     TEXT,
    breached_at    TEXT,
    version        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS review_cases_queue ON review_cases(due_at, case_id) WHERE state <> 'decided';
CREATE INDEX IF NOT EXISTS review_cases_opened ON review_cases(opened_at);
CREATE TABLE IF NOT EXISTS review_events (
    case_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    at         TEXT NOT NULL,
    key        TEXT NOT NULL,
    action     TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    note       TEXT,
    PRIMARY KEY (case_id, seq)
);
CREATE TABLE IF NOT EXISTS outbox (
    event_id        TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    decision_id     TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    payload         BLOB NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at    TEXT,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_decision ON outbox(decision_id);
"""

DECIDED = "decided"
LIVE_STATES = ("open", "claimed", "awaiting_confirmation", "confirming")


@dataclass(frozen=True, slots=True)
class CaseRow:
    case_id: str
    decision_id: str
    application_id: str
    product: str
    state: str
    opened_at: dt.datetime
    submitted_at: dt.datetime
    due_at: dt.datetime
    amount: float
    context: bytes  # JSON: what the reviewer sees (masked application, reasons, score, checks)
    holder: str | None = None  # the key holding the lease
    lease_until: dt.datetime | None = None
    proposal: bytes | None = None  # JSON: an approval waiting for a second reviewer
    verdict: bytes | None = None  # JSON: the final verdict (outcome, offer, reason, note)
    outcome: str | None = None  # approve | decline, once decided
    decided_by: str | None = None
    confirmed_by: str | None = None
    decided_at: dt.datetime | None = None
    breached_at: dt.datetime | None = None
    version: int = 0


CASE_COLUMNS = ", ".join(f.name for f in fields(CaseRow))
_TIMES = {i for i, f in enumerate(fields(CaseRow)) if f.name.endswith(("_at", "_until"))}


@dataclass(frozen=True, slots=True)
class CaseEvent:
    case_id: str
    at: dt.datetime
    key: str  # the API key's name, or "system" (lease expiry, deadline)
    action: str  # opened | claimed | released | expired | proposed | decided | confirmed | rejected | breached
    from_state: str | None
    to_state: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    event_id: str
    kind: str
    decision_id: str
    created_at: dt.datetime
    payload: bytes
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None
    last_error: str | None = None


OUTBOX_COLUMNS = ", ".join(f.name for f in fields(OutboxEvent))


@dataclass(slots=True)
class Change:
    """What a transition does: the case's new row, its audit events, events for the outbox."""

    case: CaseRow
    events: list[CaseEvent] = field(default_factory=list)
    outbox: list[OutboxEvent] = field(default_factory=list)


class CaseNotFound(Exception):
    pass


Transition = Callable[[CaseRow], Change]


def utc_text(value: dt.datetime) -> str:
    """Fixed-width UTC text, so that SQLite orders times as text correctly."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


class ReviewStore(abc.ABC):
    """The queries both backends share, written once with ``?`` placeholders."""

    placeholder = "?"

    def q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    # --- what a backend provides ----------------------------------------------------------

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def _read(self, work: Callable[[Any], Any]) -> Any: ...

    @abc.abstractmethod
    def _transaction(self, work: Callable[[Any], Any]) -> Any: ...

    @abc.abstractmethod
    def _time_in(self, value: dt.datetime | None) -> Any: ...

    @abc.abstractmethod
    def _time_out(self, value: Any) -> dt.datetime | None: ...

    @abc.abstractmethod
    def _lock_case(self, conn: Any, case_id: str) -> tuple[Any, ...] | None: ...

    # --- rows ------------------------------------------------------------------------------

    def _case(self, row: tuple[Any, ...]) -> CaseRow:
        values: list[Any] = [self._time_out(v) if i in _TIMES else v for i, v in enumerate(row)]
        for i in (9, 12, 13):
            values[i] = bytes(values[i]) if values[i] is not None else None
        return CaseRow(*values)

    def _case_values(self, case: CaseRow) -> tuple[Any, ...]:
        return tuple(self._time_in(v) if i in _TIMES else v for i, v in enumerate(astuple(case)))

    def _event(self, row: tuple[Any, ...]) -> OutboxEvent:
        values = list(row)
        values[3], values[6], values[7] = (self._time_out(values[i]) for i in (3, 6, 7))
        values[4] = bytes(values[4])
        return OutboxEvent(*values)

    def insert_case(self, conn: Any, case: CaseRow, event: CaseEvent) -> None:
        """Open a case (the decision writer calls this inside its own transaction)."""
        marks = ",".join("?" * len(fields(CaseRow)))
        conn.execute(self.q(f"INSERT INTO review_cases ({CASE_COLUMNS}) VALUES ({marks})"), self._case_values(case))
        self._insert_events(conn, [event])

    def open_case(self, case: CaseRow, event: CaseEvent) -> bool:
        """Open a case on its own (an applicant's request); False if the decision has one already."""
        def work(conn: Any) -> bool:
            if conn.execute(self.q("SELECT 1 FROM review_cases WHERE decision_id = ?"), (case.decision_id,)).fetchone():
                return False
            self.insert_case(conn, case, event)
            return True
        return bool(self._transaction(work))

    def _insert_events(self, conn: Any, events: list[CaseEvent]) -> None:
        for event in events:
            conn.execute(self.q(
                "INSERT INTO review_events (case_id, seq, at, key, action, from_state, to_state, note) "
                "SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ?, ?, ? FROM review_events WHERE case_id = ?"),
                (event.case_id, self._time_in(event.at), event.key, event.action, event.from_state,
                 event.to_state, event.note, event.case_id))

    # --- reads -----------------------------------------------------------------------------

    def get(self, case_id: str) -> CaseRow | None:
        row = self._read(lambda c: c.execute(
            self.q(f"SELECT {CASE_COLUMNS} FROM review_cases WHERE case_id = ?"), (case_id,)).fetchone())
        return self._case(row) if row else None

    def by_decision(self, decision_id: str) -> CaseRow | None:
        row = self._read(lambda c: c.execute(
            self.q(f"SELECT {CASE_COLUMNS} FROM review_cases WHERE decision_id = ?"), (decision_id,)).fetchone())
        return self._case(row) if row else None

    def queue(self, states: tuple[str, ...], product: str | None, after: tuple[dt.datetime, str] | None,
              limit: int) -> list[CaseRow]:
        """Cases in ``states``, earliest deadline first, from just after the cursor ``after``."""
        sql = f"SELECT {CASE_COLUMNS} FROM review_cases WHERE state IN ({','.join('?' * len(states))})"
        params: list[Any] = list(states)
        if product is not None:
            sql += " AND product = ?"
            params.append(product)
        if after is not None:
            sql += " AND (due_at > ? OR (due_at = ? AND case_id > ?))"
            params += [self._time_in(after[0]), self._time_in(after[0]), after[1]]
        sql += " ORDER BY due_at, case_id LIMIT ?"
        params.append(limit)
        return [self._case(r) for r in self._read(lambda c: c.execute(self.q(sql), params).fetchall())]

    def history(self, case_id: str) -> list[CaseEvent]:
        rows = self._read(lambda c: c.execute(self.q(
            "SELECT case_id, at, key, action, from_state, to_state, note FROM review_events "
            "WHERE case_id = ? ORDER BY seq"), (case_id,)).fetchall())
        return [CaseEvent(r[0], self._time_out(r[1]), *r[2:]) for r in rows]  # type: ignore[arg-type]

    def lapsed(self, now: dt.datetime, limit: int = 100) -> list[str]:
        """Cases whose reviewer's lease ran out."""
        return [r[0] for r in self._read(lambda c: c.execute(self.q(
            "SELECT case_id FROM review_cases WHERE state IN ('claimed', 'confirming') AND lease_until < ? "
            "LIMIT ?"), (self._time_in(now), limit)).fetchall())]

    def overdue(self, now: dt.datetime, limit: int = 100) -> list[str]:
        """Undecided cases past their deadline, not yet counted as breached."""
        return [r[0] for r in self._read(lambda c: c.execute(self.q(
            "SELECT case_id FROM review_cases WHERE state <> 'decided' AND due_at < ? AND breached_at IS NULL "
            "ORDER BY due_at LIMIT ?"), (self._time_in(now), limit)).fetchall())]

    def depth(self) -> list[tuple[str, str, int, dt.datetime | None]]:
        """(product, state, cases, the oldest's opening) for every undecided state."""
        rows = self._read(lambda c: c.execute(
            "SELECT product, state, count(*), min(opened_at) FROM review_cases WHERE state <> 'decided' "
            "GROUP BY product, state").fetchall())
        return [(p, s, int(n), self._time_out(o)) for p, s, n, o in rows]

    # --- the one way a case changes --------------------------------------------------------

    def transition(self, case_id: str, change: Transition) -> Change:
        """Lock the case, let ``change`` say what happens (it may raise: nothing is written),
        then write the new row, its audit events and its outbox events in that transaction."""
        def work(conn: Any) -> Change:
            row = self._lock_case(conn, case_id)
            if row is None:
                raise CaseNotFound(case_id)
            before = self._case(row)
            result = change(before)
            if result.case != before:
                assignments = ", ".join(f"{f.name} = ?" for f in fields(CaseRow)[4:])
                values = self._case_values(result.case)
                conn.execute(self.q(f"UPDATE review_cases SET {assignments} WHERE case_id = ?"),
                             (*values[4:], case_id))
            self._insert_events(conn, result.events)
            for event in result.outbox:
                conn.execute(self.q(f"INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"),
                             (event.event_id, event.kind, event.decision_id, self._time_in(event.created_at),
                              event.payload, 0, self._time_in(event.created_at), None, None))
            return result
        return self._transaction(work)

    # --- the outbox ------------------------------------------------------------------------

    def due_events(self, now: dt.datetime, lease_s: float, limit: int) -> list[OutboxEvent]:
        """Undelivered events whose time has come, leased for ``lease_s`` (their next attempt is
        moved past it), so that another worker or replica does not send them at the same time."""
        until = self._time_in(now + dt.timedelta(seconds=lease_s))

        def work(conn: Any) -> list[OutboxEvent]:
            rows = conn.execute(self.q(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ? "
                f"ORDER BY next_attempt_at LIMIT ?{self._skip_locked}"), (self._time_in(now), limit)).fetchall()
            for row in rows:
                conn.execute(self.q("UPDATE outbox SET next_attempt_at = ? WHERE event_id = ?"), (until, row[0]))
            return [self._event(r) for r in rows]
        return self._transaction(work)

    _skip_locked = ""

    def delivered(self, event_id: str, now: dt.datetime, attempts: int) -> None:
        self._transaction(lambda c: c.execute(self.q(
            "UPDATE outbox SET delivered_at = ?, attempts = ?, last_error = NULL WHERE event_id = ?"),
            (self._time_in(now), attempts, event_id)))

    def failed(self, event_id: str, attempts: int, retry_at: dt.datetime, error: str) -> None:
        self._transaction(lambda c: c.execute(self.q(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE event_id = ?"),
            (attempts, self._time_in(retry_at), error[:500], event_id)))

    def pending(self) -> tuple[int, dt.datetime | None]:
        """(events not yet delivered, the oldest one's creation)."""
        count, oldest = self._read(lambda c: c.execute(
            "SELECT count(*), min(created_at) FROM outbox WHERE delivered_at IS NULL").fetchone())
        return int(count), self._time_out(oldest)

    def events_of(self, decision_id: str) -> list[OutboxEvent]:
        rows = self._read(lambda c: c.execute(self.q(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE decision_id = ? ORDER BY created_at"),
            (decision_id,)).fetchall())
        return [self._event(r) for r in rows]


class SqliteReviews(SqliteFile, ReviewStore):
    """On the decisions' own SQLite file: a case opens in the decision's transaction."""

    schema = SCHEMA

    def _lock_case(self, conn: Any, case_id: str) -> tuple[Any, ...] | None:
        return conn.execute(f"SELECT {CASE_COLUMNS} FROM review_cases WHERE case_id = ?", (case_id,)).fetchone()

    def _time_in(self, value: dt.datetime | None) -> Any:
        return utc_text(value) if value is not None else None

    def _time_out(self, value: Any) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value) if value is not None else None
