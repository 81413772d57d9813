"""The manual-review channel: a case for every live referral, claims with leases, verdicts inside
the product's limits, four eyes, the clock, the final answer beside the automatic one, and the
audit — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from service import metrics
from service.api.app import create_app
from service.config import Settings
from service.runtime import Runtime
from service.store.decisions import StoreUnavailable
from tests.conftest import import_whitelist
from tests.factories import ADMIN, CLIENT, REVIEWER_A, REVIEWER_B, application, id_number, merchant

LISTED_ID = id_number("19880101", "110105", "456")  # pre-approved for 2000 in the fixture's whitelist
REVIEWERS = [f"reviewer:r{i}:{hashlib.sha256(f'reviewer-key-{i}'.encode()).hexdigest()}" for i in range(10)]


def reviewer(i: int) -> dict[str, str]:
    return {"Authorization": f"Bearer reviewer-key-{i}", "Content-Type": "application/json"}


@pytest.fixture
async def app(tmp_path: Path, backend_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=backend_url,
                        api_keys=Settings().api_keys + "," + ",".join(REVIEWERS))
    whitelist = tmp_path / "whitelist.csv"
    whitelist.write_text(f"id_number,segment,limit,rate_tier,valid_until\n{LISTED_ID},consumer,2000,T1,2030-12-31\n")
    import_whitelist(settings, whitelist)
    runtime = Runtime.from_settings(settings)
    runtime.start()
    transport = httpx.ASGITransport(app=create_app(settings, runtime), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, runtime
    runtime.stop()


async def refer(client: httpx.AsyncClient, app_id: str, **patch) -> dict:
    """An application submitted now, referred for want of providers (none are configured here)."""
    patch.setdefault("submitted_at", dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).isoformat())
    resp = await client.post("/v1/decisions", content=orjson.dumps(application(app_id, **patch)), headers=CLIENT)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["outcome"] == "refer", body
    return body


async def case_of(client: httpx.AsyncClient, decision_id: str) -> dict:
    queue = (await client.get("/v1/reviews", headers=REVIEWER_A)).json()["cases"]
    return next(c for c in queue if c["decision_id"] == decision_id)


async def call(client: httpx.AsyncClient, case_id: str, action: str, headers: dict, body: dict | None = None):
    return await client.post(f"/v1/reviews/{case_id}/{action}", headers=headers,
                             content=orjson.dumps(body) if body is not None else b"")


def decline(reason: str = "FRAUD_SUSPECTED") -> dict:
    return {"outcome": "decline", "reason": reason, "note": "called the customer, 13800138000, no answer"}


def approve(amount: float, term: int = 12, tier: str = "T2") -> dict:
    return {"outcome": "approve", "reason": "VERIFIED_BY_CALL", "note": "confirmed by phone",
            "offer": {"amount": amount, "term_months": term, "rate_tier": tier}}


async def test_a_referral_opens_one_case_with_what_the_reviewer_needs(app):
    client, _ = app
    decided = await refer(client, "rv-1")
    case = await case_of(client, decided["decision_id"])
    assert case["state"] == "open" and case["product"] == "consumer_quick" and case["priority"] == "normal"
    submitted = dt.datetime.fromisoformat(decided["submitted_at"])
    assert dt.datetime.fromisoformat(case["due_at"]) == submitted + dt.timedelta(minutes=10)
    detail = (await client.get(f"/v1/reviews/{case['case_id']}", headers=REVIEWER_A)).json()
    applicant = detail["application"]["applicant"]
    sent = application("rv-1")["applicant"]
    assert applicant["id_number"] == sent["id_number"][:3] + "*" * 13 + sent["id_number"][-2:]
    assert applicant["phone"] == sent["phone"][:3] + "****" + sent["phone"][-4:]
    assert applicant["name"] == sent["name"][0] + "*" * (len(sent["name"]) - 1)
    assert sent["id_number"] not in orjson.dumps(detail).decode()
    assert [r["code"] for r in detail["reasons"]] == [r["code"] for r in decided["reasons"]]
    assert {s["stage"] for s in detail["trace"]} >= {"validation", "fraud"}
    assert detail["checks"]["identity"]["status"] == "error"
    assert [e["action"] for e in detail["history"]] == ["opened"]
    # A replayed request opens no second case.
    await refer(client, "rv-1", submitted_at=decided["submitted_at"])
    assert len([c for c in (await client.get("/v1/reviews", headers=REVIEWER_A)).json()["cases"]
                if c["application_id"] == "rv-1"]) == 1


async def test_declines_open_no_case(app):
    client, _ = app
    body = application("rv-decline", loan={"amount": 999999})
    resp = (await client.post("/v1/decisions", content=orjson.dumps(body), headers=CLIENT)).json()
    assert resp["outcome"] == "decline"
    assert (await client.get("/v1/reviews", headers=REVIEWER_A)).json()["cases"] == []


async def test_a_case_that_cannot_be_stored_takes_its_decision_with_it(app, monkeypatch):
    client, runtime = app

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(runtime.stores.reviews, "insert_case", broken)
    resp = await client.post("/v1/decisions", content=orjson.dumps(application("rv-atomic")), headers=CLIENT)
    assert resp.status_code == 503
    assert (await client.get("/v1/decisions", params={"application_id": "rv-atomic"}, headers=CLIENT)).status_code == 404
    monkeypatch.undo()
    decided = await refer(client, "rv-atomic", submitted_at=application()["submitted_at"])  # the retry decides it, with its case
    assert (await case_of(client, decided["decision_id"]))["state"] == "open"


async def test_roles(app):
    client, _ = app
    assert (await client.get("/v1/reviews", headers=CLIENT)).status_code == 403
    assert (await client.get("/v1/reviews")).status_code == 401
    resp = await client.post("/v1/decisions", content=orjson.dumps(application("rv-role")), headers=REVIEWER_A)
    assert resp.status_code == 403


async def test_one_reviewer_at_a_time_and_a_lease_that_lapses(app):
    client, runtime = app
    case_id = (await case_of(client, (await refer(client, "rv-claim"))["decision_id"]))["case_id"]
    first = await call(client, case_id, "claim", REVIEWER_A)
    assert first.status_code == 200 and first.json()["holder"] == "dev-reviewer-a"
    second = await call(client, case_id, "claim", REVIEWER_B)
    assert second.status_code == 409 and "dev-reviewer-a" in second.json()["detail"]
    assert (await call(client, case_id, "decide", REVIEWER_B, decline())).status_code == 409
    assert (await call(client, case_id, "release", REVIEWER_B)).status_code == 409
    assert (await call(client, case_id, "release", REVIEWER_A, {"note": "lunch"})).status_code == 200
    assert (await call(client, case_id, "claim", REVIEWER_B)).status_code == 200
    # B walks away; after the lease another reviewer may take the case, and the audit says so.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=runtime.settings.review_lease_s + 1)
    runtime.review.now = lambda: later
    assert (await call(client, case_id, "decide", REVIEWER_B, decline())).status_code == 409
    assert (await call(client, case_id, "claim", REVIEWER_A)).status_code == 200
    history = (await client.get(f"/v1/reviews/{case_id}/history", headers=ADMIN)).json()
    assert [(e["action"], e["key"], e["from"], e["to"]) for e in history] == [
        ("opened", "system", None, "open"), ("claimed", "dev-reviewer-a", "open", "claimed"),
        ("released", "dev-reviewer-a", "claimed", "open"), ("claimed", "dev-reviewer-b", "open", "claimed"),
        ("expired", "system", "claimed", "open"), ("claimed", "dev-reviewer-a", "open", "claimed")]
    assert history[2]["note"] == "lunch"


async def test_a_decline_is_final_shown_beside_the_automatic_outcome_and_never_decided_twice(app):
    client, _ = app
    decided = await refer(client, "rv-decline-1")
    case_id = (await case_of(client, decided["decision_id"]))["case_id"]
    await call(client, case_id, "claim", REVIEWER_A)
    bad = await call(client, case_id, "decide", REVIEWER_A, decline("NOT_A_REASON"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "reason"
    with_offer = {**decline(), "offer": {"amount": 1000, "term_months": 12, "rate_tier": "T1"}}
    assert (await call(client, case_id, "decide", REVIEWER_A, with_offer)).status_code == 422
    done = await call(client, case_id, "decide", REVIEWER_A, decline())
    assert done.status_code == 200 and done.json()["state"] == "decided"
    assert (await call(client, case_id, "decide", REVIEWER_A, decline())).status_code == 409
    assert (await call(client, case_id, "claim", REVIEWER_B)).status_code == 409
    final = (await client.get(f"/v1/decisions/{decided['decision_id']}", headers=CLIENT)).json()
    assert final["outcome"] == "decline" and final["offer"] is None
    fraud = {"zh": "申请存在欺诈风险迹象。", "en": "The application shows signs of fraud."}
    assert final["reasons"] == [{"code": "FRAUD_SUSPECTED", "stage": "review", "message": fraud["zh"],
                                 "messages": fraud}]
    english = (await client.get(f"/v1/decisions/{decided['decision_id']}",
                                headers={**CLIENT, "Accept-Language": "en-GB,en;q=0.9"})).json()
    assert english["reasons"][0]["message"] == fraud["en"]
    assert english["automatic"]["reasons"][0]["message"] == decided["reasons"][0]["messages"]["en"]
    assert final["automatic"]["outcome"] == "refer" and final["automatic"]["reasons"] == decided["reasons"]
    assert final["review"]["state"] == "decided" and final["review"]["decided_by"] == "dev-reviewer-a"
    assert "note" not in orjson.dumps(final["review"]).decode()  # the reviewer's note stays inside
    # The note is masked in the audit: it quoted a phone number.
    history = (await client.get(f"/v1/reviews/{case_id}/history", headers=REVIEWER_A)).json()
    assert "13800138000" not in orjson.dumps(history).decode() and "138****8000" in history[-1]["note"]
    # The POST replay is still exactly what was answered then.
    replay = await client.post("/v1/decisions", headers=CLIENT, content=orjson.dumps(
        application("rv-decline-1", submitted_at=decided["submitted_at"])))
    assert replay.json() == decided


async def test_an_approval_respects_the_product_and_the_whitelist_limit(app):
    client, _ = app
    listed = await refer(client, "rv-approve", applicant={"id_number": LISTED_ID, "name": "Ma Li"})
    case_id = (await case_of(client, listed["decision_id"]))["case_id"]
    await call(client, case_id, "claim", REVIEWER_A)
    for body, field in ((approve(2500), "offer.amount"), (approve(500), "offer.amount"),
                        (approve(1000, term=7), "offer.term_months"), (approve(1000, tier="T9"), "offer.rate_tier"),
                        ({**approve(1000), "offer": None}, "offer")):
        resp = await call(client, case_id, "decide", REVIEWER_A, body)
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == field, (body, resp.text)
    resp = await call(client, case_id, "decide", REVIEWER_A, approve(1000, tier="T1"))
    assert resp.status_code == 200 and resp.json()["state"] == "decided"
    final = (await client.get("/v1/decisions", params={"application_id": "rv-approve"}, headers=CLIENT)).json()
    assert final["outcome"] == "approve" and final["reasons"] == []
    assert final["offer"] == {"amount": 1000.0, "limit": 2000.0, "term_months": 12, "annual_rate": 0.045,
                              "rate_tier": "T1"}


async def test_four_eyes_above_the_product_amount(app):
    client, _ = app
    decided = await refer(client, "rv-4eyes", loan={"amount": 40000})
    case_id = (await case_of(client, decided["decision_id"]))["case_id"]
    await call(client, case_id, "claim", REVIEWER_A)
    waiting = await call(client, case_id, "decide", REVIEWER_A, approve(40000))
    assert waiting.status_code == 200 and waiting.json()["state"] == "awaiting_confirmation"
    assert waiting.json()["proposal"]["by"] == "dev-reviewer-a"
    final = (await client.get(f"/v1/decisions/{decided['decision_id']}", headers=CLIENT)).json()
    assert final["outcome"] == "refer" and final["review"]["state"] == "awaiting_confirmation"
    # The proposer can neither claim nor confirm it.
    assert (await call(client, case_id, "claim", REVIEWER_A)).status_code == 403
    assert (await call(client, case_id, "confirm", REVIEWER_A)).status_code == 409
    # A second reviewer rejects: back to a first review, the proposal gone.
    assert (await call(client, case_id, "claim", REVIEWER_B)).json()["state"] == "confirming"
    rejected = await call(client, case_id, "reject", REVIEWER_B, {"note": "income not documented"})
    assert rejected.json()["state"] == "open" and rejected.json()["proposal"] is None
    # B now proposes; A (a different key) confirms.
    await call(client, case_id, "claim", REVIEWER_B)
    await call(client, case_id, "decide", REVIEWER_B, approve(35000))
    assert (await call(client, case_id, "claim", REVIEWER_B)).status_code == 403
    await call(client, case_id, "claim", REVIEWER_A)
    done = await call(client, case_id, "confirm", REVIEWER_A, {"note": "checked"})
    assert done.status_code == 200 and done.json()["state"] == "decided"
    final = (await client.get(f"/v1/decisions/{decided['decision_id']}", headers=CLIENT)).json()
    assert final["outcome"] == "approve" and final["offer"]["amount"] == 35000
    assert (final["review"]["decided_by"], final["review"]["confirmed_by"]) == ("dev-reviewer-b", "dev-reviewer-a")
    actions = [e["action"] for e in (await client.get(f"/v1/reviews/{case_id}", headers=REVIEWER_A)).json()["history"]]
    assert actions == ["opened", "claimed", "proposed", "claimed", "rejected", "claimed", "proposed", "claimed",
                       "confirmed"]
    # Below the amount one reviewer suffices.
    small = await refer(client, "rv-small", loan={"amount": 20000})
    small_id = (await case_of(client, small["decision_id"]))["case_id"]
    await call(client, small_id, "claim", REVIEWER_A)
    assert (await call(client, small_id, "decide", REVIEWER_A, approve(20000))).json()["state"] == "decided"


async def test_ten_reviewers_claim_at_once_one_wins_and_a_case_is_decided_once(app):
    client, _ = app
    case_id = (await case_of(client, (await refer(client, "rv-race"))["decision_id"]))["case_id"]
    claims = await asyncio.gather(*(call(client, case_id, "claim", reviewer(i)) for i in range(10)))
    assert sorted(r.status_code for r in claims) == [200] + [409] * 9
    holder = next(i for i, r in enumerate(claims) if r.status_code == 200)
    verdicts = await asyncio.gather(*(call(client, case_id, "decide", reviewer(holder), decline())
                                      for _ in range(10)))
    assert sorted(r.status_code for r in verdicts) == [200] + [409] * 9
    actions = [e["action"] for e in (await client.get(f"/v1/reviews/{case_id}/history", headers=REVIEWER_A)).json()]
    assert actions == ["opened", "claimed", "decided"]


async def test_the_queue_is_earliest_deadline_first_filtered_and_paginated(app):
    client, _ = app
    base = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    ids = [id_number("19900307", "110105", f"{500 + i}") for i in range(5)]
    for i, minutes in enumerate([5, 1, 3, 4, 2]):  # different people and devices: no velocity rule fires
        await refer(client, f"rv-q{i}", submitted_at=(base + dt.timedelta(minutes=minutes)).isoformat(),
                    applicant={"id_number": ids[i], "phone": f"1390000000{i}"},
                    device={"device_id": f"dev-q{i}", "ip": f"203.0.113.{i + 10}"})
    other = merchant("rv-merchant", applicant={"id_number": id_number("19900307", "110105", "600"),
                                               "phone": "13900000099"}, device={"device_id": "dev-m"})
    resp = await client.post("/v1/decisions", content=orjson.dumps(other), headers=CLIENT)
    assert resp.json()["outcome"] == "refer", resp.text
    page = (await client.get("/v1/reviews", params={"limit": 2, "product": "consumer_quick"}, headers=REVIEWER_A)).json()
    seen = [c["application_id"] for c in page["cases"]]
    while page["next_cursor"]:
        page = (await client.get("/v1/reviews", params={"limit": 2, "product": "consumer_quick",
                                                        "cursor": page["next_cursor"]}, headers=REVIEWER_A)).json()
        seen += [c["application_id"] for c in page["cases"]]
    assert seen == ["rv-q1", "rv-q4", "rv-q2", "rv-q3", "rv-q0"]
    assert all(c["priority"] == "urgent" for c in page["cases"])  # long past their deadlines
    assert (await client.get("/v1/reviews", params={"state": "decided"}, headers=REVIEWER_A)).json()["cases"] == []
    assert (await client.get("/v1/reviews", params={"state": "bogus"}, headers=REVIEWER_A)).status_code == 422
    assert (await client.get("/v1/reviews", params={"cursor": "!!"}, headers=REVIEWER_A)).status_code == 400


async def test_the_clock_counts_a_breach_once_and_the_queue_gauges(app):
    client, runtime = app
    now = dt.datetime.now(dt.UTC)
    submitted = now.astimezone(dt.timezone(dt.timedelta(hours=8)))
    decided = await refer(client, "rv-clock", submitted_at=submitted.isoformat())
    case = await case_of(client, decided["decision_id"])
    assert case["priority"] == "normal" and not case["breached"]
    runtime.review.now = lambda: now + dt.timedelta(minutes=6)
    assert (await case_of(client, decided["decision_id"]))["priority"] == "high"
    breaches = metrics.REVIEW_BREACHES.labels("consumer_quick")
    before = breaches._value.get()
    runtime.review.now = lambda: now + dt.timedelta(minutes=11)
    await runtime.review.tick()
    await runtime.review.tick()
    assert breaches._value.get() == before + 1
    case = await case_of(client, decided["decision_id"])
    assert case["breached"] and case["priority"] == "urgent"
    assert metrics.REVIEW_CASES.labels("consumer_quick", "open")._value.get() >= 1
    assert metrics.REVIEW_OLDEST_SECONDS.labels("consumer_quick")._value.get() >= 600
    # The ten-minute clock counts the referral when the review decides it.
    sla = metrics.SLA_ELAPSED.labels("consumer_quick")
    count = sla._sum.get()
    await call(client, case["case_id"], "claim", REVIEWER_A)
    await call(client, case["case_id"], "decide", REVIEWER_A, decline())
    assert sla._sum.get() - count >= 600


async def test_a_store_failure_during_a_verdict_changes_nothing(app, monkeypatch):
    client, runtime = app
    case_id = (await case_of(client, (await refer(client, "rv-fail"))["decision_id"]))["case_id"]
    await call(client, case_id, "claim", REVIEWER_A)
    store = runtime.stores.reviews
    real = store._insert_events

    def failing(conn, events):
        real(conn, events)
        raise StoreUnavailable("lost the database mid-transaction")
    monkeypatch.setattr(store, "_insert_events", failing)
    assert (await call(client, case_id, "decide", REVIEWER_A, decline())).status_code == 503
    monkeypatch.undo()
    detail = (await client.get(f"/v1/reviews/{case_id}", headers=REVIEWER_A)).json()
    assert detail["state"] == "claimed" and [e["action"] for e in detail["history"]] == ["opened", "claimed"]


def test_a_case_row_round_trips_through_both_stores(tmp_path, backend_url):
    """Every column, times included, reads back as written."""
    from service.review.case import OPEN, claim, new_id
    from service.store.backends import stores
    from service.store.keys import KeyedHash
    from service.store.decisions import DecisionRecord
    from service.store.review import CaseRow

    chosen = stores(backend_url, tmp_path, KeyedHash("k" * 32))
    chosen.decisions.open()
    chosen.reviews.open()
    try:
        opened = dt.datetime(2026, 11, 23, 1, 30, 0, 0, tzinfo=dt.UTC)
        case = CaseRow(new_id("rev_"), "dec_X", "app-x", "consumer_quick", OPEN, opened, opened,
                       opened + dt.timedelta(minutes=10), 5000.0, b'{"a":1}')
        record = DecisionRecord("dec_X", "app-x", b"d" * 32, "refer", "consumer_quick", "champion",
                                opened.isoformat(), b'{"outcome":"refer"}', b"[]", case=case)

        async def save():
            return await chosen.decisions.save(record)
        asyncio.run(save())
        assert chosen.reviews.get(case.case_id) == case
        assert chosen.reviews.by_decision("dec_X") == case
        changed = chosen.reviews.transition(case.case_id, lambda c: claim(c, "k1", opened, dt.timedelta(minutes=5)))
        assert chosen.reviews.get(case.case_id) == dataclasses.replace(
            case, state="claimed", holder="k1", lease_until=opened + dt.timedelta(minutes=5), version=1)
        assert changed.case.state == "claimed"
    finally:
        chosen.reviews.close()
        chosen.decisions.close()


# --- the final answer pushed to the bank's backend ----------------------------------------------

SECRET = "s" * 40


@pytest.fixture
def receiver():
    from tests.conftest import free_port
    from tests.receiver import Receiver

    r = Receiver(free_port())
    yield r
    r.stop()


@pytest.fixture
async def pushing(tmp_path: Path, backend_url: str, receiver) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=backend_url, callback_url=receiver.url,
                        callback_secret=SECRET, callback_timeout_s=0.5)
    import_whitelist(settings)
    runtime = Runtime.from_settings(settings)
    runtime.start()
    transport = httpx.ASGITransport(app=create_app(settings, runtime), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, runtime
    await runtime.callbacks.close()
    runtime.stop()


def verify(headers: dict[str, str], body: bytes) -> None:
    parts = dict(p.split("=", 1) for p in headers["x-loan-signature"].split(","))
    expected = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(int(parts["t"]) - dt.datetime.now(dt.UTC).timestamp()) < 60


async def finish(client: httpx.AsyncClient, app_id: str) -> dict:
    decided = await refer(client, app_id)
    case_id = (await case_of(client, decided["decision_id"]))["case_id"]
    await call(client, case_id, "claim", REVIEWER_A)
    assert (await call(client, case_id, "decide", REVIEWER_A, decline())).status_code == 200
    return decided


async def retry_later(runtime: Runtime, seconds: float = 600) -> int:
    """Deliver what is due as if ``seconds`` had passed (backoff included)."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    runtime.callbacks.now = lambda: later
    return await runtime.callbacks.deliver_due()


