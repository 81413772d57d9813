"""Which stores a worker uses: the embedded SQLite files under the data folder, or, when a
database URL is set, PostgreSQL shared by every replica. Both sets have the same methods."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.store.decisions import DecisionStore, SqliteDecisions
from service.store.keys import KeyedHash
from service.store.labels import SqliteLabels
from service.store.lists import SqliteLists
from service.store.models import SqliteModels
from service.store.review import ReviewStore, SqliteReviews
from service.store.velocity import SqliteVelocity
from service.store.whitelist import SqliteWhitelist


@dataclass
class Stores:
    decisions: DecisionStore
    whitelist: Any  # SqliteWhitelist | PostgresWhitelist
    velocity: Any  # SqliteVelocity | PostgresVelocity
    lists: Any  # SqliteLists | PostgresLists
    reviews: ReviewStore
    labels: Any  # SqliteLabels | PostgresLabels
    models: Any  # SqliteModels | PostgresModels: the model archive
    backend: str  # sqlite | postgresql
    database: Any = None  # the shared PostgreSQL database, if that is the backend

    def __post_init__(self) -> None:
        self.decisions.reviews = self.reviews  # a referral's case opens in the decision's transaction


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def stores(database_url: str, data_dir: Path, keyed: KeyedHash, *, whitelist_poll_s: float = 1.0,
           commit_linger_s: float = 0.0, commit_max_batch: int = 512) -> Stores:
    """The stores for ``database_url`` (empty: SQLite under ``data_dir``), not yet opened."""
    if not database_url:
        decisions = data_dir / "decisions.sqlite3"  # cases, outbox and labels live beside the decisions
        return Stores(SqliteDecisions(decisions, commit_linger_s, commit_max_batch),
                      SqliteWhitelist(data_dir / "whitelist", keyed, whitelist_poll_s),
                      SqliteVelocity(data_dir / "velocity.sqlite3", keyed),
                      SqliteLists(data_dir / "lists.sqlite3", keyed), SqliteReviews(decisions),
                      SqliteLabels(decisions), SqliteModels(decisions), "sqlite")
    from service.store.postgres import Database
    from service.store.postgres.decisions import PostgresDecisions
    from service.store.postgres.labels import PostgresLabels
    from service.store.postgres.lists import PostgresLists
    from service.store.postgres.models import PostgresModels
    from service.store.postgres.review import PostgresReviews
    from service.store.postgres.velocity import PostgresVelocity
    from service.store.postgres.whitelist import PostgresWhitelist
    database = Database(database_url)
    return Stores(PostgresDecisions(database, commit_linger_s, commit_max_batch),
                  PostgresWhitelist(database, keyed, whitelist_poll_s),
                  PostgresVelocity(database, keyed), PostgresLists(database, keyed), PostgresReviews(database),
                  PostgresLabels(database), PostgresModels(database), "postgresql", database)
