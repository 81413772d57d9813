"""The pre-approved whitelist: customers a batch job has assessed, with segment, limit, rate tier
and an expiry. Embedded implementation: one immutable SQLite file per imported version.

    LOAN_DATA_DIR/whitelist/v7.sqlite3   a complete version, never written after import
    LOAN_DATA_DIR/whitelist/ACTIVE       the name of the version that serves

An import streams the CSV into ``vN.sqlite3.partial`` (rows first into a staging file, then into
the key-ordered table in one sorted pass, which keeps 10^7 rows fast), fsyncs it, renames it, and
only then replaces ``ACTIVE`` (write, fsync, rename: atomic). Until that rename every worker keeps
serving the previous version; an import that dies midway leaves only ``.partial`` files, which the
next import removes. Workers notice a new ``ACTIVE`` within ``LOAN_WHITELIST_POLL_S``.

Raw ID numbers are never stored: the key is the keyed hash (``service.store.keys``).
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import functools
import hashlib
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from service.identifiers import id_number_valid
from service.store.keys import KEY_BYTES, KeyedHash

ACTIVE = "ACTIVE"
COLUMNS = ("segment", "limit", "rate_tier", "valid_until")
SEGMENT = re.compile(r"[a-z][a-z0-9_]{0,31}")
RATE_TIER = re.compile(r"[A-Za-z0-9_]{1,16}")
HEX_KEY = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{64}")
MAX_LIMIT = 1e8
SHOWN_ERRORS = 50
BATCH = 50_000


@dataclass(frozen=True, slots=True)
class WhitelistEntry:
    segment: str
    limit: float
    rate_tier: str
    valid_until: dt.date


@dataclass(frozen=True)
class ImportReport:
    version: str
    rows: int
    seconds: float
    previous: str | None


class WhitelistImportError(Exception):
    """The file was refused; nothing was loaded. ``errors`` are ``line N: why`` lines."""

    def __init__(self, errors: list[str], bad_rows: int) -> None:
        shown = errors[:SHOWN_ERRORS]
        more = f"\n… and {bad_rows - len(shown)} more bad rows" if bad_rows > len(shown) else ""
        super().__init__("\n".join(shown) + more)
        self.errors = shown
        self.bad_rows = bad_rows


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_row(identity: str, segment: str, limit_text: str, tier: str, until: str,
               keyed: Callable[[str, str], bytes], by_hash: bool) -> tuple[bytes, str, float, str, str]:
    """One CSV row → (key, segment, limit, rate_tier, valid_until); ValueError says what is wrong."""
    if by_hash:
        digest = identity.strip()
        if not HEX_KEY.fullmatch(digest):
            raise ValueError("id_hash must be 32 or 64 hex digits (HMAC-SHA256 of 'id_number:' + ID)")
        key = bytes.fromhex(digest)[:KEY_BYTES]
    else:
        number = identity.strip().upper()
        if not id_number_valid(number):
            raise ValueError("id_number is not a valid resident identity number")
        key = keyed("id_number", number)
    segment = segment.strip()
    if not SEGMENT.fullmatch(segment):
        raise ValueError("segment must be lower_snake_case, at most 32 characters")
    try:
        limit = float(limit_text)
    except ValueError:
        raise ValueError(f"limit '{limit_text}' is not a number") from None
    if not (math.isfinite(limit) and 0 < limit <= MAX_LIMIT):
        raise ValueError(f"limit must be above 0 and at most {MAX_LIMIT:.0f}")
    tier = tier.strip()
    if not RATE_TIER.fullmatch(tier):
        raise ValueError("rate_tier must be 1-16 letters, digits or _")
    return key, segment, limit, tier, _iso_date(until.strip())


@functools.lru_cache(maxsize=4096)  # a whitelist has few distinct expiry dates
def _iso_date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"valid_until '{text}' is not a date (YYYY-MM-DD)") from None


class Rows:
    """The valid rows of a whitelist CSV as (key, line, segment, limit, rate_tier, valid_until),
    streamed; every row is validated, and WhitelistImportError (at the end, naming the bad lines)
    if any is bad or there is none. Both stores import through this."""

    def __init__(self, source: Path, keyed: KeyedHash) -> None:
        self.source = source
        self.keyed = keyed
        self.rows = 0
        self.digest = hashlib.sha256()  # of the keys in file order: tells two imports apart

    def __iter__(self) -> Iterator[tuple[bytes, int, str, float, str, str]]:
        errors: list[str] = []
        bad = 0
        with self.source.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            id_columns = [c for c in ("id_number", "id_hash") if c in header]
            missing = [c for c in COLUMNS if c not in header]
            unknown = [c for c in header if c not in (*COLUMNS, "id_number", "id_hash")]
            if len(id_columns) != 1 or missing or unknown:
                raise WhitelistImportError([
                    "line 1: the header must name exactly one of id_number, id_hash and "
                    f"{', '.join(COLUMNS)}" + (f"; unknown: {', '.join(unknown)}" if unknown else "")], 1)
            by_hash = id_columns[0] == "id_hash"
            order = [header.index(c) for c in (id_columns[0], *COLUMNS)]
            width = len(header)
            for row in reader:
                line = reader.line_num
                if not row:
                    continue  # a blank line
                if len(row) != width:
                    bad += 1
                    if len(errors) < SHOWN_ERRORS:
                        errors.append(f"line {line}: expected {width} columns, found {len(row)}")
                    continue
                try:
                    identity, segment_text, limit_text, tier_text, until_text = (row[i] for i in order)
                    key, segment, limit, tier, until = _parse_row(identity, segment_text, limit_text, tier_text,
                                                                  until_text, self.keyed, by_hash)
                except ValueError as exc:
                    bad += 1
                    if len(errors) < SHOWN_ERRORS:
                        errors.append(f"line {line}: {exc}")
                    continue
                self.digest.update(key)
                self.rows += 1
                if not bad:  # the file is refused anyway: keep validating, stop yielding
                    yield key, line, segment, limit, tier, until
        if bad:
            raise WhitelistImportError(errors, bad)
        if self.rows == 0:
            raise WhitelistImportError(["the file has no rows: an empty whitelist is refused"], 0)


def _versions(directory: Path) -> list[int]:
    return sorted(int(p.name[1:-8]) for p in directory.glob("v*.sqlite3") if p.name[1:-8].isdigit())


def active_version(directory: Path) -> str | None:
    try:
        return (directory / ACTIVE).read_text().strip() or None
    except FileNotFoundError:
        return None


def import_whitelist(directory: Path, source: Path, keyed: KeyedHash,
                     progress: Callable[[int], None] | None = None) -> ImportReport:
    """Validate every row of ``source`` and publish it as the new active version, or raise
    WhitelistImportError with the bad rows' line numbers and change nothing."""
    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    # Private to the service whatever the caller's umask (the CLI sets 077; a library caller may not).
    with os.fdopen(os.open(directory / "import.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WhitelistImportError(["another whitelist import is running"], 0) from None
        for stale in directory.glob("*.partial"):
            stale.unlink()  # left by an import that died; we hold the lock, so none is running
        number = (_versions(directory) or [0])[-1] + 1
        name = f"v{number}.sqlite3"
        partial, staging = directory / (name + ".partial"), directory / f"v{number}.staging.partial"
        try:
            rows = _load(partial, staging, source, keyed, progress)
        except BaseException:
            partial.unlink(missing_ok=True)
            staging.unlink(missing_ok=True)
            raise
        os.chmod(partial, 0o600)
        _fsync_path(partial)
        os.rename(partial, directory / name)
        previous = active_version(directory)
        pointer = directory / (ACTIVE + ".tmp")
        with os.fdopen(os.open(pointer, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(pointer, directory / ACTIVE)
        _fsync_path(directory)
        for old in _versions(directory):  # keep the active and the previous version
            if f"v{old}.sqlite3" not in (name, previous):
                (directory / f"v{old}.sqlite3").unlink(missing_ok=True)
    return ImportReport(name, rows, time.perf_counter() - started, previous)


def _load(partial: Path, staging: Path, source: Path, keyed: KeyedHash,
          progress: Callable[[int], None] | None) -> int:
    conn = sqlite3.connect(partial, isolation_level=None)
    try:
        conn.executescript(f"""
            PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;
            ATTACH '{staging}' AS staging;
            PRAGMA staging.journal_mode=OFF; PRAGMA staging.synchronous=OFF;
            CREATE TABLE staging.rows (key BLOB, line INTEGER, segment TEXT, credit_limit REAL,
                                       rate_tier TEXT, valid_until TEXT);
            CREATE TABLE entries (key BLOB PRIMARY KEY, segment TEXT NOT NULL,
                                  credit_limit REAL NOT NULL, rate_tier TEXT NOT NULL,
                                  valid_until TEXT NOT NULL) WITHOUT ROWID;
            CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        """)
        rows_read = Rows(source, keyed)
        batch: list[tuple] = []
        conn.execute("BEGIN")
        for row in rows_read:
            batch.append(row)
            if len(batch) >= BATCH:
                conn.executemany("INSERT INTO staging.rows VALUES (?,?,?,?,?,?)", batch)
                batch.clear()
                if progress:
                    progress(rows_read.rows)
        conn.executemany("INSERT INTO staging.rows VALUES (?,?,?,?,?,?)", batch)
        rows, digest = rows_read.rows, rows_read.digest
        try:
            conn.execute("INSERT INTO entries SELECT key, segment, credit_limit, rate_tier, valid_until "
                         "FROM staging.rows ORDER BY key")
        except sqlite3.IntegrityError:
            duplicates = conn.execute(
                "SELECT group_concat(line, ', '), count(*) FROM staging.rows GROUP BY key "
                "HAVING count(*) > 1 LIMIT ?", (SHOWN_ERRORS,)).fetchall()
            raise WhitelistImportError(
                [f"lines {lines}: the same customer {count} times" for lines, count in duplicates],
                len(duplicates)) from None
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("rows", str(rows)), ("source", source.name), ("keys_sha256", digest.hexdigest()),
            ("imported_at", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))])
        conn.execute("COMMIT")
        conn.execute("DETACH staging")
    finally:
        conn.close()
        staging.unlink(missing_ok=True)
    return rows


class WhitelistUnavailable(Exception):
    """No whitelist version is active (none imported yet): nobody can be called pre-approved
    or not, so decisions refer with DATA_UNAVAILABLE and the worker is not ready."""


class SqliteWhitelist:
    """Lookups against the active version; reopens when ``ACTIVE`` names a new one."""

    def __init__(self, directory: Path, keyed: KeyedHash, poll_s: float = 1.0) -> None:
        self.directory = directory
        self.keyed = keyed
        self.poll_s = poll_s
        self.version: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._checked = -math.inf
        # The store thread looks up while the runtime's watcher may switch versions.
        self._lock = threading.Lock()

    def open(self) -> None:
        self.active()

    def _refresh(self) -> None:
        self._checked = time.monotonic()
        name = active_version(self.directory)
        if name == self.version:
            return
        path = self.directory / name if name else None
        conn = None
        if path is not None and path.exists():
            # immutable: a published version never changes, so SQLite may skip all locking
            conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        old, self._conn, self.version = self._conn, conn, name if conn else None
        if old is not None:
            old.close()

    def active(self) -> str | None:
        """The serving version, checked again at most every ``poll_s``."""
        if time.monotonic() - self._checked >= self.poll_s:
            with self._lock:
                self._refresh()
        return self.version

    def lookup(self, id_number: str) -> WhitelistEntry | None:
        return self.lookup_many([id_number])[0]

    def lookup_many(self, id_numbers: list[str]) -> list[WhitelistEntry | None]:
        """Raises WhitelistUnavailable when no version is active."""
        self.active()
        out: list[WhitelistEntry | None] = []
        with self._lock:
            if self._conn is None:
                raise WhitelistUnavailable("no whitelist version is active")
            for id_number in id_numbers:
                row = self._conn.execute(
                    "SELECT segment, credit_limit, rate_tier, valid_until FROM entries WHERE key = ?",
                    (self.keyed("id_number", id_number),)).fetchone()
                out.append(None if row is None else
                           WhitelistEntry(row[0], row[1], row[2], dt.date.fromisoformat(row[3])))
        return out

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self.version = None
            self._checked = -math.inf