async def test_a_final_decision_is_pushed_signed_and_retried_through_faults(pushing, receiver):
    client, runtime = pushing
    decided = await finish(client, "rv-push")
    # Down: nothing listens yet.
    assert await runtime.callbacks.deliver_due() == 1 and receiver.attempts == 0
    # Answering 503.
    receiver.mode = "fail"
    receiver.start()
    assert await retry_later(runtime) == 1 and receiver.attempts == 1 and receiver.received == []
    # Too slow (the timeout is 0.5 s).
    receiver.mode, receiver.delay = "slow", 1.5
    assert await retry_later(runtime, 1200) == 1 and receiver.received == []
    await asyncio.sleep(1.2)  # let the slow handler finish before the mode changes
    # Recovered.
    receiver.mode = "ok"
    assert await retry_later(runtime, 2400) == 1
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    verify(headers, body)
    event = orjson.loads(body)
    assert headers["x-loan-event-id"] == event["event_id"] and event["type"] == "decision.final"
    final = (await client.get(f"/v1/decisions/{decided['decision_id']}", headers=CLIENT)).json()
    assert event["decision"] == final and final["outcome"] == "decline"
    # Delivered once: nothing more is due, however late.
    assert await retry_later(runtime, 100_000) == 0
    events = runtime.stores.reviews.events_of(decided["decision_id"])
    assert len(events) == 1 and events[0].attempts == 4 and events[0].delivered_at is not None
    assert metrics.CALLBACK_DELIVERIES.labels("timeout")._value.get() >= 1


