"""/metrics: every family the dashboard and alerts read exists, moves with traffic, and carries
no personal data."""

from __future__ import annotations

import datetime as dt
import re

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import ADMIN, CLIENT, application
from tests.test_verification import simulator, verified  # noqa: F401 - fixtures

# family → the sample that must grow with traffic (counters: _total, histograms: _count)
MOVING = {
    "loan_http_requests": "loan_http_requests_total",
    "loan_decision_duration_seconds": "loan_decision_duration_seconds_count",
    "loan_stage_duration_seconds": "loan_stage_duration_seconds_count",
    "loan_decisions": "loan_decisions_total",
    "loan_rule_hits": "loan_rule_hits_total",
    "loan_reason_codes": "loan_reason_codes_total",
    "loan_provider_calls": "loan_provider_calls_total",
    "loan_provider_call_duration_seconds": "loan_provider_call_duration_seconds_count",
    "loan_model_score_points": "loan_model_score_points_count",
    "loan_sla_elapsed_seconds": "loan_sla_elapsed_seconds_count",
    "loan_sla_breaches": "loan_sla_breaches_total",
    "loan_store_commit_duration_seconds": "loan_store_commit_duration_seconds_count",
    "loan_store_commit_batch_size": "loan_store_commit_batch_size_count",
    "loan_rule_reloads": "loan_rule_reloads_total",
    "loan_idempotent_replays": "loan_idempotent_replays_total",
}
PRESENT = {"loan_provider_breaker_state", "loan_model_info", "loan_ruleset_info", "loan_ready", "loan_build_info"}
ID_OR_PHONE = re.compile(r"(?<!\d)(\d{17}[\dXx]|1[3-9]\d{9})(?!\d)")


async def scrape(client) -> tuple[dict[str, float], set[str], str]:
    text = (await client.get("/metrics")).text
    totals: dict[str, float] = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals, families, text


async def test_metric_families_exist_and_move_with_traffic(verified):  # noqa: F811
    client, runtime = verified
    before, _, _ = await scrape(client)
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))

    def submitted(at: dt.datetime) -> dict:
        return {"submitted_at": at.isoformat(), "consents": {"e_signature": {"signed_at": at.isoformat()}}}

    late = now - dt.timedelta(minutes=20)
    bodies = [application("m-1", device={"device_id": "d1"}, **submitted(now)),  # approved
              application("m-2", device={"device_id": "d2"}, loan={"term_months": 7}, **submitted(now)),
              application("m-3", device={"device_id": "d3"}, **submitted(late))]  # decided after the SLA
    for body in bodies + bodies[:1]:  # the last one is a retry: replayed
        response = await client.post("/v1/decisions", content=orjson.dumps(body), headers=CLIENT)
        assert response.status_code == 200, response.text
    assert (await client.post("/admin/rules/reload", headers=ADMIN)).status_code == 200
    after, families, text = await scrape(client)
    missing = (set(MOVING) | PRESENT) - families
    assert not missing, f"missing families: {sorted(missing)}"
    still = [sample for sample in MOVING.values() if after.get(sample, 0) <= before.get(sample, 0)]
    assert not still, f"did not move: {still}"
    assert after["loan_decisions_total"] - before.get("loan_decisions_total", 0) == 3  # not the replay
    approved = 'loan_decisions_total{arm="champion",outcome="approve",product="consumer_quick"}'
    assert approved in text
    assert 'loan_rule_hits_total{action="decline",rule="TERM_NOT_OFFERED",stage="validation"}' in text
    assert 'loan_rule_hits_total{action="approve",rule="approve_c",stage="strategy"}' in text
    assert 'loan_sla_breaches_total{product="consumer_quick"}' in text
    assert after["loan_sla_breaches_total"] - before.get("loan_sla_breaches_total", 0) == 1
    assert f'loan_ruleset_info{{version="{runtime.ruleset.version}"}}' in text
    for line in text.splitlines():
        if not line.startswith("#"):
            assert not ID_OR_PHONE.search(line.rsplit(" ", 1)[0]), line  # labels, not values


async def test_a_thousand_unknown_products_do_not_grow_metrics(client):
    """Whatever a client sends as ``product`` is declined (PRODUCT_UNKNOWN) and counted under
    ``unknown``: no label takes a client-chosen value."""
    import asyncio

    from tests.factories import CLIENT, application

    async def post(n: int) -> None:
        resp = await client.post("/v1/decisions", json=application(f"unknown-{n}", product=f"p{n}"), headers=CLIENT)
        assert resp.status_code == 200 and resp.json()["outcome"] == "decline"

    def series(text: str) -> set[str]:
        return {line.rsplit(" ", 1)[0] for line in text.splitlines()
                if "product=" in line and not line.startswith("#")}

    await asyncio.gather(*(post(n) for n in range(5)))
    before = series((await client.get("/metrics")).text)
    for start in range(5, 1005, 50):
        await asyncio.gather(*(post(n) for n in range(start, start + 50)))
    text = (await client.get("/metrics")).text
    assert series(text) == before  # the same product series; only their values moved
    assert 'product="p7"' not in text and 'product="unknown"' in text
