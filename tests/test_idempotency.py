"""Same application id + same body → the stored answer, byte for byte; different body → 409;
racing duplicates → one stored decision."""

from __future__ import annotations

import asyncio
import sqlite3

import orjson

from service.store.decisions import DecisionRecord, DecisionStore
from tests.factories import CLIENT, application


async def post_raw(client, raw: bytes):
    return await client.post("/v1/decisions", content=raw, headers=CLIENT)


async def test_retry_replays_identical_bytes(client):
    raw = orjson.dumps(application("app-retry"))
    first, second = await post_raw(client, raw), await post_raw(client, raw)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content


async def test_reserialised_body_is_the_same_body(client):
    body = application("app-reorder")
    first = await post_raw(client, orjson.dumps(body))
    reordered = dict(reversed(list(body.items())))
    reordered["loan"] = {**body["loan"], "amount": float(body["loan"]["amount"])}
    second = await post_raw(client, b"  " + orjson.dumps(reordered, option=orjson.OPT_INDENT_2))
    assert second.status_code == 200
    assert second.content == first.content


async def test_explain_replay_is_stable(client):
    raw = orjson.dumps(application("app-explain"))
    a = await client.post("/v1/decisions?explain=true", content=raw, headers=CLIENT)
    b = await client.post("/v1/decisions?explain=true", content=raw, headers=CLIENT)
    plain = await post_raw(client, raw)
    assert a.content == b.content
    assert {k: v for k, v in a.json().items() if k != "trace"} == plain.json()


async def test_thirty_racing_identical_requests_store_one_decision(client, runtime):
    raw = orjson.dumps(application("app-race"))
    answers = await asyncio.gather(*(post_raw(client, raw) for _ in range(30)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    rows = sqlite3.connect(runtime.settings.database_path).execute(
        "SELECT count(*) FROM decisions WHERE application_id = 'app-race'").fetchone()[0]
    assert rows == 1


async def test_racing_different_bodies_one_wins_others_conflict(client, runtime):
    bodies = [orjson.dumps(application("app-race2", loan={"amount": 20000 + i})) for i in range(10)]
    answers = await asyncio.gather(*(post_raw(client, raw) for raw in bodies))
    assert sorted(r.status_code for r in answers) == [200] + [409] * 9


async def test_a_body_another_process_stored_is_replayed_not_refused(client, runtime):
    """Process A works on body X for an id while process B stores body Y for it; requests in A
    that carry Y must get B's decision (200), those that carry X a 409 — not 409 for all."""
    from service.decisions import fingerprint
    from service.schemas import DecisionRequest

    x = application("app-xproc", loan={"amount": 20000})
    y = application("app-xproc", loan={"amount": 25000})
    other = DecisionRequest.model_validate(y, strict=False)
    gather = runtime.gatherer.gather

    async def meanwhile_b_stores_y(request, facts, ruleset, deadline):
        await runtime.store.save(DecisionRecord("dec_from_b", "app-xproc", fingerprint(other), "refer",
                                                "consumer_quick", "champion", "2026-11-23T01:30:00+00:00",
                                                b'{"decision_id":"dec_from_b"}', b"[]"))
        return await gather(request, facts, ruleset, deadline)

    runtime.gatherer.gather = meanwhile_b_stores_y  # type: ignore[method-assign]
    first = asyncio.ensure_future(post_raw(client, orjson.dumps(x)))
    await asyncio.sleep(0)
    same_as_b = await asyncio.gather(*(post_raw(client, orjson.dumps(y)) for _ in range(3)))
    assert (await first).status_code == 409
    assert [r.status_code for r in same_as_b] == [200] * 3
    assert all(r.json()["decision_id"] == "dec_from_b" for r in same_as_b)


def _record(decision_id: str, application_id: str, digest: bytes = b"x" * 32) -> DecisionRecord:
    return DecisionRecord(decision_id, application_id, digest, "refer", "p", "champion",
                          "2026-01-01T00:00:00+00:00", b'{"a":1}', b"[]")


async def test_store_claims_application_id_with_the_unique_constraint(tmp_path):
    """Two replicas (two stores on one file) racing for one application id: one row, and the
    loser is told the winner's record in the same transaction."""
    path = tmp_path / "d.sqlite3"
    a, b = DecisionStore(path), DecisionStore(path)
    a.open(), b.open()
    try:
        (first, created_a), (second, created_b) = await asyncio.gather(
            a.save(_record("dec_A", "app-x")), b.save(_record("dec_B", "app-x")))
        assert sorted([created_a, created_b]) == [False, True]
        assert first.decision_id == second.decision_id
        assert a.get_by_application("app-x").decision_id == first.decision_id
    finally:
        a.close(), b.close()


async def test_group_commit_batches_concurrent_saves(tmp_path):
    store = DecisionStore(tmp_path / "d.sqlite3", linger_s=0.002)
    store.open()
    try:
        results = await asyncio.gather(*(store.save(_record(f"dec_{i}", f"app-{i}")) for i in range(200)))
        assert all(created for _, created in results)
        assert all(store.get(f"dec_{i}") is not None for i in range(200))
    finally:
        store.close()
    from service import metrics

    batches = metrics.STORE_BATCH_SIZE.collect()[0].samples
    count = next(s.value for s in batches if s.name.endswith("_count"))
    total = next(s.value for s in batches if s.name.endswith("_sum"))
    assert total / count > 1  # more than one decision per fsync on average
