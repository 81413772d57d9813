"""Durable state: decisions (with idempotency), the whitelist, lists and velocity counters.

The pipeline and the rules see the whitelist, lists and velocity only through the protocols
below; the embedded SQLite implementations live beside them, and a networked one (PostgreSQL,
Redis) for several replicas is another class with the same methods.
"""

from __future__ import annotations

from typing import Any, Protocol

from service.store.whitelist import WhitelistEntry


class Whitelist(Protocol):
    version: str | None  # the active imported version, None before the first import

    def lookup(self, id_number: str) -> WhitelistEntry | None: ...


class Velocity(Protocol):
    def count_and_record(self, application_id: str, identifiers: dict[str, str | None]
                         ) -> dict[str, int | None]:
        """``velocity.<kind>_<window>`` counts of earlier applications; records this one."""


class Lists(Protocol):
    """What rules read (``in_list``) and what the admin API changes."""

    def contains(self, name: str, value: Any) -> bool: ...

    def contains_any(self, name: str, values: Any) -> bool: ...

    def declare(self, kinds: dict[str, str]) -> None: ...
