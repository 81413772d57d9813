"""Durable state: decisions (with idempotency), the whitelist, lists and velocity counters.

Gathering (``service.gather``) sees the whitelist, lists and velocity only through the protocols
below, always for a batch of applications (one query or transaction each over the network); the
embedded SQLite implementations live beside them, the PostgreSQL ones (several replicas) in
``service.store.postgres``, and ``service.store.backends`` picks one set. Stores know nothing of the rule
language, the stages or the API.
"""

from __future__ import annotations

from typing import Any, Protocol

from service.store.whitelist import WhitelistEntry


class Whitelist(Protocol):
    version: str | None  # the active imported version, None before the first import

    def lookup_many(self, id_numbers: list[str]) -> list[WhitelistEntry | None]:
        """Each applicant's entry; WhitelistUnavailable when no version is active."""


class Velocity(Protocol):
    def count_and_record_many(self, applications: list[tuple[str, dict[str, str | None]]]
                              ) -> list[dict[str, int | None]]:
        """For each (application id, identifiers by kind), in order: ``velocity.<kind>_<window>``
        counts of earlier applications; records it."""


class Lists(Protocol):
    """Which of an application's identifiers are on the named lists (what ``in_list`` reads)."""

    def contains(self, name: str, value: Any) -> bool: ...

    def memberships_many(self, batch: list[dict[str, list[str]]]) -> list[frozenset[tuple[str, str]]]:
        """For each application's ``candidates`` (list name → values): (list name, value) for
        each value on its list."""
