"""HTTP for the applicant's rights over an automated decision (PIPL art. 24), called by the
bank's backend (client keys): the explanation of a decision, and a person's review of it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from service.api.decision_route import JSON
from service.api.problems import ProblemError
from service.api.reviews import _body_doc, _problems, parse_body
from service.engine.messages import negotiate
from service.review.channel import ReviewUnavailable
from service.runtime import Runtime
from service.schemas import Explanation, ReviewCase, ReviewRequest
from service.store.decisions import DecisionRecord

Admit = Callable[[Request, str | tuple[str, ...], str], str]
ReadBody = Callable[[Request], Awaitable[bytes]]
DecisionId = Annotated[str, Path(max_length=64)]


def rights_routes(runtime: Runtime, admit: Admit, read_body: ReadBody) -> APIRouter:
    router = APIRouter()
    settings = runtime.settings

    async def stored(decision_id: str) -> DecisionRecord:
        record = await runtime.store.find(decision_id)
        if record is None:
            raise ProblemError(404, "not-found", "no decision with that id")
        return record

    @router.get("/v1/decisions/{decision_id}/explanation", tags=["decisions"], operation_id="explainDecision",
                response_model=Explanation, responses=_problems(401, 403, 404, 422, 429),
                summary="Why the decision was made, in the applicant's language (PIPL art. 24)")
    async def explanation(request: Request, decision_id: DecisionId) -> Response:
        admit(request, "client", "decisions")
        record = await stored(decision_id)
        shown = await runtime.review.decision(record, explain=True)
        assert shown is not None
        language = negotiate(request.headers.get("accept-language"))
        body = await runtime.explanations.of(shown, language)
        return Response(orjson.dumps(body), media_type=JSON,
                        headers={"Content-Language": language, "Vary": "Accept-Language"})

    @router.post("/v1/decisions/{decision_id}/review-request", tags=["decisions"], status_code=201,
                 operation_id="requestHumanReview", response_model=ReviewCase,
                 responses=_problems(401, 403, 404, 409, 415, 422, 429), openapi_extra=_body_doc(ReviewRequest),
                 summary="The applicant asks for a person to decide (PIPL art. 24)")
    async def review_request(request: Request, decision_id: DecisionId) -> Response:
        key = admit(request, "client", "decisions")
        asked = await parse_body(request, read_body, ReviewRequest)
        record = await stored(decision_id)
        try:
            case = await runtime.review.request_review(
                record, key, asked.reason, dt.timedelta(days=settings.review_request_days),
                dt.timedelta(hours=settings.review_request_hours))
        except ReviewUnavailable as exc:
            raise ProblemError(409, exc.kind, exc.message) from None
        return Response(orjson.dumps(case), status_code=201, media_type=JSON)

    return router
