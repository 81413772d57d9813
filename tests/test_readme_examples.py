"""The README's examples decide as the README says: the consumer and the merchant applicant of
the demo whitelist, verified by the provider simulator (the merchant's business through the
registry check too), and the merchant again with a revoked licence."""

from __future__ import annotations

import json

import httpx
import pytest

from service.api.app import create_app
from service.config import REPO_ROOT, Settings
from service.runtime import Runtime
from tests.conftest import import_whitelist
from tests.test_verification import simulator  # noqa: F401 - fixture

from .factories import CLIENT


@pytest.fixture
async def demo(tmp_path, simulator):  # noqa: F811
    settings = Settings(data_dir=tmp_path / "data", providers_url=simulator.url, provider_key="demo")
    import_whitelist(settings, REPO_ROOT / "docs" / "demo-whitelist.csv")  # as make run imports it
    runtime = Runtime.from_settings(settings)
    runtime.start()
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client
    await runtime.close_providers()
    runtime.stop()


def example(name: str, **patch) -> dict:
    body = json.loads((REPO_ROOT / "tests" / name).read_text())
    return {**body, **patch}


async def test_the_consumer_example_is_approved_with_a_reduced_offer(demo):
    decision = (await demo.post("/v1/decisions", json=example("example-application.json"), headers=CLIENT)).json()
    assert decision["outcome"] == "approve" and decision["score"]["grade"] == "C"
    assert decision["offer"]["amount"] == 21000 and decision["offer"]["rate_tier"] == "T3"


async def test_the_merchant_example_goes_through_the_business_registry(demo):
    resp = await demo.post("/v1/decisions?explain=true", json=example("example-merchant.json"), headers=CLIENT)
    decision = resp.json()
    checks = next(s for s in decision["trace"] if s["stage"] == "verification")["detail"]["checks"]
    assert checks["business"]["status"] == "active" and checks["business"]["representative_match"] is True
    assert decision["outcome"] == "approve" and decision["score"]["grade"] == "C"
    assert decision["offer"] == {"amount": 35000, "limit": 210000, "term_months": 12, "annual_rate": 0.06,
                                 "rate_tier": "T3"}
    revoked = example("example-merchant.json", application_id="app-readme-merchant-2",
                      business={"uscc": "92330106MA2CK79986", "name": "Li's Tea House", "years_operating": 5,
                                "annual_revenue": 1800000})
    refused = (await demo.post("/v1/decisions", json=revoked, headers=CLIENT)).json()
    assert refused["outcome"] == "decline"
    assert [r["code"] for r in refused["reasons"]] == ["BUSINESS_REVOKED_OR_DEREGISTERED"]
