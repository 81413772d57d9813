"""The model archive: every model version a worker has served, its files kept by version, so a
decision can be explained (and re-scored) months later, after the models have changed.

A worker archives the models it loads when it starts; a version already archived is left as it
is (the version is a content hash: same version, same files)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from service.store.sqlite import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_versions (
    version     TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    spec        BLOB NOT NULL,
    graph       BLOB NOT NULL,
    metrics     BLOB NOT NULL,
    archived_at TEXT NOT NULL
);
"""
INSERT = ("INSERT INTO model_versions (version, name, spec, graph, metrics, archived_at) VALUES (?,?,?,?,?,?) "
          "ON CONFLICT (version) DO NOTHING")
SELECT = "SELECT version, name, spec, graph, metrics FROM model_versions WHERE version = ?"
LIST = "SELECT version, name, archived_at FROM model_versions ORDER BY name, archived_at"


@dataclass(frozen=True)
class ArchivedModel:
    version: str
    name: str
    files: dict[str, bytes]  # features.yaml, model.onnx, metrics.json


def columns(model: ArchivedModel) -> tuple[bytes, bytes, bytes]:
    files = model.files
    return files["features.yaml"], files["model.onnx"], files.get("metrics.json", b"{}")


def from_row(row: tuple) -> ArchivedModel:
    version, name, spec, graph, metrics = row
    return ArchivedModel(version, name, {"features.yaml": bytes(spec), "model.onnx": bytes(graph),
                                         "metrics.json": bytes(metrics)})


class SqliteModels(SqliteFile):
    schema = SCHEMA

    def keep(self, model: ArchivedModel, now: dt.datetime) -> bool:
        """Archive ``model``; False if its version was archived already."""
        return self._transaction(lambda conn: conn.execute(
            INSERT, (model.version, model.name, *columns(model), now.isoformat())).rowcount == 1)

    def get(self, version: str) -> ArchivedModel | None:
        row = self._read(lambda conn: conn.execute(SELECT, (version,)).fetchone())
        return from_row(row) if row else None

    def versions(self) -> list[tuple[str, str, str]]:
        return self._read(lambda conn: conn.execute(LIST).fetchall())
