"""Stage 5, scoring: route the application to its segment's model and record PD, points, grade.

Which model scores which segment is product configuration (``models`` in products.yaml): the
segment is the whitelist's, else the applicant's occupation, else ``default``. An application
with no model for its segment, or with a feature its spec refuses to guess, gets no score
(``score`` null in the answer) and the strategy table decides what that means — the bundled one
refers (``SCORE_UNAVAILABLE``). An experiment arm may name the model that scores all it decides.
A score recorded in the facts (rule tests, backtests) is taken as it is.
"""

from __future__ import annotations

from typing import Any

from service.scoring.features import Refused
from service.stages.decision import Decision

NAME = "scoring"
SCORE = ("model", "pd", "points", "grade")


def skip(d: Decision) -> str | None:
    return "already declined" if d.declined else None


def route(d: Decision) -> tuple[str | None, str | None]:
    """(model name, segment): the arm's model, else the product's route for the segment."""
    facts = d.facts
    segment = facts["whitelist.segment"] or facts["applicant.occupation"]
    if d.arm.model:
        return d.arm.model, segment
    routes = d.product.models if d.product else {}
    return routes.get(segment) or routes.get("default"), segment


def run(d: Decision) -> dict[str, Any]:
    facts = d.facts
    if facts["score.grade"] is not None:  # recorded (backtest, rule test)
        d.score = {key: facts[f"score.{key}"] for key in SCORE}
        return {"model": facts["score.model"], "recorded": True}
    name, segment = route(d)
    model = d.models.get(name) if name else None
    if name is None or model is None:
        return {"model": None, "segment": segment, "why": "no model for this segment"}
    if name in d.scores:  # a shadow arm on the model the live arm already ran
        score, detail = d.scores[name]
    else:
        try:
            score, detail = model.score(facts, d.lists)
        except Refused as exc:
            return {"model": model.version, "name": name, "segment": segment, "refused": exc.features}
        d.scores[name] = score, detail
    apply(d, score)
    return {"model": model.version, "segment": segment, **detail}


def apply(d: Decision, score: dict[str, Any]) -> None:
    d.score = score
    for key in SCORE:
        d.facts[f"score.{key}"] = score[key]
