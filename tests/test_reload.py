"""Reload without downtime: clean rulesets swap in atomically, broken ones are refused."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time

import httpx
import orjson
import pytest

from service.api.app import create_app
from service.config import REPO_ROOT, Settings
from service.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import ADMIN, CLIENT, application


@pytest.fixture
def rules(tmp_path):
    target = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", target)
    return target


@pytest.fixture
async def rules_client(tmp_path, rules):
    settings = Settings(data_dir=tmp_path / "data", rules_dir=rules)
    runtime = Runtime.from_settings(settings)
    runtime.start()
    app = create_app(settings, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c
    runtime.stop()


def bump_threshold(rules, value: int) -> None:
    path = rules / "fraud.yaml"
    text = path.read_text()
    start = text.index("when: bureau.queries_3m > ")  # bundled: > 6; its test case sends 7
    end = text.index("\n", start)
    path.write_text(text[:start] + f"when: bureau.queries_3m > {value}" + text[end:])


async def version(client) -> str:
    return (await client.get("/admin/rules", headers=ADMIN)).json()["version"]


async def test_reload_applies_a_clean_change(rules_client, rules):
    before = await version(rules_client)
    bump_threshold(rules, 5)
    resp = await rules_client.post("/admin/rules/reload", headers=ADMIN)
    assert resp.status_code == 200
    after = resp.json()["version"]
    assert after != before and await version(rules_client) == after
    decision = await rules_client.post("/v1/decisions", content=orjson.dumps(application("r1")), headers=CLIENT)
    assert decision.json()["versions"]["ruleset"] == after


async def test_a_broken_ruleset_is_refused_and_the_active_one_stays(rules_client, rules):
    before = await version(rules_client)
    (rules / "fraud.yaml").write_text((rules / "fraud.yaml").read_text().replace("device.is_emulator\n", "device.emulator\n"))
    resp = await rules_client.post("/admin/rules/reload", headers=ADMIN)
    assert resp.status_code == 422
    assert any("fraud.yaml:" in e["message"] and "FRAUD_EMULATOR" in e["message"] for e in resp.json()["errors"])
    assert await version(rules_client) == before
    ok = await rules_client.post("/v1/decisions", content=orjson.dumps(application("r2")), headers=CLIENT)
    assert ok.status_code == 200 and ok.json()["versions"]["ruleset"] == before


async def test_a_ruleset_failing_its_own_tests_is_refused(rules_client, rules):
    before = await version(rules_client)
    path = rules / "fraud.yaml"
    path.write_text(path.read_text().replace("when: device.is_emulator\n    action: decline",
                                             "when: device.is_emulator\n    action: flag"))
    resp = await rules_client.post("/admin/rules/reload", headers=ADMIN)
    assert resp.status_code == 422
    assert any("emulator" in e["message"] and "FAIL" in e["message"] for e in resp.json()["errors"])
    assert await version(rules_client) == before


async def test_reloads_while_requests_flow_fail_no_request(rules_client, rules):
    versions = set()
    reloading = True

    async def traffic(name: str):
        answers = []
        for i in range(3000):  # as long as the reloads last
            resp = await rules_client.post("/v1/decisions", content=orjson.dumps(application(f"flow-{name}-{i}")),
                                           headers=CLIENT)
            answers.append(resp)
            await asyncio.sleep(0)
            if not reloading:
                break
        return answers

    async def reloads():
        nonlocal reloading
        for n in range(4):
            bump_threshold(rules, 2 + n % 5)  # 2..6 keep the bundled cases green
            resp = await rules_client.post("/admin/rules/reload", headers=ADMIN)
            assert resp.status_code == 200
            versions.add(resp.json()["version"])
            await asyncio.sleep(0.005)
        reloading = False

    results = await asyncio.gather(traffic("a"), traffic("b"), reloads())
    answers = results[0] + results[1]
    assert {r.status_code for r in answers} == {200}
    seen = {r.json()["versions"]["ruleset"] for r in answers}
    assert len(seen) >= 2, "traffic saw only one ruleset: the reloads did not interleave"


def test_sighup_reloads_a_live_server(tmp_path, rules):
    server = LiveServer(tmp_path / "data", env={"LOAN_RULES_DIR": str(rules)}).start()
    try:
        with httpx.Client(base_url=server.url, headers=ADMIN, timeout=5) as http:
            before = http.get("/admin/rules").json()["version"]
            bump_threshold(rules, 4)
            os.kill(server.proc.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while http.get("/admin/rules").json()["version"] == before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert http.get("/admin/rules").json()["version"] != before
            assert server.proc.poll() is None
    finally:
        server.stop()


def add_slow_rule(rules, cases: int = 2_000) -> None:
    """A candidate whose own tests keep the interpreter busy for seconds. (A rule can no longer
    be slow by itself — patterns run on RE2, powers overflow at once — so the candidate brings
    many test cases instead.)"""
    path = rules / "tests" / "fraud.yaml"
    many = "".join(f"  - {{name: case {n}, base: good_consumer, expect: {{outcome: approve}}}}\n"
                   for n in range(cases))
    path.write_text(path.read_text().replace("cases:\n", "cases:\n" + many, 1))


def test_a_candidate_whose_tests_run_too_long_is_refused(rules):
    from service.engine.ruleset import RulesetError
    from service.ruletests import check_elsewhere

    add_slow_rule(rules)
    started = time.monotonic()
    with pytest.raises(RulesetError) as refused:
        check_elsewhere(rules, {"german_champion", "german_challenger"}, timeout_s=1.0)
    assert "took over 1 s" in str(refused.value.errors[0]) and time.monotonic() - started < 3


async def test_a_slow_candidate_never_stalls_serving(rules_client, rules):
    """Linting and testing a candidate ruleset happen in another process: a rule test that keeps
    the interpreter busy for seconds (thousands of cases) does not hold this
    worker's event loop, which keeps answering while the reload runs."""
    add_slow_rule(rules)

    async def decisions(label: str, count: int, until=None) -> list[float]:
        took = []
        for n in range(count):
            if until is not None and until.done():
                break
            started = time.monotonic()
            body = orjson.dumps(application(f"slow-{label}-{n}", device={"device_id": f"{label}{n}"}))
            assert (await rules_client.post("/v1/decisions", content=body, headers=CLIENT)).status_code == 200
            took.append(time.monotonic() - started)
        return took

    calm = await decisions("calm", 20)
    reload = asyncio.ensure_future(rules_client.post("/admin/rules/reload", headers=ADMIN))
    started = time.monotonic()
    await asyncio.sleep(0.2)  # the candidate's tests are running
    slept = time.monotonic() - started
    busy = await decisions("busy", 500, until=reload)
    assert (await reload).status_code == 200
    assert slept < 0.5, f"the event loop stalled {slept:.2f} s while the candidate was tested"
    assert len(busy) >= 10 and max(busy) < 0.5, (len(busy), max(busy), max(calm))
