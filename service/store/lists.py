"""Named black and grey lists the fraud rules read with ``in_list('name', value)``. Embedded
implementation: one SQLite file, ``LOAN_DATA_DIR/lists.sqlite3``.

The risk team declares each list and what it holds in ``rules/lists.yaml`` (part of the
ruleset: linted, versioned, reloaded). Entries come from ``POST/DELETE /admin/lists/{name}/entries``
or ``loan-decision lists import``; every change writes one audit row (who, which key, when, why,
the masked entry) in the same transaction as the change.

ID numbers, phones, device ids and USCCs are stored as keyed hashes (``service.store.keys``);
IP entries are stored as 16-byte ranges (IPv4 as IPv4-mapped IPv6), so one indexed query
answers both single addresses and CIDR blocks.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.identifiers import id_number_valid, phone_valid, uscc_valid
from service.logs import mask_id_number, mask_phone, mask_text
from service.store.keys import KeyedHash
from service.store.sqlite import connect

FRESH_S = 0.1  # another process's list change is seen within this

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    list TEXT NOT NULL, key BLOB NOT NULL, masked TEXT NOT NULL, added_at TEXT NOT NULL,
    PRIMARY KEY (list, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ip_ranges (
    list TEXT NOT NULL, lo BLOB NOT NULL, hi BLOB NOT NULL, entry TEXT NOT NULL,
    added_at TEXT NOT NULL, PRIMARY KEY (list, lo, hi)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, list TEXT NOT NULL, action TEXT NOT NULL, entry TEXT NOT NULL,
    actor TEXT NOT NULL, key_id TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_list ON audit(list, id);
"""


class EntryError(ValueError):
    """Entries refused, nothing changed; ``errors`` are (index into the values, why)."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"values[{i}]: {why}" for i, why in errors[:20]))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Change:
    list: str
    action: str  # add | remove
    actor: str
    key_id: str  # fingerprint of the API key (or "cli")
    reason: str


def _ip16(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    if isinstance(address, ipaddress.IPv4Address):
        address = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
    return address.packed


def mask(kind: str, value: str) -> str:
    """How an entry appears in the audit trail and answers: never a whole ID number or phone."""
    if kind == "id_number":
        return mask_id_number(value)
    if kind == "phone":
        return mask_phone(value)
    if kind == "device":
        return value[:4] + "…" if len(value) > 6 else "…"
    return value  # IPs and USCCs (a business's public registration number)


def parse_entry(kind: str, raw: Any) -> str | ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Check one entry for its list's kind; ValueError says why it is refused."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("must be non-empty text")
    value = raw.strip()
    if kind == "ip":
        try:
            return ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"not an IP address or CIDR block ({exc})") from None
    if kind == "id_number" and not id_number_valid(value):
        raise ValueError("not a valid resident identity number")
    if kind == "phone" and not phone_valid(value):
        raise ValueError("not a mainland mobile number")
    if kind == "uscc" and not uscc_valid(value):
        raise ValueError("not a valid unified social credit code")
    if kind == "device" and len(value) > 128:
        raise ValueError("a device id has at most 128 characters")
    return value.upper() if kind in ("id_number", "uscc") else value


def validate_entries(kinds: dict[str, str], name: str, values: list[Any]) -> tuple[str, list[Any]]:
    """The list's kind and its parsed ``values``; KeyError for an undeclared list, EntryError
    (naming every bad value) if any is bad."""
    kind = kinds.get(name)
    if kind is None:
        raise KeyError(name)
    parsed, errors = [], []
    for index, raw in enumerate(values):
        try:
            parsed.append(parse_entry(kind, raw))
        except ValueError as exc:
            errors.append((index, str(exc)))
    if errors:
        raise EntryError(errors)
    return kind, parsed


@dataclass(frozen=True, slots=True)
class Statements:
    """A backend's SQL for one change (its tables and placeholders; the logic is shared)."""

    add_range: str  # list, lo, hi, entry, at
    remove_range: str  # list, lo, hi
    add_entry: str  # list, key, masked, at
    remove_entry: str  # list, key
    audit: str  # list, action, entry, actor, key_id, reason, at


