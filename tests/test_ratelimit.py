"""Rate limits per key and endpoint class: a 429 with Retry-After beyond them, and the bucket
refills; limits come from settings."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from service.api.app import create_app
from service.api.problems import ProblemError
from service.api.ratelimit import RateLimiter
from service.config import Settings, parse_rate_limits
from service.runtime import Runtime

from .factories import ADMIN, CLIENT, application


def test_a_bucket_empties_refills_and_keeps_keys_and_classes_apart():
    now = [0.0]
    limiter = RateLimiter({"admin": (2.0, 3.0)}, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("ops-wang", "admin")
    with pytest.raises(ProblemError) as limited:
        limiter.take("ops-wang", "admin")
    assert limited.value.status == 429 and limited.value.headers == {"Retry-After": "1"}
    limiter.take("ops-li", "admin")  # another key has its own bucket
    limiter.take("ops-wang", "decisions")  # a class without a limit here
    now[0] += 0.5  # one token back at 2/s
    limiter.take("ops-wang", "admin")
    with pytest.raises(ProblemError):
        limiter.take("ops-wang", "admin")


@pytest.mark.parametrize(("value", "message"), [
    ('{"decision": {"rate": 1}}', "classes are decisions, admin, reviews"),
    ('{"admin": {"rate": 0}}', "admin.rate: a number above 0"),
    ('{"admin": {"rate": 5, "burst": 0.5}}', "admin.burst: at least 1"),
    ("[1]", "must be a JSON object"),
])
def test_bad_limits_are_named(value, message):
    with pytest.raises(ValueError, match=message):
        parse_rate_limits(value)


async def test_over_the_limit_is_a_429_with_retry_after_on_every_class(tmp_path):
    settings = Settings(data_dir=tmp_path / "data",
                        rate_limits='{"decisions": {"rate": 0.1, "burst": 2}, "admin": {"rate": 0.1, "burst": 1}}')
    runtime = Runtime.from_settings(settings)
    runtime.start()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            statuses = [(await client.post("/v1/decisions", json=application(f"rl-{n}"), headers=CLIENT)).status_code
                        for n in range(3)]
            assert statuses == [200, 200, 429]
            limited = await client.get("/v1/decisions?application_id=rl-0", headers=CLIENT)
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert limited.headers["content-type"] == "application/problem+json"
            assert (await client.get("/admin/rules", headers=ADMIN)).status_code == 200
            assert (await client.get("/admin/rules", headers=ADMIN)).status_code == 429
            wrong = {"Authorization": "Bearer " + hashlib.sha256(b"nobody").hexdigest()}
            assert (await client.post("/v1/decisions", json=application("rl-x"), headers=wrong)).status_code == 401
        assert runtime.store.get_by_application("rl-2") is None  # refused, not decided
    finally:
        runtime.stop()
