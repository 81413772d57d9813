"""No input, however malformed, produces a 500 (property-based)."""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.factories import CLIENT, application

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)


def _paths(doc, prefix=()):
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield prefix + (i,)
            yield from _paths(value, prefix + (i,))


BASE = application("app-fuzz")
PATHS = list(_paths(BASE))


def _set(doc, path, value):
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value
    return doc


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


async def _post(client, raw: bytes) -> int:
    resp = await client.post("/v1/decisions", content=raw, headers=CLIENT)
    assert resp.status_code < 500, resp.text
    if resp.status_code != 200:
        assert resp.headers["content-type"] == "application/problem+json"
    return resp.status_code


async def test_random_json_documents(client):
    @SETTINGS
    @given(json_values)
    def check(doc):
        asyncio.get_event_loop().run_until_complete(_post(client, json.dumps(doc).encode()))

    await asyncio.to_thread(_run_in_new_loop, check)


async def test_valid_application_with_one_field_replaced(client):
    @SETTINGS
    @given(st.sampled_from(PATHS), json_values, st.text(max_size=8))
    def check(path, value, suffix):
        doc = json.loads(json.dumps(BASE))
        doc["application_id"] = "fz-" + "".join(c for c in suffix if c.isalnum())[:8]
        _set(doc, path, value)
        asyncio.get_event_loop().run_until_complete(_post(client, json.dumps(doc).encode()))

    await asyncio.to_thread(_run_in_new_loop, check)


async def test_random_bytes(client):
    @SETTINGS
    @given(st.binary(max_size=300))
    def check(raw):
        asyncio.get_event_loop().run_until_complete(_post(client, raw))

    await asyncio.to_thread(_run_in_new_loop, check)


def _run_in_new_loop(check) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        check()
    finally:
        loop.close()
