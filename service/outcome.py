"""What a decision can say, in order of precedence.

A decision collects outcomes from its stages (a rule that declines, a check that refers, the
strategy's approval) and keeps the strongest: decline over refer over approve. Merging is
``max``, so the order of the stages never changes the answer.
"""

from __future__ import annotations

from enum import IntEnum


class Outcome(IntEnum):
    APPROVE = 0
    REFER = 1
    DECLINE = 2

    @property
    def label(self) -> str:
        """The contract's spelling: ``approve``, ``refer``, ``decline``."""
        return self.name.lower()

    @classmethod
    def of(cls, label: str) -> Outcome:
        return cls[label.upper()]

    def merge(self, other: Outcome | None) -> Outcome:
        return self if other is None or self >= other else other

