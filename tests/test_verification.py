"""Identity, face and SMS verification through the HTTP adapters, against the provider simulator
over real loopback HTTP: outcomes, concurrency, the deadline, retries, circuit breakers, privacy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from service.api.app import create_app
from service.config import Settings
from service.runtime import Runtime
from service.store.keys import KeyedHash
from service.store.whitelist import import_whitelist
from service.verification.breaker import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, CircuitBreaker
from service.verification.simulator import FAILURES, Simulator

from .factories import CLIENT, application, id_number, merchant, uscc_code

DEADLINE_S = 1.0


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(seed=1)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def verified(tmp_path, simulator) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    settings = Settings(data_dir=tmp_path / "data", providers_url=simulator.url, provider_key="sim-key",
                        deadline_ms=DEADLINE_S * 1000, provider_timeout_ms=300, breaker_open_s=0.3)
    source = tmp_path / "wl.csv"
    source.write_text(f"id_number,segment,limit,rate_tier,valid_until\n{id_number()},consumer,50000,T2,2027-06-30\n")
    import_whitelist(settings.whitelist_dir, source, KeyedHash(settings.pii_key))
    runtime = Runtime.from_settings(settings)
    runtime.start()
    app = create_app(settings, runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, runtime
    await runtime.close_providers()
    runtime.stop()


async def decide(client: httpx.AsyncClient, app_id: str, **patch) -> dict:
    resp = await client.post("/v1/decisions?explain=true", json=application(app_id, **patch), headers=CLIENT)
    assert resp.status_code == 200, resp.text
    return resp.json()


def checks(decision: dict) -> dict:
    return next(s for s in decision["trace"] if s["stage"] == "verification")["detail"]["checks"]


def codes(decision: dict) -> list[str]:
    return [r["code"] for r in decision["reasons"]]


async def test_a_verified_preapproved_applicant_is_approved(verified):
    client, _ = verified
    decision = await decide(client, "v-ok")
    assert checks(decision) == {"identity": {"status": "match"}, "face": {"status": "pass", "score": 0.97},
                                "sms": {"status": "verified"},
                                "business": {"status": "skipped"}}  # a consumer product: no registry call
    assert decision["outcome"] == "approve", decision["reasons"]
    assert decision["offer"]["term_months"] == 12 and decision["offer"]["amount"] > 0


@pytest.mark.parametrize(("patch", "reason"), [
    ({"applicant": {"id_number": id_number(seq="998")}}, "IDENTITY_MISMATCH"),
    ({"applicant": {"id_number": id_number(seq="999")}}, "IDENTITY_MISMATCH"),  # not found
    ({"verification": {"face": {"liveness_token": "tok-spoof-1"}}}, "FACE_LIVENESS_FAILED"),
    ({"verification": {"face": {"liveness_token": "tok-low-1"}}}, "FACE_SIMILARITY_LOW"),
    ({"verification": {"sms": {"request_id": "sms-1", "code": "000000"}}}, "SMS_NOT_VERIFIED"),
    ({"verification": {"sms": {"request_id": "expired-1", "code": "123456"}}}, "SMS_NOT_VERIFIED"),
])
async def test_provider_outcomes_are_decided_by_the_rules(verified, patch, reason):
    client, _ = verified
    decision = await decide(client, f"v-{reason}-{len(str(patch))}", **patch)
    assert decision["outcome"] == "decline" and reason in codes(decision)


async def test_the_three_calls_overlap(verified, simulator):
    client, _ = verified
    for provider in ("identity", "face", "sms"):
        simulator.set(provider, latency_ms=150)
    await decide(client, "v-overlap")
    calls = simulator.calls[-3:]
    assert sorted(c[0] for c in calls) == ["face", "identity", "sms"]
    assert max(start for _, start, _ in calls) < min(end for _, _, end in calls)


async def test_each_provider_gets_only_what_it_needs(verified, simulator):
    client, _ = verified
    decision = await decide(client, "v-privacy")
    sent = {provider: set(body) for provider, body in simulator.received[-3:]}
    assert sent == {"identity": {"name", "id_number", "phone"}, "face": {"liveness_token", "id_number"},
                    "sms": {"request_id", "code", "phone"}}
    assert "tok-good" not in str(decision["trace"])  # no token kept in the trace


async def post_decision(client: httpx.AsyncClient, body: dict) -> dict:
    resp = await client.post("/v1/decisions?explain=true", json=body, headers=CLIENT)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("provider", ["identity", "business"])
@pytest.mark.parametrize("failure", FAILURES)
async def test_every_failure_mode_refers_in_time_opens_the_breaker_and_recovers(verified, simulator, failure,
                                                                              provider):
    client, runtime = verified
    body = merchant if provider == "business" else application
    breaker = runtime.providers[provider].breaker
    simulator.set(provider, failure=failure, failure_rate=1.0)
    started = time.monotonic()
    decisions = await asyncio.gather(*(post_decision(client, body(f"v-fail-{provider}-{failure}-{n}",
                                                                  device={"device_id": f"d-{n}"}))
                                       for n in range(5)))
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE_S + 0.5, f"{failure}: {elapsed:.2f} s for five concurrent decisions"
    for decision in decisions:
        assert checks(decision)[provider]["status"] == "error"
        assert checks(decision)["face"]["status"] == "pass"  # the others are unaffected
        assert decision["outcome"] == "refer" and "VERIFICATION_UNAVAILABLE" in codes(decision)
    assert breaker.state == OPEN
    simulator.set(provider)  # the provider heals
    await asyncio.sleep(0.35)  # LOAN_BREAKER_OPEN_S
    for n in range(3):  # the half-open probes
        decision = await post_decision(client, body(f"v-heal-{provider}-{failure}-{n}"))
        assert checks(decision)[provider]["status"] == ("active" if provider == "business" else "match")
    assert breaker.state == CLOSED


@pytest.mark.parametrize(("marker", "reason", "outcome"), [
    ("999", "BUSINESS_NOT_FOUND", "decline"),
    ("998", "BUSINESS_REVOKED_OR_DEREGISTERED", "decline"),
    ("997", "BUSINESS_REVOKED_OR_DEREGISTERED", "decline"),
    ("996", "BUSINESS_ABNORMAL_OPERATIONS", "refer"),
    ("995", "BUSINESS_REPRESENTATIVE_MISMATCH", "refer"),
    ("994", "BUSINESS_TOO_NEW", "refer"),
])
async def test_the_business_registry_keeps_dead_and_borrowed_licences_out(verified, simulator, marker, reason,
                                                                          outcome):
    client, _ = verified
    decision = await post_decision(client, merchant(f"v-biz-{marker}", marker))
    assert reason in codes(decision) and decision["outcome"] == outcome, decision["reasons"]


async def test_a_registered_business_passes_and_the_registry_gets_only_what_it_needs(verified, simulator):
    client, _ = verified
    decision = await post_decision(client, merchant("v-biz-ok"))
    registry = checks(decision)["business"]
    assert registry["status"] == "active" and registry["representative_match"] is True
    assert registry["abnormal"] is False and "20" in registry["established"][:2]
    assert not [c for c in codes(decision) if c.startswith(("BUSINESS_", "VERIFICATION"))], decision["reasons"]
    sent = next(body for name, body in reversed(simulator.received) if name == "business")
    assert sent == {"uscc": uscc_code(), "name": "Zhang's Noodle Shop",
                    "representative": {"name": "Zhang Wei", "id_number": id_number()}}


async def test_a_merchant_whose_business_validation_refuses_costs_no_registry_call(verified, simulator):
    client, _ = verified
    before = [r for r in simulator.received if r[0] == "business"]
    decision = await post_decision(client, merchant("v-biz-bad", business={"uscc": "91110000600037341X"}))
    assert decision["outcome"] == "decline" and "USCC_INVALID" in codes(decision)
    assert [r for r in simulator.received if r[0] == "business"] == before


async def test_retries_only_when_safe(verified, simulator):
    client, _ = verified
    simulator.set("identity", failure="reset", failure_rate=1.0)
    simulator.set("sms", failure="reset", failure_rate=1.0)
    before = len(simulator.received)
    await decide(client, "v-retry")
    sent = [p for p, _ in simulator.received[before:]]
    assert sent.count("identity") == 2  # an idempotent look-up: retried once
    assert sent.count("sms") == 1  # the SMS check may have consumed the code: not repeated
    simulator.set("sms", failure="5xx", failure_rate=1.0)
    before = len(simulator.received)
    await decide(client, "v-retry-503")
    assert [p for p, _ in simulator.received[before:]].count("sms") == 2  # 503: not processed


async def test_the_breaker_opens_fails_fast_and_recovers(verified, simulator):
    client, runtime = verified
    breaker = runtime.providers["face"].breaker
    simulator.set("face", failure="5xx", failure_rate=1.0)
    for n in range(4):
        await decide(client, f"v-brk-{n}")
    assert breaker.state == OPEN
    before = len(simulator.received)
    decision = await decide(client, "v-brk-open")
    assert checks(decision)["face"] == {"status": "error", "error": "circuit_open"}
    assert "face" not in [p for p, _ in simulator.received[before:]]  # failed fast, nothing sent
    metrics = (await client.get("/metrics")).text
    assert 'loan_provider_breaker_state{provider="face"} 2.0' in metrics
    simulator.set("face")  # healthy again
    await asyncio.sleep(0.35)  # open_s
    for n in range(3):  # the probes
        decision = await decide(client, f"v-brk-probe-{n}")
        assert checks(decision)["face"]["status"] == "pass"
    assert breaker.state == CLOSED


async def test_no_connection_leaks_under_a_burst_of_failures(verified, simulator):
    client, runtime = verified
    simulator.set("identity", failure="hang", failure_rate=0.5)
    simulator.set("face", failure="reset", failure_rate=0.5)
    simulator.set("sms", latency_ms=20)
    decisions = await asyncio.gather(*(decide(client, f"v-burst-{n}") for n in range(40)))
    assert all(d["outcome"] in ("approve", "refer", "decline") for d in decisions)
    for provider in ("identity", "face", "sms"):
        simulator.set(provider)
    await asyncio.gather(*(decide(client, f"v-after-{n}") for n in range(40)))
    for provider in runtime.providers.values():
        open_, idle, waiting = provider.pool.stats()
        assert open_ == idle and not waiting, provider.name  # every connection came back
        assert idle <= provider.config.concurrency


# --- the breaker on its own, with a hand-driven clock -----------------------------------------

class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_on_the_failure_rate_not_on_a_count():
    clock = Clock()
    breaker = CircuitBreaker("t1", BreakerPolicy(window=20, min_calls=10, failure_rate=0.5), clock)
    for n in range(40):  # 25 % failures, spread: many failures in all, never half of the window
        breaker.record(failed=n % 4 == 0, seconds=0.01)
    assert breaker.state == CLOSED
    for _ in range(10):
        breaker.record(failed=True, seconds=0.01)
    assert breaker.state == OPEN and not breaker.allow()


def test_breaker_opens_on_slow_calls_and_reopens_on_a_failed_probe():
    clock = Clock()
    breaker = CircuitBreaker("t2", BreakerPolicy(window=10, min_calls=5, slow_rate=0.8, slow_s=1.0,
                                                 open_s=5, probes=2), clock)
    for _ in range(5):
        breaker.record(failed=False, seconds=1.5)
    assert breaker.state == OPEN
    clock.now = 5.0
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # only the two probes go out
    breaker.record(failed=True, seconds=0.1)
    assert breaker.state == OPEN and not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()
    breaker.record(failed=False, seconds=0.1)
    assert breaker.allow()
    breaker.record(failed=False, seconds=0.1)
    assert breaker.state == CLOSED


def test_provider_settings_per_provider_and_their_errors(tmp_path):
    from pydantic import ValidationError

    from service.runtime import build_providers

    secrets = tmp_path / "providers.json"
    secrets.write_text('{"identity": "id-key", "face": "face-key", "sms": "sms-key"}')
    settings = Settings(providers_url="http://127.0.0.1:9/", sms_url="http://127.0.0.1:10",
                        provider_credentials_file=secrets,
                        provider_overrides='{"face": {"timeout_ms": 1500, "concurrency": 8, "retries": 0}}')
    providers = build_providers(settings)
    assert providers["identity"].config.url == "http://127.0.0.1:9" and providers["sms"].config.url == "http://127.0.0.1:10"
    assert (providers["face"].config.timeout_s, providers["face"].config.concurrency, providers["face"].config.retries) == (1.5, 8, 0)
    assert (providers["sms"].config.timeout_s, providers["sms"].config.concurrency) == (0.8, 32)
    assert providers["face"].config.credential == "face-key"
    with pytest.raises(ValidationError, match="face.timeout: settings are"):
        Settings(provider_overrides='{"face": {"timeout": 3}}')
    secrets.write_text("not json")
    with pytest.raises(ValueError, match="providers.json: expected a JSON object"):
        build_providers(settings)


async def test_an_application_validation_declines_costs_no_provider_call(verified, simulator):
    client, _ = verified
    before = len(simulator.calls)
    decision = await decide(client, "v-invalid", applicant={"phone": "12345"})  # PHONE_INVALID declines
    assert decision["outcome"] == "decline" and "PHONE_INVALID" in codes(decision)
    assert len(simulator.calls) == before  # no paid check, no SMS code consumed
    assert next(s for s in decision["trace"] if s["stage"] == "verification")["detail"] == {
        "skipped": "declined by validation"}
    velocity = next(s for s in decision["trace"] if s["stage"] == "enrichment")["detail"]["sources"]["velocity"]
    assert velocity["device_24h"] == 0  # still counted: velocity sees every application


# --- the keep-alive connection pool under the adapters ------------------------------------------

async def test_the_pool_keeps_to_its_limit_and_gives_every_slot_back(simulator):
    from service.verification.http import ConnectionPool

    pool = ConnectionPool(simulator.url, {"Authorization": "Bearer t"}, limit=2)
    line = pool.request_line("/sms/v1/verify")
    simulator.set("sms", latency_ms=30)
    peak = 0

    async def one(n: int) -> int:
        nonlocal peak
        task = asyncio.ensure_future(pool.post(line, b'{"request_id": "r%d", "code": "1", "phone": "1"}' % n))
        await asyncio.sleep(0.005)
        peak = max(peak, pool.stats()[0])
        status, _ = await task
        return status

    assert await asyncio.gather(*(one(n) for n in range(10))) == [200] * 10
    assert peak == 2 and pool.stats() == (2, 2, 0)
    simulator.set("sms", failure="hang", failure_rate=1.0)  # both connections stuck, a third waits
    calls = [asyncio.ensure_future(pool.post(line, b'{"code": "1"}')) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert pool.stats() == (2, 0, 1)
    for call in calls:
        call.cancel()  # what a deadline does
    await asyncio.gather(*calls, return_exceptions=True)
    assert pool.stats() == (0, 0, 0)  # interrupted connections are closed, never reused
    simulator.set("sms")
    assert (await pool.post(line, b'{"code": "1"}'))[0] == 200
    await pool.close()


async def test_the_pool_replaces_a_connection_the_provider_closed_and_names_what_failed():
    from service.verification.http import ConnectionPool, Disconnected, Unreachable

    async def answer_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # an idle timeout on the provider's side

    server = await asyncio.start_server(answer_once_then_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = ConnectionPool(f"http://127.0.0.1:{port}/base", {}, limit=4)
    line = pool.request_line("/x")
    assert line == b"POST /base/x HTTP/1.1\r\n"
    for _ in range(3):
        assert await pool.post(line, b"{}") == (200, b"ok")
        await asyncio.sleep(0.02)  # the close arrives while the connection is idle
    server.close()
    await server.wait_closed()
    with pytest.raises(Unreachable):
        await pool.post(line, b"{}")
    assert pool.stats() == (0, 0, 0)

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", port)
    with pytest.raises(Disconnected):
        await pool.post(line, b"{}")
    server.close()
    await server.wait_closed()
    with pytest.raises(ValueError):
        ConnectionPool("ftp://example.org", {})


def test_every_check_is_known_alike_to_settings_rules_adapters_stage_and_simulator():
    from service.config import PROVIDERS
    from service.engine.ruleset import CHECKS
    from service.stages.verification import FIELDS, PASSED
    from service.verification.providers import APIS
    from service.verification.simulator import OUTCOMES, PATHS

    assert set(PROVIDERS) == set(CHECKS) == set(PASSED) == set(FIELDS) == set(APIS) == set(OUTCOMES) \
        == set(PATHS.values())
    assert {api.path for api in APIS.values()} == set(PATHS)


def test_lint_refuses_a_registry_check_on_a_product_without_a_business(tmp_path):
    import shutil

    from service.config import REPO_ROOT
    from service.engine.ruleset import RulesetError, load_ruleset

    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    products = rules / "products.yaml"
    text = products.read_text()
    products.write_text(text.replace("requires_business: false\n    requires_income: true\n    income_multiple: 10\n"
                                     "    required_attachments: [id_front, id_back]\n    required_checks: [identity, face, sms]",
                                     "requires_business: false\n    requires_income: true\n    income_multiple: 10\n"
                                     "    required_attachments: [id_front, id_back]\n"
                                     "    required_checks: [identity, face, sms, business]"))
    assert products.read_text() != text
    with pytest.raises(RulesetError) as error:
        load_ruleset(rules)
    assert any("needs 'requires_business: true'" in str(e) and "[consumer_quick]" in str(e) for e in error.value.errors)


async def test_a_hanging_provider_never_pushes_the_answer_past_the_deadline(tmp_path, simulator):
    """With a provider timeout longer than the decision's deadline, the answer still goes out
    within the deadline: the providers get what is left of it less the time deciding and
    storing take."""
    settings = Settings(data_dir=tmp_path / "data", providers_url=simulator.url, provider_key="k",
                        deadline_ms=400, provider_timeout_ms=5000, provider_retries=1)
    runtime = Runtime.from_settings(settings)
    runtime.start()
    simulator.set("identity", failure="hang", failure_rate=1.0)
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.post("/v1/decisions", json=application("warm-up", device={"device_id": "w"}), headers=CLIENT)
            late = []
            for n in range(5):
                started = time.monotonic()
                resp = await client.post("/v1/decisions", json=application(f"v-hang-{n}", device={"device_id": f"h{n}"}),
                                         headers=CLIENT)
                late.append(time.monotonic() - started - 0.4)
                assert resp.json()["outcome"] == "refer"
        assert max(late) < 0, [round(x * 1000, 1) for x in late]
    finally:
        await runtime.close_providers()
        runtime.stop()
