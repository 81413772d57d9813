"""The scoring stage: route the application to its segment's model and record PD, points, grade.

Which model scores which segment is product configuration (``models`` in products.yaml): the
segment is the whitelist's, else the applicant's occupation, else ``default``. An application
with no model for its segment, or with a feature its spec refuses to guess, gets no score
(``score`` null in the answer) and the strategy table decides what that means — the bundled one
refers (``SCORE_UNAVAILABLE``).
"""

from __future__ import annotations

from typing import Any, Protocol

from service import metrics
from service.pipeline import DecisionContext
from service.scoring.features import Refused


class Model(Protocol):
    version: str

    @property
    def name(self) -> str: ...

    def score(self, facts: dict[str, Any], lists: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """({"model", "pd", "points", "grade"}, trace detail); raises Refused."""


class ScoringStage:
    name = "scoring"

    def __init__(self, models: dict[str, Model] | None = None, observe: bool = True) -> None:
        self.models = models or {}
        self.observe = observe

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
        try:
            score, detail = model.score(facts, ctx.lists)
        except Refused as exc:
            if self.observe:
                metrics.MODEL_REFUSED.labels(model.name).inc()
            return {"model": model.version, "segment": segment, "refused": exc.features}
        ctx.score = score
        for key in ("model", "pd", "points", "grade"):
            facts[f"score.{key}"] = score[key]
        if self.observe:
            metrics.MODEL_POINTS.labels(model.name).observe(score["points"])
        return {"model": model.version, "segment": segment, **detail}
