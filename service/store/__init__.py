"""Durable state: decisions (with idempotency), the whitelist, lists and velocity counters.

Gathering (``service.gather``) sees the whitelist, lists and velocity only through the protocols
below; the embedded SQLite implementations live beside them, and a networked one (PostgreSQL)
for several replicas is another class with the same methods. Stores know nothing of the rule
language, the stages or the API.
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
    """Which of an application's identifiers are on the named lists (what ``in_list`` reads)."""

    def contains(self, name: str, value: Any) -> bool: ...

    def memberships(self, candidates: dict[str, list[str]]) -> frozenset[tuple[str, str]]:
        """(list name, value) for each of ``candidates`` (list name → values) on its list."""
