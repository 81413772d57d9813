"""Champion/challenger: named strategy arms with traffic shares, and shadow arms.

An arm is a decision table (the main ``table`` unless it brings its own) and optionally a model
that scores every application it decides. Live arms split the traffic by a stable hash of the
application id salted with the experiment's name, so a retry or a replay always lands in the
same arm and a new experiment reshuffles. Shadow arms are evaluated beside every live decision
and recorded with it, never returned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.engine.ruleset import Strategy

CHAMPION = "champion"
_SCALE = float(1 << 64)


@dataclass(frozen=True)
class Arm:
    name: str
    strategy: Strategy
    model: str | None = None  # None: the products' segment routing
    share: float = 0.0  # of live traffic; 0 for a shadow arm


@dataclass(frozen=True)
class Experiment:
    name: str  # the hash salt
    live: tuple[Arm, ...]  # shares sum to 1
    shadows: tuple[Arm, ...] = ()

    def bucket(self, application_id: str) -> float:
        """A uniform number in [0, 1) fixed by the experiment name and the application id."""
        digest = hashlib.sha256(f"{self.name}\0{application_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / _SCALE

    def assign(self, application_id: str) -> Arm:
        if len(self.live) == 1:
            return self.live[0]
        point, edge = self.bucket(application_id), 0.0
        for arm in self.live:
            edge += arm.share
            if point < edge:
                return arm
        return self.live[-1]  # float rounding at the top edge

    def arm(self, name: str) -> Arm | None:
        return next((a for a in self.live + self.shadows if a.name == name), None)
