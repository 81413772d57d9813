"""The explanation of a stored decision (PIPL art. 24): what was decided and why, in the
applicant's language — the reasons, and the inputs that cost the most points — on the versions
it was decided on, however long ago.

Everything comes from the stored decision: its answer (with the review's final word, if a
person decided), its trace (the rules that fired and the values they read, the model inputs as
encoded) and its model version, loaded from the archive when it is no longer served.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import orjson

from service.engine.messages import localise_reasons
from service.model_versions import ModelVersions
from service.scoring.explain import Explanation, Factor, explain

TEMPLATES = {
    "zh": "{label}为{value}（最佳为{best}），使评分降低{points:.1f}分。",
    "en": "{label}: {value} (best: {best}) lowered the score by {points:.1f} points.",
}


def scoring_detail(trace: list[dict[str, Any]]) -> dict[str, Any] | None:
    for step in trace:
        if step.get("stage") == "scoring" and "features" in step.get("detail", {}):
            return step["detail"]
    return None


def factor_view(factor: Factor, language: str) -> dict[str, Any]:
    label = factor.label.text(language)
    view = {"input": factor.input, "label": label, "value": factor.value, "best": factor.best,
            "points": round(factor.points, 2)}
    if factor.points < 0:
        view["text"] = TEMPLATES[language].format(label=label, value=_text(factor.value, language),
                                                  best=_text(factor.best, language), points=-factor.points)
    return view


WORDS = {"zh": {None: "未提供", True: "有", False: "无"}, "en": {None: "not given", True: "yes", False: "no"}}


def _text(value: Any, language: str) -> str:
    """A value in a sentence: a missing one or true/false in words, numbers without a stray .0."""
    if value is None or isinstance(value, bool):
        return WORDS[language][value]
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Explanations:
    def __init__(self, versions: ModelVersions, review_window: dt.timedelta) -> None:
        self.versions = versions
        self.review_window = review_window

    async def of(self, decision: bytes, language: str) -> dict[str, Any]:
        """The explanation of a decision, from the decision as GET /v1/decisions/{id}?explain=true
        shows it: with its trace and, if a person reviews or reviewed it, the review block."""
        body = orjson.loads(decision)
        trace = body.pop("trace", [])
        localise_reasons(body["reasons"], language)
        review = body.get("review")
        automatic = body.get("automatic")
        decided_at = dt.datetime.fromisoformat(automatic["decided_at"] if automatic else body["decided_at"])
        detail = scoring_detail(trace)
        factors = None
        if detail is not None and body.get("score"):
            factors = await self._factors(body["score"]["model"], detail, body["decision_id"], language)
        return {
            "decision_id": body["decision_id"], "application_id": body["application_id"],
            "language": language, "outcome": body["outcome"],
            "decided_by": "person" if review and review["state"] == "decided" else "automation",
            "decided_at": body["decided_at"],
            "reasons": [{"code": r["code"], "stage": r["stage"], "message": r["message"]} for r in body["reasons"]],
            "score": body.get("score"),
            "factors": factors,
            "rules": [{"stage": step["stage"], "id": rule["id"], "action": rule.get("action"),
                       "read": rule.get("read", {})}
                      for step in trace for rule in step.get("detail", {}).get("rules", ())
                      if rule.get("result") == "hit"],
            "versions": {**body["versions"], "feature_spec": detail.get("spec") if detail else None},
            "human_review": {
                "case_id": review["case_id"] if review else None,
                "state": review["state"] if review else None,
                "may_request_until": None if review or body["outcome"] == "refer"
                else (decided_at + self.review_window).isoformat(),
            },
        }

    async def _factors(self, version: str, detail: dict[str, Any], seed: str, language: str) -> dict[str, Any]:
        model = await asyncio.to_thread(self.versions.get, version)
        if model is None:
            return {"available": False, "why": f"model version {version} is not archived"}
        try:
            result: Explanation = await asyncio.to_thread(explain, model, detail["features"], seed)
        except ValueError as exc:
            return {"available": False, "why": str(exc)}
        return {"available": True, "method": result.method, "points": round(result.points, 2),
                "reference_points": round(result.reference_points, 2),
                "top": [factor_view(f, language) for f in result.top],
                "all": [factor_view(f, language) for f in result.factors]}