SQLITE_STATEMENTS = Statements(
    "INSERT INTO ip_ranges VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    "DELETE FROM ip_ranges WHERE list = ? AND lo = ? AND hi = ?",
    "INSERT INTO entries VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    "DELETE FROM entries WHERE list = ? AND key = ?",
    "INSERT INTO audit (list, action, entry, actor, key_id, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)")


# --- matching: one rule for every list store (SQLite, PostgreSQL, the rule tests' and the
# backtest's lists in memory): an entry is parsed by parse_entry and kept as its keyed hash, or
# for an ip list as a 16-byte range; an application's identifier is looked up by probe().

def entry_range(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[bytes, bytes]:
    return _ip16(network.network_address), _ip16(network.broadcast_address)


def probe(kind: str, value: Any, keyed: KeyedHash) -> bytes | None:
    """What an application's identifier is looked up by: for an ip list the 16-byte address
    (inside an entry's range), else its keyed hash (equal to an entry's); None: nothing matches."""
    if value is None:
        return None
    if kind != "ip":
        return keyed(kind, str(value))
    try:
        return _ip16(ipaddress.ip_address(str(value)))
    except ValueError:
        return None


def apply_change(conn: Any, sql: Statements, keyed: KeyedHash, kind: str, change: Change, value: Any,
                 now: Any) -> int:
    """Add or remove one parsed entry inside the caller's transaction, with its audit row if it
    changed anything; returns 1 or 0. ``conn``: an SQLite or a psycopg connection."""
    if kind == "ip":
        shown = str(value)
        lo, hi = entry_range(value)
        cursor = (conn.execute(sql.add_range, (change.list, lo, hi, shown, now)) if change.action == "add"
                  else conn.execute(sql.remove_range, (change.list, lo, hi)))
    else:
        shown = mask(kind, value)
        key = keyed(kind, value)
        cursor = (conn.execute(sql.add_entry, (change.list, key, shown, now)) if change.action == "add"
                  else conn.execute(sql.remove_entry, (change.list, key)))
    if cursor.rowcount:  # free text is kept masked: an actor or reason may quote an ID number or phone
        conn.execute(sql.audit, (change.list, change.action, shown, mask_text(change.actor), change.key_id,
                                 mask_text(change.reason), now))
    return int(cursor.rowcount)


def memberships(lists: Any, candidates: dict[str, list[str]]) -> frozenset[tuple[str, str]]:
    """Which of an application's identifiers (list name → values) are on which list."""
    return frozenset((name, value) for name, values in candidates.items() for value in values
                     if lists.contains(name, value))


class MemoryLists:
    """Lists held in memory — the entries a rule test or a backtest line gives — parsed, keyed
    and matched exactly as the stores do (the functions above); EntryError for an entry a store
    would refuse, KeyError for an undeclared list."""

    def __init__(self, kinds: dict[str, str], entries: dict[str, list[str]]) -> None:
        self.kinds = kinds
        self.keyed = KeyedHash(secrets.token_hex(16))  # never leaves this object
        self._keys: dict[str, set[bytes]] = {}
        self._ranges: dict[str, list[tuple[bytes, bytes]]] = {}
        for name, raw in entries.items():
            kind, parsed = validate_entries(kinds, name, raw)
            if kind == "ip":
                self._ranges[name] = [entry_range(network) for network in parsed]
            else:
                self._keys[name] = {self.keyed(kind, value) for value in parsed}

    def contains(self, name: str, value: Any) -> bool:
        kind = self.kinds.get(name)
        point = probe(kind, value, self.keyed) if kind is not None else None
        if point is None:
            return False
        if kind != "ip":
            return point in self._keys.get(name, ())
        return any(lo <= point <= hi for lo, hi in self._ranges.get(name, ()))

    def memberships(self, candidates: dict[str, list[str]]) -> frozenset[tuple[str, str]]:
        return memberships(self, candidates)


class SqliteLists:
    def __init__(self, path: Path, keyed: KeyedHash) -> None:
        self.path = path
        self.keyed = keyed
        self.kinds: dict[str, str] = {}  # the declared lists: name → kind
        self._conn: sqlite3.Connection | None = None
        # Lists with no entries answer without a query. Which those are is re-read when this
        # connection changes a list, or (for changes by another process, such as the CLI) when
        # SQLite's data_version moved, checked at most every FRESH_S.
        self._filled: set[str] = set()
        self._data_version: int | None = None
        self._checked = -1.0

    def open(self) -> None:
        self._conn = connect(self.path, "FULL", SCHEMA)  # an acknowledged black-list entry is kept

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def declare(self, kinds: dict[str, str]) -> None:
        """The lists the active ruleset declares (replaced on every reload)."""
        self.kinds = dict(kinds)
        self._data_version = None
        self._checked = -1.0

    # --- what gathering reads -----------------------------------------------------------

    def _refresh_filled(self) -> None:
        conn = self._conn
        assert conn is not None
        self._checked = time.monotonic()
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        self._filled = {name for name in self.kinds if conn.execute(
            "SELECT EXISTS (SELECT 1 FROM entries WHERE list = ?1) "
            "OR EXISTS (SELECT 1 FROM ip_ranges WHERE list = ?1)", (name,)).fetchone()[0]}

    def contains(self, name: str, value: Any) -> bool:
        kind = self.kinds.get(name)
        if kind is None or value is None or self._conn is None:
            return False
        if time.monotonic() - self._checked > FRESH_S:
            self._refresh_filled()
        if name not in self._filled:
            return False
        point = probe(kind, value, self.keyed)
        if point is None:
            return False
        if kind == "ip":
            row = self._conn.execute("SELECT 1 FROM ip_ranges WHERE list = ? AND lo <= ? AND hi >= ? LIMIT 1",
                                     (name, point, point)).fetchone()
        else:
            row = self._conn.execute("SELECT 1 FROM entries WHERE list = ? AND key = ?", (name, point)).fetchone()
        return row is not None

    def memberships(self, candidates: dict[str, list[str]]) -> frozenset[tuple[str, str]]:
        return memberships(self, candidates)

    def memberships_many(self, batch: list[dict[str, list[str]]]) -> list[frozenset[tuple[str, str]]]:
        return [memberships(self, candidates) for candidates in batch]

    # --- changes -------------------------------------------------------------------------

    def change(self, change: Change, values: list[Any]) -> int:
        """Add or remove ``values`` in one transaction with their audit rows; returns how many
        entries changed. EntryError (nothing changed) if any value is bad."""
        kind, parsed = validate_entries(self.kinds, change.list, values)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        conn = self._conn
        assert conn is not None, "list store not open"
        changed = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for value in parsed:
                changed += apply_change(conn, SQLITE_STATEMENTS, self.keyed, kind, change, value, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._data_version = None  # our own commits do not move data_version
        self._checked = -1.0
        return changed


    def sizes(self) -> dict[str, int]:
        assert self._conn is not None
        counts = dict.fromkeys(self.kinds, 0)
        for table in ("entries", "ip_ranges"):
            for name, count in self._conn.execute(f"SELECT list, count(*) FROM {table} GROUP BY list"):  # noqa: S608
                if name in counts:
                    counts[name] += count
        return counts

    def audit(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        assert self._conn is not None
        rows = self._conn.execute("SELECT id, action, entry, actor, key_id, reason, at FROM audit "
                                  "WHERE list = ? ORDER BY id DESC LIMIT ?", (name, limit)).fetchall()
        return [dict(zip(("id", "action", "entry", "actor", "key_id", "reason", "at"), row)) for row in rows]

    def healthy(self) -> bool:
        try:
            return self._conn is not None and self._conn.execute("SELECT 1").fetchone() == (1,)
        except sqlite3.Error:
            return False
