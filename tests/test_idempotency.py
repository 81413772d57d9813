"""Same application id + same body → the stored answer, byte for byte; different body → 409;
racing duplicates → one stored decision."""

from __future__ import annotations

import asyncio
import sqlite3

import orjson

import pytest

from service.store.decisions import Claim, DecisionRecord, DecisionStore, SqliteDecisions, StoreUnavailable
from service.store.postgres import Database
from service.store.postgres.decisions import PostgresDecisions
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


def open_decisions(url: str, path, linger_s: float = 0.0) -> DecisionStore:
    store = PostgresDecisions(Database(url), linger_s) if url else SqliteDecisions(path, linger_s)
    store.open()
    return store


async def test_store_claims_application_id_with_the_unique_constraint(tmp_path, backend_url):
    """Two replicas (two stores on one file or database) racing for one application id: one
    row, and the loser is told the winner's record in the same transaction."""
    path = tmp_path / "d.sqlite3"
    a, b = open_decisions(backend_url, path), open_decisions(backend_url, path)
    try:
        (first, created_a), (second, created_b) = await asyncio.gather(
            a.save(_record("dec_A", "app-x")), b.save(_record("dec_B", "app-x")))
        assert sorted([created_a, created_b]) == [False, True]
        assert first.decision_id == second.decision_id
        assert (await a.find_by_application("app-x")).decision_id == first.decision_id
        assert (await b.find(first.decision_id)) == first
    finally:
        a.close(), b.close()


async def test_one_batch_with_two_copies_of_an_application_stores_one(tmp_path, backend_url):
    store = open_decisions(backend_url, tmp_path / "d.sqlite3", linger_s=0.01)
    try:
        (one, created_one), (two, created_two) = await asyncio.gather(
            store.save(_record("dec_1", "app-twice")), store.save(_record("dec_2", "app-twice")))
        assert (created_one, created_two) == (True, False) and two == one
    finally:
        store.close()


async def test_claims_let_one_replica_decide_and_lapse_when_it_dies(database_url):
    """Across replicas: the first claim wins, others are told to wait; a stored decision is
    returned instead of a claim; a claim whose replica died lapses after its ttl."""
    a, b = open_decisions(database_url, None), open_decisions(database_url, None)
    try:
        assert await a.claim("app-c", b"x" * 32, 5.0) is Claim.OURS
        assert await b.claim("app-c", b"x" * 32, 5.0) is Claim.ELSEWHERE
        await a.save(_record("dec_c", "app-c"))
        assert (await b.claim("app-c", b"x" * 32, 5.0)).decision_id == "dec_c"
        assert await a.claim("app-dead", b"x" * 32, 0.05) is Claim.OURS  # then a dies
        assert await b.claim("app-dead", b"y" * 32, 5.0) is Claim.ELSEWHERE
        await asyncio.sleep(0.1)
        assert await b.claim("app-dead", b"y" * 32, 5.0) is Claim.OURS
    finally:
        a.close(), b.close()


async def test_an_unreachable_database_is_store_unavailable_never_a_hang(pg_cluster):
    store = open_decisions(pg_cluster.url.rsplit(":", 1)[0] + ":1/none", None)
    try:
        assert not store.healthy()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.save(_record("dec_u", "app-u")), 10)
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.claim("app-u", b"x" * 32, 5.0), 10)
    finally:
        store.close()


async def test_group_commit_batches_concurrent_saves(tmp_path, backend_url):
    store = open_decisions(backend_url, tmp_path / "d.sqlite3", linger_s=0.002)
    try:
        results = await asyncio.gather(*(store.save(_record(f"dec_{i}", f"app-{i}")) for i in range(200)))
        assert all(created for _, created in results)
        assert all([await store.find(f"dec_{i}") is not None for i in range(200)])
    finally:
        store.close()
    from service import metrics

    batches = metrics.STORE_BATCH_SIZE.collect()[0].samples
    count = next(s.value for s in batches if s.name.endswith("_count"))
    total = next(s.value for s in batches if s.name.endswith("_sum"))
    assert total / count > 1  # more than one decision per fsync on average
