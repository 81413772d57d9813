"""The scoring stage: route the application to its segment's model and record PD, points, grade.

Which model scores which segment is product configuration (``models`` in products.yaml): the
segment is the whitelist's, else the applicant's occupation, else ``default``. An application
with no model for its segment, or with a feature its spec refuses to guess, gets no score
(``score`` null in the answer) and the strategy table decides what that means — the bundled one
refers (``SCORE_UNAVAILABLE``). An experiment arm may name the model that scores all it decides.
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

    def route(self, ctx: DecisionContext) -> tuple[str | None, str | None]:
        """(model name, segment): the arm's model, else the product's route for the segment."""
        facts = ctx.facts
        segment = facts["whitelist.segment"] or facts["applicant.occupation"]
        if ctx.arm.model:
            return ctx.arm.model, segment
        routes = ctx.product.models if ctx.product else {}
        return routes.get(segment) or routes.get("default"), segment

    async def run(self, ctx: DecisionContext) -> dict[str, Any]:
        facts = ctx.facts
        if facts["score.grade"] is not None:  # recorded (backtest, rule test)
            ctx.score = {key: facts[f"score.{key}"] for key in ("model", "pd", "points", "grade")}
            return {"model": facts["score.model"], "recorded": True}
        name, segment = self.route(ctx)
        model = self.models.get(name) if name else None
        if model is None:
            return {"model": None, "segment": segment, "why": "no model for this segment"}
        if name in ctx.scores:  # a shadow arm on the model the live arm already ran
            score, detail = ctx.scores[name]
        else:
            try:
                score, detail = model.score(facts, ctx.lists)
            except Refused as exc:
                if self.observe:
                    metrics.MODEL_REFUSED.labels(model.name).inc()
                return {"model": model.version, "segment": segment, "refused": exc.features}
            ctx.scores[name] = score, detail
            if self.observe:
                metrics.MODEL_POINTS.labels(model.name).observe(score["points"])
        self.apply(ctx, score)
        return {"model": model.version, "segment": segment, **detail}

    @staticmethod
    def apply(ctx: DecisionContext, score: dict[str, Any]) -> None:
        ctx.score = score
        for key in ("model", "pd", "points", "grade"):
            ctx.facts[f"score.{key}"] = score[key]
