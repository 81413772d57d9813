"""The six stages of deciding, in their order. Each is a module with ``NAME``, ``skip(d)`` (why it
need not run for this decision, or None) and ``run(d)`` (adds to the decision, returns its trace
detail); ``service.decide`` runs them. None does I/O: what needs the network or a store was
gathered before (``service.gather``) and arrives as facts."""

from __future__ import annotations

from typing import Any, Protocol

from service.stages import enrichment, fraud, scoring, strategy, validation, verification
from service.stages.decision import Decision


class Stage(Protocol):
    NAME: str

    def skip(self, d: Decision) -> str | None: ...

    def run(self, d: Decision) -> dict[str, Any]: ...


STAGES: tuple[Stage, ...] = (validation, verification, enrichment, fraud, scoring, strategy)  # type: ignore[assignment]
NAMES = tuple(stage.NAME for stage in STAGES)
