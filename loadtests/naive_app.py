"""The naive anchor: what a first version of the service would be — a plain FastAPI route that
validates the body with the service's own pydantic model and makes the same three provider
calls (identity, face, SMS) with one aiohttp session, concurrently, then answers. No rules, no
model, no stores. The service does all of this and more; the benchmark shows it in the same run.

    LOAN_PROVIDERS_URL=http://127.0.0.1:8081 python -m uvicorn loadtests.naive_app:app \\
        --loop uvloop --http httptools --port 8091
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError

from service.schemas import DecisionRequest
from service.verification.providers import APIS

URL = os.environ.get("LOAN_PROVIDERS_URL", "http://127.0.0.1:8081")
app = FastAPI()
_session: aiohttp.ClientSession | None = None


def session() -> aiohttp.ClientSession:
    global _session
    if _session is None:
        _session = aiohttp.ClientSession(base_url=URL + "/", connector=aiohttp.TCPConnector(limit=32),
                                         headers={"Authorization": "Bearer bench"})
    return _session


async def call(name: str, application: DecisionRequest) -> dict:
    api = APIS[name]
    async with session().post(api.path.lstrip("/"), data=orjson.dumps(api.payload(application)),
                              headers={"Content-Type": "application/json"}) as response:
        return api.result(orjson.loads(await response.read()))


@app.post("/v1/decisions")
async def decide(request: Request) -> Response:
    try:  # from the JSON text, as the service does (its strict types reject a parsed dict's strings)
        application = DecisionRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        return Response(exc.json(), status_code=422, media_type="application/json")
    results = await asyncio.gather(*(call(name, application) for name in APIS))
    outcome = "approve" if all(r["status"] in ("match", "pass", "verified") for r in results) else "refer"
    return Response(orjson.dumps({"application_id": application.application_id, "outcome": outcome}),
                    media_type="application/json")


@app.get("/ping")
async def ping() -> Response:
    return Response(b"pong", media_type="text/plain")