async def test_two_dispatchers_do_not_send_one_event_at_once(pushing, receiver):
    client, runtime = pushing
    receiver.start()
    await finish(client, "rv-twice")
    sent = await asyncio.gather(runtime.callbacks.deliver_due(), runtime.callbacks.deliver_due())
    assert sorted(sent) == [0, 1] and len(receiver.received) == 1


def test_a_restarted_service_delivers_what_its_receiver_missed(tmp_path, receiver):
    """The receiver is down while a case is decided and the service restarts; once both are up,
    the event arrives — from the durable outbox, signed, once."""
    from tests.conftest import LiveServer

    server = LiveServer(tmp_path / "live", env={"LOAN_CALLBACK_URL": receiver.url, "LOAN_CALLBACK_SECRET": SECRET,
                                                "LOAN_CALLBACK_TIMEOUT_S": "1"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            body = application("rv-restart", submitted_at=dt.datetime.now(dt.UTC).isoformat())
            decided = http.post("/v1/decisions", content=orjson.dumps(body), headers=CLIENT).json()
            assert decided["outcome"] == "refer"
            case = next(c for c in http.get("/v1/reviews", headers=REVIEWER_A).json()["cases"]
                        if c["decision_id"] == decided["decision_id"])
            http.post(f"/v1/reviews/{case['case_id']}/claim", headers=REVIEWER_A)
            assert http.post(f"/v1/reviews/{case['case_id']}/decide", headers=REVIEWER_A,
                             content=orjson.dumps(decline())).status_code == 200
        server.stop()
        receiver.start()
        server.start()
        deadline = dt.datetime.now() + dt.timedelta(seconds=20)
        while not receiver.received and dt.datetime.now() < deadline:
            time.sleep(0.1)
        assert len(receiver.received) == 1
        headers, raw = receiver.received[0]
        verify(headers, raw)
        assert orjson.loads(raw)["decision"]["decision_id"] == decided["decision_id"]
    finally:
        server.stop()


# --- labels come back, and the funnel shows the review stage -------------------------------------

async def test_labels_through_the_api_all_or_nothing_newest_wins(app):
    client, runtime = app
    headers = {**ADMIN, "Content-Type": "application/json"}
    good = {"application_id": "rv-l1", "status": "good", "days_past_due": 0, "observed_on": "2026-03-01"}
    resp = await client.post("/admin/labels", headers=headers, content=orjson.dumps({"labels": [good]}))
    assert resp.status_code == 200 and resp.json() == {"received": 1, "stored": 1}
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    bad = [{**good, "application_id": "rv-l2", "status": "bad", "days_past_due": 95, "observed_on": "2026-06-01"},
           {**good, "application_id": "rv-l3", "observed_on": tomorrow}, good, good]
    resp = await client.post("/admin/labels", headers=headers, content=orjson.dumps({"labels": bad}))
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["errors"]] == ["labels[1].observed_on", "labels[3].application_id"]
    assert set(runtime.labels.get_many(["rv-l1", "rv-l2"])) == {"rv-l1"}  # nothing of the bad batch
    later = {**good, "status": "bad", "days_past_due": 40, "observed_on": "2026-05-01"}
    older = {**good, "status": "good", "observed_on": "2026-01-01", "application_id": "rv-l1"}
    await client.post("/admin/labels", headers=headers, content=orjson.dumps({"labels": [later]}))
    resp = await client.post("/admin/labels", headers=headers, content=orjson.dumps({"labels": [older]}))
    assert resp.json()["stored"] == 0
    label = runtime.labels.get_many(["rv-l1"])["rv-l1"]
    assert (label.status, label.days_past_due, label.observed_on) == ("bad", 40, dt.date(2026, 5, 1))
    assert (await client.post("/admin/labels", headers=REVIEWER_A,
                              content=orjson.dumps({"labels": [good]}))).status_code == 403


def test_labels_import_from_the_command_line(tmp_path, backend_url):
    import subprocess
    import sys

    from service.store.backends import stores
    from service.store.keys import KeyedHash

    env = {"LOAN_DATA_DIR": str(tmp_path / "data"), "LOAN_DATABASE_URL": backend_url, "PATH": "/usr/bin:/bin"}
    source = tmp_path / "labels.csv"
    source.write_text("application_id,status,days_past_due,observed_on\napp-1,bad,120,2026-04-30\n"
                      "app-2,so-so,0,2026-04-30\n")
    run = subprocess.run([sys.executable, "-m", "service.cli", "labels", "import", str(source)], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 1 and "row 2: status: good or bad" in run.stderr and "nothing stored" in run.stderr
    source.write_text("application_id,status,days_past_due,observed_on\napp-1,bad,120,2026-04-30\n"
                      "app-2,good,0,2026-04-30\n")
    run = subprocess.run([sys.executable, "-m", "service.cli", "labels", "import", str(source), "--by", "risk"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "2 labels read, 2 stored" in run.stdout
    labels = stores(backend_url, tmp_path / "data", KeyedHash("k" * 32)).labels
    labels.open()
    try:
        assert {k: v.status for k, v in labels.get_many(["app-1", "app-2", "app-3"]).items()} == \
            {"app-1": "bad", "app-2": "good"}
    finally:
        labels.close()


async def test_the_funnel_counts_the_review_stage(app, tmp_path):
    from offline.funnel import funnel

    client, runtime = app
    ids = [id_number("19900307", "110105", f"{700 + i}") for i in range(4)]
    cases = []
    for i in range(4):
        decided = await refer(client, f"rv-f{i}", applicant={"id_number": ids[i], "phone": f"1370000000{i}"},
                              device={"device_id": f"dev-f{i}", "ip": f"203.0.113.{i + 40}"})
        cases.append((await case_of(client, decided["decision_id"]))["case_id"])
    await call(client, cases[0], "claim", REVIEWER_A)
    await call(client, cases[0], "decide", REVIEWER_A, decline())
    await call(client, cases[1], "claim", REVIEWER_A)
    await call(client, cases[1], "decide", REVIEWER_A, approve(20000))
    runtime.review.now = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=11)
    await runtime.review.tick()
    source = runtime.settings.database_url.get_secret_value() or runtime.settings.database_path
    now = dt.datetime.now(dt.UTC)
    report = funnel(source, now - dt.timedelta(hours=1), now + dt.timedelta(hours=1))
    (path,) = report["paths"]
    assert path["review"] == {"opened": 4, "approved": 1, "declined": 1, "pending": 2, "breached": 2}
