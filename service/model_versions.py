"""Every model version a decision may name: the ones this worker serves, else the archive's
(``service.store.models``).

A decision records its model's version; explaining it later needs that very graph and spec, not
today's. Versions loaded from the archive are kept for a while (a few at a time: a champion's
graph is a few MB)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Protocol

from service.scoring.model import ModelError, OnnxModel, load_archived
from service.store.models import ArchivedModel

log = logging.getLogger("service.scoring")
KEEP = 4  # archived versions held loaded at once


class Archive(Protocol):
    def keep(self, model: ArchivedModel, now: dt.datetime) -> bool: ...

    def get(self, version: str) -> ArchivedModel | None: ...


class ModelVersions:
    def __init__(self, live: Mapping[str, OnnxModel], archive: Archive) -> None:
        self.live = live
        self.archive = archive
        self._loaded: OrderedDict[str, OnnxModel] = OrderedDict()
        self._lock = threading.Lock()

    def archive_live(self) -> set[str]:
        """Archive the models this worker serves (blocking: call off the event loop); the
        versions that were not archived before."""
        now = dt.datetime.now(dt.UTC)
        added = set()
        for model in self.live.values():
            if self.archive.keep(ArchivedModel(model.version, model.name, model.files), now):
                log.info("model archived", extra={"fields": {"model": model.version}})
                added.add(model.version)
        return added

    def get(self, version: str) -> OnnxModel | None:
        """The model of that version, or None if it was never archived (blocking)."""
        for model in self.live.values():
            if model.version == version:
                return model
        with self._lock:
            if version in self._loaded:
                self._loaded.move_to_end(version)
                return self._loaded[version]
        archived = self.archive.get(version)
        if archived is None:
            return None
        try:
            model = load_archived(archived.name, archived.files)
        except ModelError as exc:  # e.g. a spec reading a fact that no longer exists
            log.error("archived model does not load", extra={"fields": {"model": version, "errors": exc.errors}})
            return None
        with self._lock:
            self._loaded[version] = model
            while len(self._loaded) > KEEP:
                self._loaded.popitem(last=False)
        return model
