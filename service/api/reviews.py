"""HTTP for the manual-review channel (reviewer keys) and repayment labels (admin keys).

The review channel's errors become HTTP here: a case not found 404, a state that does not allow
the request 409, the four-eyes rule 403, a verdict outside the declared reasons or the
product's limits 422 naming the field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from service.api.decision_route import JSON, require_json
from service.api.problems import MEDIA_TYPE, TITLES, ProblemError, from_validation_error, reject_duplicate_keys
from service.identifiers import CHINA
from service.logs import mask_text
from service.review.case import BadVerdict, FourEyes, ReviewError, Verdict
from service.review.channel import STATES, BadCursor
from service.runtime import Runtime
from service.schemas import (
    LabelBatch,
    ReviewCase,
    ReviewCaseDetail,
    ReviewEvent,
    ReviewNote,
    ReviewQueue,
    ReviewRejection,
    ReviewVerdict,
)
from service.store.labels import Label
from service.store.review import CaseNotFound

Admit = Callable[[Request, str | tuple[str, ...], str], str]
ReadBody = Callable[[Request], Awaitable[bytes]]
CaseId = Annotated[str, Path(pattern=r"^rev_[0-9A-Z]{26}$")]
Body = TypeVar("Body", bound=BaseModel)


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": TITLES[code], "content": {
        MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}} for code in codes}


def _body_doc(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {
        JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def _json(value: Any) -> Response:
    return Response(orjson.dumps(value), media_type=JSON)


async def parse_body(request: Request, read_body: ReadBody, model: type[Body], optional: bool = False) -> Body:
    """The JSON body as ``model``, or the 415/422 problem; ``optional``: an empty body is ``model()``."""
    body = await read_body(request)
    if optional and not body.strip():
        return model()
    require_json(request.headers.get("content-type", ""))
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    reject_duplicate_keys(body)
    return parsed


def review_routes(runtime: Runtime, admit: Admit, read_body: ReadBody) -> APIRouter:
    router = APIRouter()
    channel = runtime.review

    async def parse(request: Request, model: type[Body], optional: bool = False) -> Body:
        return await parse_body(request, read_body, model, optional)

    async def act(step: Awaitable[dict[str, Any]]) -> Response:
        try:
            return _json(await step)
        except CaseNotFound:
            raise ProblemError(404, "not-found", "no review case with that id") from None
        except BadVerdict as exc:
            pointer = "/" + exc.field.replace(".", "/")
            raise ProblemError(422, exc.kind, exc.message,
                               [{"field": exc.field, "pointer": pointer, "message": exc.message}]) from None
        except FourEyes as exc:
            raise ProblemError(403, exc.kind, exc.message) from None
        except ReviewError as exc:
            raise ProblemError(409, exc.kind, exc.message) from None

    def note(text: str | None) -> str | None:
        return mask_text(text) if text else text  # free text may quote an ID number or a phone

    @router.get("/v1/reviews", tags=["reviews"], operation_id="listReviews", response_model=ReviewQueue,
                responses=_problems(400, 401, 403, 422, 429),
                summary="The review queue: earliest deadline first, cursor-paginated")
    async def queue(request: Request,
                    state: Annotated[str | None, Query(description=f"one of {', '.join(STATES)}; "
                                                                   "default: every undecided state")] = None,
                    product: Annotated[str | None, Query(max_length=64)] = None,
                    cursor: Annotated[str | None, Query(max_length=200)] = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50) -> Response:
        admit(request, "reviewer", "reviews")
        if state is not None and state not in STATES:
            raise ProblemError(422, "validation", f"state must be one of {', '.join(STATES)}",
                               [{"field": "state", "pointer": "", "message": "unknown state"}])
        try:
            return _json(await channel.queue(state, product, cursor, limit))
        except BadCursor as exc:
            raise ProblemError(400, "bad-cursor", str(exc)) from None

    @router.get("/v1/reviews/{case_id}", tags=["reviews"], operation_id="getReview", response_model=ReviewCaseDetail,
                responses=_problems(401, 403, 404, 422, 429),
                summary="A case with everything a reviewer needs, personal data masked")
    async def case(request: Request, case_id: CaseId) -> Response:
        admit(request, "reviewer", "reviews")
        found = await channel.case(case_id)
        if found is None:
            raise ProblemError(404, "not-found", "no review case with that id")
        return _json(found)

    @router.get("/v1/reviews/{case_id}/history", tags=["reviews"], operation_id="getReviewHistory",
                response_model=list[ReviewEvent], responses=_problems(401, 403, 404, 422, 429),
                summary="Every transition of a case, oldest first (also readable with an admin key)")
    async def history(request: Request, case_id: CaseId) -> Response:
        admit(request, ("reviewer", "admin"), "reviews")  # compliance reads the audit with an admin key
        events = await channel.history(case_id)
        if events is None:
            raise ProblemError(404, "not-found", "no review case with that id")
        return _json(events)

    @router.post("/v1/reviews/{case_id}/claim", tags=["reviews"], operation_id="claimReview",
                 response_model=ReviewCase, responses=_problems(401, 403, 404, 409, 422, 429),
                 summary="Take the case (a lease that lapses); claiming again renews it")
    async def claim(request: Request, case_id: CaseId) -> Response:
        key = admit(request, "reviewer", "reviews")
        return await act(channel.claim(case_id, key))

    @router.post("/v1/reviews/{case_id}/release", tags=["reviews"], operation_id="releaseReview",
                 response_model=ReviewCase, responses=_problems(401, 403, 404, 409, 413, 415, 422, 429),
                 summary="Give the case back to the queue", openapi_extra=_body_doc(ReviewNote, required=False))
    async def release(request: Request, case_id: CaseId) -> Response:
        key = admit(request, "reviewer", "reviews")
        body = await parse(request, ReviewNote, optional=True)
        return await act(channel.release(case_id, key, note(body.note)))

    @router.post("/v1/reviews/{case_id}/decide", tags=["reviews"], operation_id="decideReview",
                 response_model=ReviewCase, responses=_problems(401, 403, 404, 409, 413, 415, 422, 429),
                 summary="Approve (with an offer) or decline a claimed case; a large approval waits for a second "
                         "reviewer", openapi_extra=_body_doc(ReviewVerdict))
    async def decide(request: Request, case_id: CaseId) -> Response:
        key = admit(request, "reviewer", "reviews")
        body = await parse(request, ReviewVerdict)
        offer = body.offer
        verdict = Verdict(body.outcome, body.reason, note(body.note) or "",
                          offer.amount if offer else None, offer.term_months if offer else None,
                          offer.rate_tier if offer else None)
        return await act(channel.decide(case_id, key, verdict))

    @router.post("/v1/reviews/{case_id}/confirm", tags=["reviews"], operation_id="confirmReview",
                 response_model=ReviewCase, responses=_problems(401, 403, 404, 409, 413, 415, 422, 429),
                 summary="Four eyes: confirm another reviewer's approval (claim it first)",
                 openapi_extra=_body_doc(ReviewNote, required=False))
    async def confirm(request: Request, case_id: CaseId) -> Response:
        key = admit(request, "reviewer", "reviews")
        body = await parse(request, ReviewNote, optional=True)
        return await act(channel.confirm(case_id, key, note(body.note)))

    @router.post("/v1/reviews/{case_id}/reject", tags=["reviews"], operation_id="rejectReview",
                 response_model=ReviewCase, responses=_problems(401, 403, 404, 409, 413, 415, 422, 429),
                 summary="Four eyes: reject another reviewer's approval; the case goes back to a first review",
                 openapi_extra=_body_doc(ReviewRejection))
    async def reject(request: Request, case_id: CaseId) -> Response:
        key = admit(request, "reviewer", "reviews")
        body = await parse(request, ReviewRejection)
        return await act(channel.reject(case_id, key, note(body.note) or ""))

    @router.post("/admin/labels", tags=["admin"], operation_id="putLabels",
                 responses=_problems(401, 403, 413, 415, 422, 429),
                 summary="Repayment outcomes (all or nothing; a later observation replaces an earlier one)",
                 openapi_extra=_body_doc(LabelBatch))
    async def labels(request: Request) -> Response:
        key = admit(request, "admin", "admin")
        body = await parse(request, LabelBatch)
        today = dt.datetime.now(CHINA).date()
        future = [{"field": f"labels[{i}].observed_on", "pointer": f"/labels/{i}/observed_on",
                   "message": "in the future"} for i, row in enumerate(body.labels) if row.observed_on > today]
        seen: dict[str, int] = {}
        for i, row in enumerate(body.labels):
            if row.application_id in seen:
                future.append({"field": f"labels[{i}].application_id", "pointer": f"/labels/{i}/application_id",
                               "message": f"also in labels[{seen[row.application_id]}]"})
            seen.setdefault(row.application_id, i)
        if future:
            raise ProblemError(422, "bad-labels", f"{len(future)} bad label(s); nothing stored", future)
        rows = [Label(r.application_id, r.status, r.days_past_due, r.observed_on) for r in body.labels]
        changed = await asyncio.to_thread(runtime.labels.put, rows, key, dt.datetime.now(dt.UTC))
        return _json({"received": len(rows), "stored": changed})

    return router
