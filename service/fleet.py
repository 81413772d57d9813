"""The same ruleset on every replica (PostgreSQL only).

``loan-decision rules publish DIR`` or an admin reload on any replica stores a tested ruleset's
files in the database and marks it active. Every replica looks every ``FOLLOW_EVERY_S``: when the
active version is not the one it serves, it writes the files to ``LOAN_DATA_DIR/rulesets/<version>``
and reloads from there exactly as an admin reload does (lint and rule tests in another process,
then compile off the event loop). A version it refuses is not retried; the replica keeps its
current ruleset and reports why in its heartbeat, which ``GET /admin/rules`` lists for the fleet.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from service.engine.ruleset import RULE_FILES

if TYPE_CHECKING:
    from service.store.postgres.rulesets import PublishedRulesets

log = logging.getLogger("service.fleet")
FOLLOW_EVERY_S = 0.5
TEST_FOLDER = "tests"


def bundle(directory: Path) -> dict[str, str]:
    """A ruleset's files as relative path → text: the rule files and the YAML rule tests."""
    files = {name: (directory / name).read_text() for name in RULE_FILES if (directory / name).exists()}
    tests = directory / TEST_FOLDER
    if tests.is_dir():
        files.update({f"{TEST_FOLDER}/{p.name}": p.read_text() for p in sorted(tests.glob("*.yaml"))})
    return files


def materialise(files: dict[str, str], root: Path, version: str) -> Path:
    """Write ``files`` to ``root/version`` (whole or not at all) and return that folder."""
    target = root / version
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))
    for name, text in files.items():
        path = (staging / name).resolve()
        if staging.resolve() not in path.parents:  # a stored path never leaves its folder
            raise ValueError(f"bad path in a published ruleset: {name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    try:
        os.rename(staging, target)
    except OSError:  # another worker on this host wrote it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return target


class Fleet:
    def __init__(self, published: PublishedRulesets, root: Path) -> None:
        self.published = published
        self.root = root
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = dt.datetime.now(dt.UTC)
        self.refused: dict[str, list[str]] = {}  # version → why this replica refused it

    def active_directory(self) -> Path | None:
        """The published ruleset's folder (written here if new), or None if none is published."""
        version = self.published.active()
        if version is None:
            return None
        return materialise(self.published.files(version), self.root, version)

    def publish(self, directory: Path, version: str, by: str) -> bool:
        return self.published.publish(version, bundle(directory), by)

    def heartbeat(self, serving: str | None, errors: list[str]) -> str | None:
        """Report this replica's state; returns the published version."""
        self.published.heartbeat(self.replica, serving, errors, self.started_at)
        return self.published.active()
