"""The HTTP surface of ../shared/API.md. Routes parse, authenticate and map errors; the
decision itself is service.decisions' business.

POST /v1/decisions, the hot path, is a pure ASGI handler in front of FastAPI
(``decision_route.FastPath``): it reads the raw body and validates it with pydantic-core's JSON
parser in one pass (strict types, unknown fields rejected), without FastAPI's routing, dependency
and body machinery. The OpenAPI document still comes from the same models and route.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import metrics
from service.api.auth import KeyRing
from service.api.console.pages import console_routes
from service.api.decision_route import (
    CLIENT_CLOSED,
    JSON,
    ClientDisconnected,
    DecisionEndpoint,
    FastPath,
    read_body,
    require_json,
    require_size,
)
from service.api.problems import (
    MEDIA_TYPE,
    TITLES,
    ProblemError,
    from_validation_error,
    json_path,
    json_pointer,
    reject_duplicate_keys,
)
from service.api.ratelimit import RateLimiter
from service.api.reviews import review_routes
from service.api.rights import rights_routes
from service.config import Settings, parse_api_keys, parse_rate_limits
from service.engine.messages import localise, negotiate
from service.runtime import Runtime
from service.schemas import (
    DecisionRequest,
    DecisionResponse,
    LabelBatch,
    ListChange,
    Problem,
    ReviewNote,
    ReviewRejection,
    ReviewVerdict,
)
from service.store.decisions import StoreUnavailable
from service.store.lists import Change, EntryError

log = logging.getLogger("service.api")

def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error statuses: RFC 9457 problem details, as they are sent."""
    return {code: {"description": TITLES[code], "content": {
        MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}} for code in codes}




def _problem_response(exc: ProblemError) -> Response:
    return Response(exc.body(), status_code=exc.status, media_type=MEDIA_TYPE, headers=exc.headers)


def _json(body: bytes) -> Response:
    return Response(body, media_type=JSON)


async def _read_body(request: Request) -> bytes:
    body = await read_body(request.receive, request.headers.get("content-length"))
    require_size(body)
    return body


