"""The yardstick: a FastAPI app whose decision endpoint returns a constant without reading the
body, served exactly like the service (one uvicorn worker, uvloop, httptools). The benchmark
reports the service's throughput as a share of this one's, measured in the same run.

    python -m uvicorn loadtests.bare_app:app --loop uvloop --http httptools --port 8090
"""

from fastapi import FastAPI
from fastapi.responses import Response

app = FastAPI()
ANSWER = b'{"outcome":"approve"}'


@app.post("/v1/decisions")
async def decide() -> Response:
    return Response(ANSWER, media_type="application/json")


@app.get("/ping")
async def ping() -> Response:
    return Response(b"pong", media_type="text/plain")
