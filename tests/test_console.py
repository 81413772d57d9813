"""The review console: sign-in, sessions that hold no key, CSRF and cross-site refusals, the
queue and a case page with personal data masked, the forms that work a case — over HTTP here,
and in a real headless Chromium (tests/test_console_browser.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from service.api.console.pages import left
from service.api.console.session import COOKIE, Sessions
from service.config import Settings
from service.runtime import Runtime
from tests.conftest import serving
from tests.factories import CLIENT, REVIEWER_A, application

KEY_A = REVIEWER_A["Authorization"].removeprefix("Bearer ")
KEY_B = "dev-reviewer-b-key-change-me"
CLIENT_KEY = CLIENT["Authorization"].removeprefix("Bearer ")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    async with serving(Settings(data_dir=tmp_path / "data")) as (client, runtime):
        client.headers["Accept-Language"] = "en"  # the pages' own words in English here; Chinese below
        yield client, runtime


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    client.cookies.clear()
    return await client.post("/console/login", data={"key": key}, headers=FORM)


async def referral(client: httpx.AsyncClient, app_id: str, amount: float = 40000) -> dict:
    body = application(app_id, loan={"amount": amount, "term_months": 12, "purpose": "consumption"})
    decided = (await client.post("/v1/decisions", content=orjson.dumps(body), headers=CLIENT)).json()
    assert decided["outcome"] == "refer"
    return decided


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def test_sign_in_sets_a_session_that_holds_no_key(console):
    client, _ = console
    assert (await client.get("/console/")).headers["location"] == "/console/login"
    assert (await sign_in(client, "not-a-key")).status_code == 401
    assert (await sign_in(client, CLIENT_KEY)).status_code == 401  # a client key is not a reviewer's
    signed = await sign_in(client, KEY_A)
    assert signed.status_code == 303 and signed.headers["location"] == "/console/"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert KEY_A not in cookie and KEY_A not in signed.headers.get("location", "")
    page = await client.get("/console/")
    assert page.status_code == 200 and "dev-reviewer-a" in page.text and KEY_A not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    assert "<script src=\"/console/static/console.js\"" in page.text
    assert not re.findall(r'(?:src|href)="(?!/[^/])', page.text)  # nothing from a CDN or another site
    assert (await client.get("/console/static/console.js")).status_code == 200


async def test_a_forged_or_altered_or_expired_session_is_refused(console, monkeypatch):
    client, runtime = console
    await sign_in(client, KEY_A)
    value = client.cookies[COOKIE]
    body, signature = value.split(".")
    client.cookies.clear()
    client.cookies.set(COOKIE, body + "." + signature[::-1], path="/console")
    assert (await client.get("/console/")).status_code == 303
    expired = Sessions(runtime.settings.pii_key.encode(), now=lambda: 0.0).issue("dev-reviewer-a", b"\0" * 8)[1]
    client.cookies.clear()
    client.cookies.set(COOKIE, expired, path="/console")
    assert (await client.get("/console/")).status_code == 303
    other = Sessions(b"another secret of thirty-two bytes!!").issue("dev-reviewer-a", b"\0" * 8)[1]
    client.cookies.clear()
    client.cookies.set(COOKIE, other, path="/console")
    assert (await client.get("/console/")).status_code == 303


async def test_forms_need_the_csrf_token_and_the_console_s_own_origin(console):
    client, runtime = console
    decided = await referral(client, "console-csrf")
    await sign_in(client, KEY_A)
    queue = (await client.get("/console/")).text
    case_id = re.search(r'href="/console/cases/(rev_[0-9A-Z]+)"', queue).group(1)
    url = f"/console/cases/{case_id}/claim"
    refused = await client.post(url, data={}, headers=FORM)
    assert refused.status_code == 403 and "expired" in refused.text
    refused = await client.post(url, data={"csrf": csrf_of(queue)}, headers={**FORM, "Origin": "https://evil.example"})
    assert refused.status_code == 403
    case = (await client.get(f"/v1/reviews/{case_id}", headers=REVIEWER_A)).json()
    assert case["state"] == "open" and case["decision_id"] == decided["decision_id"]  # nothing changed
    claimed = await client.post(url, data={"csrf": csrf_of(queue)}, headers={**FORM, "Origin": "http://t"})
    assert claimed.status_code == 303
    assert (await client.get(f"/v1/reviews/{case_id}", headers=REVIEWER_A)).json()["holder"] == "dev-reviewer-a"


async def test_a_case_is_worked_through_the_forms_with_four_eyes(console):
    client, runtime = console
    decided = await referral(client, "console-1", amount=40000)
    await sign_in(client, KEY_A)
    case_id = re.search(r'href="/console/cases/(rev_[0-9A-Z]+)"', (await client.get("/console/")).text).group(1)
    page = (await client.get(f"/console/cases/{case_id}")).text
    assert "110*************" in page or "110**" in page  # the ID number masked ...
    assert application()["applicant"]["id_number"] not in page and "13800138000" not in page  # ... never whole
    assert "What lowered the score" in page and "Rule trace" in page and "Audit history" in page
    token = csrf_of(page)
    assert (await client.post(f"/console/cases/{case_id}/claim", data={"csrf": token}, headers=FORM)).status_code == 303
    bad = await client.post(f"/console/cases/{case_id}/decide", headers=FORM, data={
        "csrf": token, "outcome": "approve", "reason_approve": "VERIFIED_BY_CALL", "amount": "900000",
        "term_months": "12", "rate_tier": "T2", "note": "x"})
    assert bad.status_code == 422 and "offer.amount" in bad.text
    proposed = await client.post(f"/console/cases/{case_id}/decide", headers=FORM, data={
        "csrf": token, "outcome": "approve", "reason_approve": "VERIFIED_BY_CALL", "amount": "40000",
        "term_months": "12", "rate_tier": "T2", "note": "called 13800138000: confirmed"})
    assert proposed.status_code == 303 and proposed.headers["location"].endswith("done=proposed")
    waiting = (await client.get(proposed.headers["location"])).text
    assert "a second reviewer must confirm it" in waiting and "138****8000" in waiting
    await sign_in(client, KEY_B)
    page = (await client.get(f"/console/cases/{case_id}")).text
    token = csrf_of(page)
    assert (await client.post(f"/console/cases/{case_id}/claim", data={"csrf": token}, headers=FORM)).status_code == 303
    confirmed = await client.post(f"/console/cases/{case_id}/confirm", data={"csrf": token, "note": ""}, headers=FORM)
    assert confirmed.status_code == 303
    final = (await client.get(f"/v1/decisions/{decided['decision_id']}", headers=CLIENT)).json()
    assert final["outcome"] == "approve" and final["offer"]["amount"] == 40000
    assert final["review"]["decided_by"] == "dev-reviewer-a" and final["review"]["confirmed_by"] == "dev-reviewer-b"


@pytest.mark.parametrize(("seconds", "text"), [(462, "7:42"), (-65, "-1:05"), (3725, "1:02:05"), (0, "0:00")])
def test_time_left_is_shown_as_the_clock_reads(seconds, text):
    assert left(seconds) == text


@pytest.mark.parametrize(("value", "text"), [(None, "—"), (True, "yes"), (40000.0, "40,000"), (0.27777, "0.2778"),
                                              (12000.5, "12,000.50"), ("rent", "rent"), (3, "3")])
def test_facts_are_shown_as_a_reviewer_reads_them(value, text):
    from service.api.console.pages import shown_value

    assert shown_value(value) == text


async def test_compliance_finds_a_decision_explains_it_and_opens_a_review_for_the_applicant(console):
    client, _ = console
    body = application("console-complaint", consents={"credit_inquiry": False, "data_processing": True})
    declined = (await client.post("/v1/decisions", content=orjson.dumps(body), headers=CLIENT)).json()
    assert declined["outcome"] == "decline"
    await sign_in(client, KEY_A)
    assert (await client.get("/console/decisions?id=nobody")).status_code == 404
    found = await client.get("/console/decisions?id=console-complaint", headers={"Accept-Language": "zh-CN"})
    assert found.status_code == 200 and declined["decision_id"] in found.text
    assert "需要您授权查询征信。" in found.text and "申请人可在以下时间前要求人工复核" in found.text
    assert "Consent to the credit inquiry" in (await client.get(
        f"/console/decisions?id={declined['decision_id']}", headers={"Accept-Language": "en"})).text
    url = f"/console/decisions/{declined['decision_id']}/review-request"
    refused = await client.post(url, data={"csrf": csrf_of(found.text), "reason": ""}, headers=FORM)
    assert refused.status_code == 422
    opened = await client.post(url, data={"csrf": csrf_of(found.text), "reason": "says she consented; 13900139000"},
                               headers=FORM)
    assert opened.status_code == 303 and opened.headers["location"].endswith("done=requested")
    case = (await client.get(opened.headers["location"])).text
    assert "the applicant asked for a review of an automatic decision" in case  # English: the client asks for it
    assert "139****9000" in case and "13900139000" not in case
    again = await client.post(url, data={"csrf": csrf_of(found.text), "reason": "again"}, headers=FORM)
    assert again.status_code == 409 and "already requested" in again.text


def test_every_word_of_the_console_is_in_chinese_too():
    from service.api.console import pages
    from service.api.console.texts import ZH

    templates = Path(pages.__file__).parent / "templates"
    texts = {t for f in templates.glob("*.html") for t in re.findall(r'_\("((?:[^"\\]|\\.)+)"\)', f.read_text())}
    texts |= set(re.findall(r'Refused\(\d+, "([^"]+)"\)', Path(pages.__file__).read_text()))
    texts |= set(pages.DONE.values()) | {"automation referred it", "the applicant refused an automated decision",
                                         "the applicant asked for a review of an automatic decision"}
    texts |= {"normal", "high", "urgent", "open", "claimed", "awaiting_confirmation", "confirming", "decided",
              "Approve", "Decline", "automation", "person"}
    assert len(texts) > 100
    assert sorted(texts - set(ZH)) == []


async def test_the_pages_speak_the_browser_s_language(console):
    client, _ = console
    await referral(client, "console-zh")
    await sign_in(client, KEY_A)
    chinese = await client.get("/console/", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "审核队列" in chinese.text and "待领取" in chinese.text and chinese.headers["content-language"] == "zh"
    english = await client.get("/console/", headers={"Accept-Language": "en-US"})
    assert "Queue" in english.text and "审核队列" not in english.text