class HttpMetrics:
    """Pure ASGI middleware: requests by route template, method and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            metrics.HTTP_REQUESTS.labels(getattr(route, "path", "unmatched"), scope["method"],
                                         str(status)).inc()


class ServiceApp(FastAPI):
    """FastAPI with the decision fast path in front of its whole middleware stack."""

    fast_path: DecisionEndpoint | None = None  # None: POST /v1/decisions through FastAPI's route
    max_in_flight: int = 512

    def build_middleware_stack(self) -> Any:
        stack = super().build_middleware_stack()
        return FastPath(stack, self.fast_path, self.max_in_flight) if self.fast_path is not None else stack


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = runtime or Runtime.from_settings(settings)
    keys = KeyRing(parse_api_keys(settings.api_keys))
    limiter = RateLimiter(parse_rate_limits(settings.rate_limits))

    def admit(request: Request, role: str | tuple[str, ...], kind: str) -> str:
        """The calling key's name after its role (401/403) and its rate (429) are checked."""
        name = keys.require(request.headers.get("authorization"), role)
        limiter.take(name, kind)
        return name

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime.start()
        # Everything loaded so far (models, rules, schemas) lives as long as the process: keep it
        # out of the cyclic collector's generations, so that collections scan requests only.
        gc.collect()
        gc.freeze()
        if settings.uses_dev_keys:
            log.warning("the development API keys are active: set LOAN_API_KEYS in production")
        if settings.uses_dev_pii_key:
            log.warning("the development PII key is active: set LOAN_PII_KEY in production")
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(runtime.reload()))
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests)
            pass
        following = asyncio.ensure_future(runtime.follow_fleet()) if runtime.fleet is not None else None
        reviewing = asyncio.ensure_future(runtime.run_review())
        yield
        reviewing.cancel()
        await asyncio.gather(reviewing, return_exceptions=True)
        if following is not None:
            following.cancel()
        try:
            loop.remove_signal_handler(signal.SIGHUP)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        await runtime.close_providers()
        runtime.stop()

    app = ServiceApp(title="Instant-loan decision API", version="1", lifespan=lifespan,
                     docs_url="/docs", redoc_url=None)
    app.state.runtime = runtime
    endpoint = DecisionEndpoint(runtime, keys, limiter)
    app.fast_path = endpoint
    app.max_in_flight = settings.max_in_flight
    app.add_middleware(HttpMetrics)

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> Response:
        return _problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        errors = [{"field": json_path(tuple(e["loc"])), "pointer": json_pointer(tuple(e["loc"])),
                   "message": e["msg"]} for e in exc.errors()]
        return _problem_response(ProblemError(422, "validation", f"{len(errors)} parameter(s) failed validation",
                                              errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return _problem_response(ProblemError(exc.status_code, "http", str(exc.detail),
                                              headers=dict(exc.headers or {})))

    @app.exception_handler(ClientDisconnected)
    async def _gone(_: Request, exc: ClientDisconnected) -> Response:
        return Response(status_code=CLIENT_CLOSED)  # nobody is there to read it

    @app.exception_handler(StoreUnavailable)
    async def _store(_: Request, exc: StoreUnavailable) -> Response:
        log.error("decision store unavailable", extra={"fields": {"error": str(exc)}})
        return _problem_response(ProblemError(503, "store-unavailable",
                                              "the decision could not be stored; retry with the same body"))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return _problem_response(ProblemError(500, "internal", "unexpected error; it has been logged"))

    @app.post("/v1/decisions", tags=["decisions"], summary="Decide on one loan application",
              operation_id="createDecision", response_model=DecisionResponse, response_model_exclude_none=False,
              responses=_problems(401, 403, 409, 413, 415, 422, 429, 503),
              openapi_extra={"requestBody": {"required": True, "content": {
                  JSON: {"schema": {"$ref": "#/components/schemas/DecisionRequest"}}}}})
    async def post_decision(request: Request,
                            explain: Annotated[bool, Query(description="add the trace")] = False) -> Response:
        # Served by FastPath (service/api/decision_route.py); declared here for the OpenAPI
        # document, and answering the same if the app is ever built without the middleware.
        received = time.perf_counter()
        status, content, media, headers = await endpoint.answer(
            request.headers.get("authorization"), request.headers.get("content-type", ""),
            request.url.query, await read_body(request.receive, request.headers.get("content-length")), received,
            request.headers.get("accept-language"))
        return Response(content, status_code=status, media_type=media, headers=headers)

    @app.get("/v1/decisions/{decision_id}", tags=["decisions"], response_model=DecisionResponse,
             operation_id="getDecision", responses=_problems(401, 403, 404, 422, 429),
             summary="A stored decision, exactly as it was answered")
    async def get_decision(request: Request,
                           decision_id: Annotated[str, Path(max_length=64)],
                           explain: bool = False) -> Response:
        admit(request, "client", "decisions")
        return _stored(request, await runtime.review.decision(await runtime.store.find(decision_id), explain))

    @app.get("/v1/decisions", tags=["decisions"], response_model=DecisionResponse,
             operation_id="findDecision", responses=_problems(401, 403, 404, 422, 429),
             summary="The stored decision for an application id")
    async def find_decision(request: Request,
                            application_id: Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
                            explain: bool = False) -> Response:
        admit(request, "client", "decisions")
        found = await runtime.store.find_by_application(application_id)
        return _stored(request, await runtime.review.decision(found, explain))

    def _stored(request: Request, answer: bytes | None) -> Response:
        if answer is None:
            raise ProblemError(404, "not-found", "no decision with that id")
        language = negotiate(request.headers.get("accept-language"))
        return Response(localise(answer, language), media_type=JSON,
                        headers={"Content-Language": language, "Vary": "Accept-Language"})

    @app.get("/healthz", tags=["operations"], summary="The process is alive", operation_id="healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Rules, models and stores are usable",
             operation_id="readyz", responses=_problems(503))
    async def readyz() -> Response:
        if not runtime.ready():
            # Anyone may ask: say what is wrong, not where (paths, rule text); GET /admin/rules does.
            errors = len(runtime.ruleset_errors)
            detail = (f"the ruleset was refused with {errors} error(s); GET /admin/rules lists them"
                      if errors else "a store or the ruleset is not usable")
            raise ProblemError(503, "not-ready", detail)
        assert runtime.ruleset is not None  # ready() says so
        return _json(orjson.dumps({"status": "ready", "ruleset": runtime.ruleset.version,
                                   "models": sorted(m.version for m in runtime.models.values())}))

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", operation_id="metrics",
             response_class=Response, responses={200: {"description": "Prometheus text format", "content": {
                 "text/plain; version=0.0.4": {"schema": {"type": "string"}}}}})
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/rules", tags=["admin"], responses=_problems(401, 403, 429), summary="The active ruleset",
             operation_id="getRules")
    async def admin_rules(request: Request) -> dict[str, Any]:
        admit(request, "admin", "admin")
        rs = runtime.ruleset
        fleet = None
        if runtime.fleet is not None:  # PostgreSQL: what is published and what each live replica serves
            fleet = {"published": await asyncio.to_thread(runtime.fleet.published.active),
                     "replicas": await asyncio.to_thread(runtime.fleet.published.replicas)}
        return {"version": rs.version if rs else None, "directory": str(rs.directory if rs else settings.rules_dir),
                "fleet": fleet,
                "errors": runtime.ruleset_errors,
                "products": sorted(rs.products) if rs else [],
                "rules": {"validation": len(rs.validation.rules), "fraud": len(rs.fraud.rules),
                          "strategy_rows": len(rs.strategy.rows)} if rs else {},
                "experiment": {"name": rs.experiment.name, "arms": [
                    {"name": a.name, "share": a.share, "shadow": shadow, "model": a.model,
                     "own_table": a.strategy.rows is not rs.strategy.rows}
                    for arms, shadow in ((rs.experiment.live, False), (rs.experiment.shadows, True))
                    for a in arms]} if rs else None}

    @app.post("/admin/rules/reload", tags=["admin"], responses=_problems(401, 403, 422, 429),
              operation_id="reloadRules",
              summary="Load rules/ again; refused with its errors if it is not clean")
    async def admin_reload(request: Request) -> Response:
        key = admit(request, "admin", "admin")
        ruleset, errors = await runtime.reload(by=key)
        if ruleset is None:
            raise ProblemError(422, "ruleset-refused", f"{len(errors)} error(s); the active ruleset stays",
                               [{"field": "rules", "pointer": "", "message": e} for e in errors])
        return _json(b'{"version":"' + ruleset.version.encode() + b'"}')

    def _list_name(name: str) -> str:
        if name not in runtime.lists.kinds:
            raise ProblemError(404, "unknown-list", f"no list '{name}' is declared in rules/lists.yaml")
        return name

    async def _change_list(request: Request, name: str, action: str) -> Response:
        key_id = admit(request, "admin", "admin")
        _list_name(name)
        require_json(request.headers.get("content-type", ""))
        body = await _read_body(request)
        try:
            change = ListChange.model_validate_json(body)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        reject_duplicate_keys(body)
        try:
            changed = await asyncio.to_thread(runtime.lists.change, Change(name, action, change.actor, key_id,
                                                                           change.reason), list(change.values))
        except EntryError as exc:
            raise ProblemError(422, "bad-entries", f"{len(exc.errors)} bad entries; nothing changed",
                               [{"field": f"values[{i}]", "pointer": f"/values/{i}", "message": why}
                                for i, why in exc.errors]) from None
        log.info("list changed", extra={"fields": {"list": name, "action": action, "changed": changed,
                                                   "actor": change.actor, "key": key_id}})
        return _json(orjson.dumps({"list": name, "action": action, "requested": len(change.values),
                                   "changed": changed}))

    @app.get("/admin/lists", tags=["admin"], responses=_problems(401, 403, 429),
             summary="The declared lists and their sizes", operation_id="getLists")
    async def admin_lists(request: Request) -> dict[str, Any]:
        admit(request, "admin", "admin")
        sizes = await asyncio.to_thread(runtime.lists.sizes)
        return {"lists": [{"name": name, "kind": kind, "entries": sizes.get(name, 0)}
                          for name, kind in sorted(runtime.lists.kinds.items())]}

    @app.post("/admin/lists/{name}/entries", tags=["admin"], operation_id="addListEntries",
              responses=_problems(401, 403, 404, 413, 415, 422, 429),
              summary="Add entries to a list (audited)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  JSON: {"schema": {"$ref": "#/components/schemas/ListChange"}}}}})
    async def add_entries(request: Request, name: str) -> Response:
        return await _change_list(request, name, "add")

    @app.delete("/admin/lists/{name}/entries", tags=["admin"], operation_id="removeListEntries",
                responses=_problems(401, 403, 404, 413, 415, 422, 429),
                summary="Remove entries from a list (audited)",
                openapi_extra={"requestBody": {"required": True, "content": {
                    JSON: {"schema": {"$ref": "#/components/schemas/ListChange"}}}}})
    async def remove_entries(request: Request, name: str) -> Response:
        return await _change_list(request, name, "remove")

    @app.get("/admin/lists/{name}/audit", tags=["admin"], operation_id="getListAudit",
             responses=_problems(401, 403, 404, 422, 429),
             summary="The latest changes to a list, newest first")
    async def list_audit(request: Request, name: str,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        admit(request, "admin", "admin")
        return {"list": _list_name(name), "changes": await asyncio.to_thread(runtime.lists.audit, name, limit)}

    app.include_router(review_routes(runtime, admit, _read_body))
    app.include_router(rights_routes(runtime, admit, _read_body))
    app.include_router(console_routes(runtime, keys))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        _, defs = models_json_schema([(DecisionRequest, "validation"), (ListChange, "validation"),
                                      (ReviewVerdict, "validation"), (ReviewNote, "validation"),
                                      (ReviewRejection, "validation"), (LabelBatch, "validation"),
                                      (Problem, "serialization")],
                                     ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(defs["$defs"])
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, ops in schema["paths"].items():
            if path.startswith(("/v1/", "/admin/")):
                for op in ops.values():
                    op["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
