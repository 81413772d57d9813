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
    def count_and_record_many(self, applications: list[tuple[str, dict[str, str | None]]]
                              ) -> list[dict[str, int | None]]:
        """For each (application id, identifiers by kind), in order: ``velocity.<kind>_<window>``
        counts of earlier applications; records it."""


class Lists(Protocol):
    """Which of an application's identifiers are on the named lists (what ``in_list`` reads)."""

    def contains(self, name: str, value: Any) -> bool: ...

    def memberships(self, candidates: dict[str, list[str]]) -> frozenset[tuple[str, str]]:
        """(list name, value) for each of ``candidates`` (list name → values) on its list."""
