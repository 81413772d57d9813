"""The HTTP contract of ../shared/API.md: every status code it lists, and the answer's shape."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import httpx
import orjson
import pytest

from service.api.app import create_app
from service.config import REPO_ROOT, Settings
from service.runtime import Runtime
from tests.factories import ADMIN, CLIENT, application, as_answered, id_number

STAGES = ["validation", "verification", "enrichment", "fraud", "scoring", "strategy"]


async def post(client, body, headers=CLIENT, query=""):
    return await client.post("/v1/decisions" + query, content=orjson.dumps(body), headers=headers)


async def test_decision_has_the_contract_shape(client):
    resp = await post(client, application())
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["decision_id"].startswith("dec_") and len(body["decision_id"]) == 30
    assert body["application_id"] == "app-0001"
    assert body["outcome"] in ("approve", "decline", "refer")
    assert body["versions"]["ruleset"].startswith("rs-")
    assert body["experiment"] == {"arm": "champion"}
    submitted = dt.datetime.fromisoformat(body["submitted_at"])
    assert dt.datetime.fromisoformat(body["disburse_by"]) - submitted == dt.timedelta(minutes=10)
    assert body["elapsed_ms"] > 0
    assert "trace" not in body


async def test_no_providers_means_no_approval(client):
    """Verification has no provider configured here: the required checks are unavailable and the
    decision is a referral with that reason, never an approval."""
    body = (await post(client, application())).json()
    assert body["outcome"] == "refer"
    assert body["offer"] is None
    assert {"code": "VERIFICATION_UNAVAILABLE", "stage": "fraud", "message": "核验服务暂时不可用，请稍后重试。",
            "messages": {"zh": "核验服务暂时不可用，请稍后重试。",
                         "en": "Verification is temporarily unavailable; please retry later."}} in body["reasons"]


async def test_business_rule_failures_are_declines_with_every_reason(client):
    body = application(applicant={"id_number": id_number()[:-1] + ("0" if id_number()[-1] != "0" else "1"),
                                  "phone": "12345678901"},
                       loan={"amount": 999999, "term_months": 7})
    resp = await post(client, body)
    assert resp.status_code == 200
    out = resp.json()
    codes = {r["code"] for r in out["reasons"]}
    assert out["outcome"] == "decline"
    assert {"ID_NUMBER_INVALID", "PHONE_INVALID", "AMOUNT_OUT_OF_RANGE", "TERM_NOT_OFFERED"} <= codes
    assert out["score"] is None


async def test_explain_adds_trace_of_six_stages_in_order(client):
    resp = await post(client, application(), query="?explain=true")
    trace = resp.json()["trace"]
    assert [s["stage"] for s in trace] == STAGES
    validation = trace[0]["detail"]["rules"]
    assert all(r["result"] in ("hit", "pass", "error") for r in validation)
    assert len(validation) >= 12
    assert all(s["ms"] >= 0 for s in trace)


async def test_stored_decision_is_returned_byte_for_byte(client):
    first = await post(client, application("app-get", loan={"amount": 999999}))
    assert first.json()["outcome"] == "decline"
    decision_id = first.json()["decision_id"]
    by_id = await client.get(f"/v1/decisions/{decision_id}", headers=CLIENT)
    by_app = await client.get("/v1/decisions", params={"application_id": "app-get"}, headers=CLIENT)
    assert by_id.status_code == by_app.status_code == 200
    assert by_id.content == by_app.content == first.content


async def test_a_referral_is_returned_as_answered_with_its_review_beside_it(client):
    first = await post(client, application("app-get-refer"))
    assert first.json()["outcome"] == "refer"
    by_id = (await client.get(f"/v1/decisions/{first.json()['decision_id']}", headers=CLIENT)).content
    assert as_answered(by_id) == first.json()
    body = orjson.loads(by_id)
    assert body["automatic"] == {k: first.json()[k] for k in ("outcome", "offer", "reasons", "decided_at")}
    assert body["review"]["state"] == "open" and body["review"]["decided_by"] is None


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer "}])
async def test_401_without_a_valid_key(client, headers):
    resp = await post(client, application(), headers={"Content-Type": "application/json", **headers})
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["status"] == 401


async def test_403_with_the_wrong_role(client):
    assert (await post(client, application(), headers={**ADMIN, "Content-Type": "application/json"})).status_code == 403
    assert (await client.get("/admin/rules", headers=CLIENT)).status_code == 403
    assert (await client.get("/admin/rules", headers=ADMIN)).status_code == 200


async def test_404_for_unknown_decisions(client):
    assert (await client.get("/v1/decisions/dec_nothing", headers=CLIENT)).status_code == 404
    resp = await client.get("/v1/decisions", params={"application_id": "never"}, headers=CLIENT)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


async def test_409_same_application_id_different_body(client):
    assert (await post(client, application("app-409"))).status_code == 200
    resp = await post(client, application("app-409", loan={"amount": 31000}))
    assert resp.status_code == 409
    assert "app-409" in resp.json()["detail"]


async def test_413_body_too_large(client):
    big = application(applicant={"name": "x" * 70000})
    resp = await post(client, big)
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_415_wrong_content_type(client, content_type):
    headers = {"Authorization": CLIENT["Authorization"]}
    if content_type:
        headers["Content-Type"] = content_type
    resp = await client.post("/v1/decisions", content=orjson.dumps(application()), headers=headers)
    assert resp.status_code == 415


async def test_422_lists_every_bad_field_by_json_path(client):
    body = application(loan={"amount": "30000"}, device={"os": "windows"}, applicant={"phone": None},
                       related_parties=[{"relation": "friend", "name": "Li"}], bureua={"x": 1})
    resp = await post(client, body)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    fields = {e["field"]: e for e in problem["errors"]}
    assert set(fields) == {"loan.amount", "device.os", "applicant.phone",
                           "related_parties[0].relation", "bureua"}
    assert fields["related_parties[0].relation"]["pointer"] == "/related_parties/0/relation"
    assert fields["bureua"]["message"] == "unknown field"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b'{"a":' * 3000 + b"1" + b"}" * 3000,
                                 b'{"application_id": 1e999}', b"\xff\xfe"])
async def test_422_for_bodies_that_are_not_an_application(client, raw):
    resp = await client.post("/v1/decisions", content=raw, headers=CLIENT)
    assert resp.status_code == 422
    assert resp.json()["errors"]


async def test_422_changes_nothing(client, runtime):
    await post(client, application("app-bad", loan={"amount": -1}))
    assert runtime.store.get_by_application("app-bad") is None


async def test_operations_endpoints_need_no_key(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ruleset"].startswith("rs-")
    assert [m.split("-")[0] for m in ready.json()["models"]] == ["german_challenger", "german_champion"]
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and "loan_http_requests_total" in metrics.text


async def test_503_when_no_valid_ruleset(tmp_path: Path):
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    (rules / "fraud.yaml").write_text("rules:\n  - id: BROKEN\n    when: applicant.agee > 1\n")
    settings = Settings(data_dir=tmp_path / "data", rules_dir=rules)
    rt = Runtime.from_settings(settings)
    rt.start()
    try:
        import httpx

        app = create_app(settings, rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            resp = await post(c, application())
            assert resp.status_code == 503
            assert resp.headers["content-type"] == "application/problem+json"
            ready = await c.get("/readyz")
            assert ready.status_code == 503
            assert "error(s)" in ready.json()["detail"] and str(tmp_path) not in ready.text  # no paths
            errors = (await c.get("/admin/rules", headers=ADMIN)).json()["errors"]
            assert any("fraud.yaml:3" in e for e in errors)  # for the operator, behind the admin key
            assert (await c.get("/healthz")).status_code == 200
    finally:
        rt.stop()


async def test_unknown_route_is_a_problem(client):
    resp = await client.get("/v2/nothing")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


async def test_the_fast_path_and_the_declared_route_answer_alike(settings, runtime):
    """POST /v1/decisions is served by a pure ASGI handler; the FastAPI route of the same path
    (reached by an app built without that fast path) gives the same answers."""
    app, plain = create_app(settings, runtime), create_app(settings, runtime)
    plain.fast_path = None
    fast = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    routed = httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url="http://t")
    body = orjson.dumps(application("app-both"))
    cases = [("", body, CLIENT), ("?explain=maybe", body, CLIENT), ("", b"{", CLIENT), ("", body, {}),
             ("", body, {**CLIENT, "Content-Type": "text/plain"}), ("?explain=true", body, CLIENT), ("", body, CLIENT)]
    statuses = []
    async with fast, routed:
        for query, content, headers in cases:
            a = await fast.post("/v1/decisions" + query, content=content, headers=headers)
            b = await routed.post("/v1/decisions" + query, content=content, headers=headers)
            assert (a.status_code, a.headers["content-type"], a.content) == \
                   (b.status_code, b.headers["content-type"], b.content), query
            statuses.append(a.status_code)
    assert statuses == [200, 422, 422, 401, 415, 200, 200]


async def test_fast_path_answers_are_counted_by_route_and_status(client):
    from prometheus_client import REGISTRY

    def count(status: str) -> float:
        return REGISTRY.get_sample_value("loan_http_requests_total", {
            "route": "/v1/decisions", "method": "POST", "status": status}) or 0.0

    ok, unsupported = count("200"), count("415")
    await post(client, application("app-counted"))
    await client.post("/v1/decisions", content=b"x", headers={**CLIENT, "Content-Type": "text/plain"})
    assert (count("200"), count("415")) == (ok + 1, unsupported + 1)


async def test_a_request_whose_client_left_mid_body_is_not_decided(settings, runtime):
    """The client declared a longer body and disconnected: whatever arrived is never decided
    (nobody would receive the answer, and a retry would find a decision it never saw)."""
    app = create_app(settings, runtime)
    body = orjson.dumps(application("app-gone"))
    messages = [{"type": "http.request", "body": body, "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/decisions", "query_string": b"", "root_path": "",
             "headers": [(b"authorization", CLIENT["Authorization"].encode()),
                         (b"content-type", b"application/json"), (b"content-length", str(len(body) + 100).encode())]}
    await app(scope, receive, send)
    assert runtime.store.get_by_application("app-gone") is None
    assert not sent


@pytest.mark.parametrize("field", ["device.is_emulator", "application_id"])
async def test_duplicate_keys_are_refused_naming_the_key(client, runtime, field):
    """A gateway reading the first of two keys and the service the last would see two different
    applications: a duplicate key at any level is a 422 that names it, and nothing is decided."""
    body = orjson.dumps(application("app-dup"))
    if field == "device.is_emulator":
        body = body.replace(b'"device":{', b'"device":{"is_emulator":true,', 1)
    else:
        body = body.replace(b'"application_id":"app-dup"', b'"application_id":"app-dup","application_id":"app-dup"', 1)
    resp = await client.post("/v1/decisions", content=body, headers=CLIENT)
    assert resp.status_code == 422 and resp.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in resp.json()["errors"]] == [field]
    assert runtime.store.get_by_application("app-dup") is None


async def test_duplicate_keys_in_an_admin_body_are_refused_too(client):
    body = b'{"values": ["13900001111"], "actor": "Wang Fang", "reason": "r", "reason": "other"}'
    resp = await client.post("/admin/lists/black_phones/entries", content=body,
                             headers={**ADMIN, "Content-Type": "application/json"})
    assert resp.status_code == 422 and [e["field"] for e in resp.json()["errors"]] == ["reason"]
