"""The scoring stage: route the application to its segment's model and record PD, points, grade.

Which model scores which segment is product configuration (``models`` in products.yaml). A
product with no model for the segment gets no score (``score`` null in the answer) and the
strategy table decides what that means — the bundled one refers.
"""

from __future__ import annotations

from typing import Any, Protocol

from service.pipeline import DecisionContext


class Model(Protocol):
    version: str

    def score(self, facts: dict[str, Any]) -> dict[str, Any]:
        """{"model", "pd", "points", "grade"} for one application's facts."""


class ScoringStage:
    name = "scoring"

    def __init__(self, models: dict[str, Model] | None = None) -> None:
        self.models = models or {}

    def skip_reason(self, ctx: DecisionContext) -> str | None:
        return "already declined" if ctx.declined else None

    async def run(self, ctx: DecisionContext) -> dict[str, Any]:
        facts = ctx.facts
        if facts["score.grade"] is not None:  # recorded (backtest, rule test)
            ctx.score = {key: facts[f"score.{key}"] for key in ("model", "pd", "points", "grade")}
            return {"model": facts["score.model"], "recorded": True}
        routes = ctx.product.models if ctx.product else {}
        segment = facts["whitelist.segment"] or facts["applicant.occupation"]
        name = routes.get(segment) or routes.get("default")
        model = self.models.get(name) if name else None
        if model is None:
            return {"model": None, "segment": segment, "why": "no model for this segment"}
        ctx.score = score = model.score(facts)
        for key in ("model", "pd", "points", "grade"):
            facts[f"score.{key}"] = score[key]
        return {"model": score["model"], "segment": segment}
