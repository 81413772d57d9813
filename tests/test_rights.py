"""The applicant's rights over an automated decision (PIPL art. 24) and the languages it is
answered in: explanations whose factors add up, on the model version the decision was made on
(archived when the model changes), a person's review on request, and no automatic outcome for
an applicant who refused one — on SQLite and PostgreSQL where a store is involved."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from service.config import Settings
from service.decide import application_facts
from service.engine.messages import localise, negotiate
from service.engine.ruleset import load_ruleset
from service.runtime import Runtime
from service.schemas import DecisionRequest
from service.scoring.explain import encode_input, explain, inputs
from service.scoring.model import load_models
from service.stages.decision import read_values
from tests.conftest import serving
from tests.factories import CLIENT, REVIEWER_A, application

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
DATA = MODELS / "data" / "german_credit" / "applications.jsonl"
FORMER = "german_challenger"  # stands in for a model version that is no longer served


def training_rows(count: int) -> list[dict]:
    ruleset = load_ruleset(ROOT / "rules")
    rows = []
    for line in DATA.read_text().splitlines()[:count]:
        raw = orjson.loads(line)
        request = DecisionRequest.model_validate_json(orjson.dumps(
            {k: v for k, v in raw.items() if k not in ("label", "recorded", "lists")}))
        rows.append(application_facts(request, ruleset))
    return rows


@pytest.fixture(scope="module")
def models():
    return load_models(MODELS)


@pytest.mark.parametrize("name", ["german_champion", "german_challenger"])
def test_the_factors_add_up_to_the_distance_from_the_reference(models, name):
    model = models[name]
    for i, facts in enumerate(training_rows(40)):
        _, detail = model.score(facts)
        raw = orjson.loads(orjson.dumps(detail["features"]))  # as the stored trace gives it back
        result = explain(model, raw, f"dec_{i}")
        total = sum(f.points for f in result.factors)
        assert total == pytest.approx(result.points - result.reference_points, abs=1e-6)
        assert result.points == pytest.approx(model.score(facts)[0]["points"], abs=0.06)
        assert result.reference_points >= result.points - 1e-9  # every input at its best
        assert [f.points for f in result.factors] == sorted(f.points for f in result.factors)
        assert explain(model, raw, f"dec_{i}") == result  # the same decision, the same explanation


def test_the_scorecard_reports_points_per_attribute_exactly(models):
    """Additive: each input's points are the points of the applicant's attribute minus the best
    one's, whatever the other inputs are — as a scorecard reports them."""
    model = models["german_challenger"]
    spec = model.spec
    assert spec.learner == "scorecard"
    for i, facts in enumerate(training_rows(15)):
        row, raw = spec.encode(facts)
        result = explain(model, raw, f"dec_{i}")
        for factor in result.factors:
            item = next(it for it in inputs(spec) if it.name == factor.input)
            best_value = None if factor.best == item.features[0].missing_value and \
                item.features[0].missing == "category" else factor.best
            moved = np.array(row, dtype=np.float32)
            moved[list(item.positions)] = encode_input(item, best_value)
            both = spec.sample_points(model.sample_pds(np.array([row, moved], dtype=np.float32)))
            assert factor.points == pytest.approx(both[0] - both[1], abs=1e-3), factor  # float32 graph


def test_a_fired_rule_keeps_what_it_read_with_personal_data_masked():
    facts = {"applicant.phone": "13800138000", "applicant.id_number": "11010519491231002X",
             "applicant.name": "王小明", "velocity.phone_24h": 4}
    read = read_values(frozenset(facts), facts)
    assert read == {"applicant.id_number": "110*************2X", "applicant.name": "王**",
                    "applicant.phone": "138****8000", "velocity.phone_24h": 4}


@pytest.mark.parametrize(("header", "language"), [
    (None, "zh"), ("", "zh"), ("en", "en"), ("en-US,en;q=0.9", "en"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    ("fr-FR, en;q=0.5", "en"), ("fr", "zh"), ("en;q=0.2, zh;q=0.8", "zh"), ("en;q=0", "zh"), ("*", "zh"),
    ("en;q=abc, en-GB;q=0.3", "en"),
])
def test_the_language_is_negotiated(header, language):
    assert negotiate(header) == language


# --- through the API, on both stores ---------------------------------------------------------


@pytest.fixture
async def app(tmp_path: Path, backend_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    async with serving(Settings(data_dir=tmp_path / "data", database_url=backend_url,
                                review_request_days=30)) as served:
        yield served


async def post(client: httpx.AsyncClient, body: dict, **headers: str) -> httpx.Response:
    return await client.post("/v1/decisions", content=orjson.dumps(body), headers={**CLIENT, **headers})


async def test_the_answer_is_in_the_requested_language_whenever_it_is_read(app):
    client, _ = app
    body = application("lang-1", consents={"credit_inquiry": False, "data_processing": True})
    english = await post(client, body, **{"Accept-Language": "en-GB,en;q=0.9"})
    assert english.headers["content-language"] == "en"
    reason = next(r for r in english.json()["reasons"] if r["code"] == "CONSENT_CREDIT_INQUIRY_MISSING")
    assert reason["message"] == reason["messages"]["en"] == "Consent to the credit inquiry is required."
    chinese = await post(client, body)  # the retry, in the default language
    assert chinese.headers["content-language"] == "zh"
    again = next(r for r in chinese.json()["reasons"] if r["code"] == reason["code"])
    assert again["message"] == "需要您授权查询征信。"
    assert {**chinese.json(), "reasons": None, "elapsed_ms": None} == {**english.json(), "reasons": None,
                                                                      "elapsed_ms": None}
    decision_id = chinese.json()["decision_id"]
    got = await client.get(f"/v1/decisions/{decision_id}", headers={**CLIENT, "Accept-Language": "en"})
    assert got.json()["reasons"] == english.json()["reasons"]
    problem = await post(client, {"not": "an application"}, **{"Accept-Language": "en"})
    assert problem.status_code == 422  # errors are not translated, but still answered


async def test_the_explanation_api(app):
    client, runtime = app
    decided = (await post(client, application("explain-1"))).json()
    assert decided["score"] is not None
    zh = await client.get(f"/v1/decisions/{decided['decision_id']}/explanation", headers=CLIENT)
    assert zh.status_code == 200, zh.text
    body = zh.json()
    assert body["language"] == "zh" and body["decided_by"] == "automation" and body["outcome"] == decided["outcome"]
    assert [r["code"] for r in body["reasons"]] == [r["code"] for r in decided["reasons"]]
    assert body["reasons"][0]["message"] == decided["reasons"][0]["messages"]["zh"]
    factors = body["factors"]
    assert factors["available"] and factors["method"] == "shapley-sampled"
    assert sum(f["points"] for f in factors["all"]) == pytest.approx(
        factors["points"] - factors["reference_points"], abs=0.01 * len(factors["all"]))
    assert factors["top"] and all(f["points"] < 0 and "分" in f["text"] for f in factors["top"])
    assert body["versions"]["model"] == decided["score"]["model"] and len(body["versions"]["feature_spec"]) == 12
    assert body["human_review"]["case_id"] is not None  # referred here (no providers): a person decides
    en = (await client.get(f"/v1/decisions/{decided['decision_id']}/explanation",
                           headers={**CLIENT, "Accept-Language": "en"})).json()
    assert en["language"] == "en" and en["factors"]["top"][0]["text"].endswith("points.")
    assert en["reasons"][0]["message"] == decided["reasons"][0]["messages"]["en"]
    assert (await client.get("/v1/decisions/dec_nothing/explanation", headers=CLIENT)).status_code == 404
    assert (await client.get(f"/v1/decisions/{decided['decision_id']}/explanation",
                             headers=REVIEWER_A)).status_code == 403
    stored = orjson.loads((await runtime.store.find(decided["decision_id"])).trace)
    scoring = next(s for s in stored if s["stage"] == "scoring")["detail"]
    assert len(scoring["inputs"]) == len(runtime.models["german_champion"].spec.columns)
    fired = [r for s in stored for r in s["detail"].get("rules", ()) if r["result"] == "hit"]
    assert fired and all("read" in r for r in fired)


async def test_a_decision_is_explained_on_its_own_model_after_the_model_changed(tmp_path, backend_url):
    """Decided on one model version, explained after the worker serves another one: the former
    version comes back from the archive in the store."""
    served = tmp_path / "models"
    served.mkdir()
    shutil.copytree(MODELS / FORMER, served / "german_champion")  # another graph under the routed name
    data = tmp_path / "data"
    async with serving(Settings(data_dir=data, database_url=backend_url, models_dir=served)) as (client, _):
        decided = (await post(client, application("archived-1"))).json()
        before = (await client.get(f"/v1/decisions/{decided['decision_id']}/explanation", headers=CLIENT)).json()
    former = decided["score"]["model"]
    shutil.rmtree(served / "german_champion")
    shutil.copytree(MODELS / "german_champion", served / "german_champion")
    second = Settings(data_dir=data, database_url=backend_url, models_dir=served)
    async with serving(second, whitelist=False) as (client, runtime):
        assert runtime.models["german_champion"].version != former
        after = (await client.get(f"/v1/decisions/{decided['decision_id']}/explanation", headers=CLIENT)).json()
    assert after["versions"]["model"] == former and after["factors"]["available"]
    assert after["factors"] == before["factors"] and after["factors"]["method"] == "exact"


async def test_the_applicant_may_ask_a_person_to_review_an_automatic_decision_once(app):
    client, runtime = app
    declined = (await post(client, application("rights-1", consents={"credit_inquiry": False,
                                                                     "data_processing": True}))).json()
    assert declined["outcome"] == "decline"
    explained = (await client.get(f"/v1/decisions/{declined['decision_id']}/explanation", headers=CLIENT)).json()
    assert explained["human_review"]["case_id"] is None and explained["human_review"]["may_request_until"]
    url = f"/v1/decisions/{declined['decision_id']}/review-request"
    assert (await client.post(url, content=b'{"reason": ""}', headers=CLIENT)).status_code == 422
    assert (await client.post(url, content=b'{"reason": "x"}', headers=REVIEWER_A)).status_code == 403
    asked = await client.post(url, content=orjson.dumps({"reason": "I did consent, call me on 13900139000"}),
                              headers=CLIENT)
    assert asked.status_code == 201, asked.text
    case = asked.json()
    assert case["state"] == "open" and case["decision_id"] == declined["decision_id"]
    again = await client.post(url, content=b'{"reason": "again"}', headers=CLIENT)
    assert again.status_code == 409 and again.json()["type"].endswith("review-unavailable")
    detail = (await client.get(f"/v1/reviews/{case['case_id']}", headers=REVIEWER_A)).json()
    context = detail["context"] if "context" in detail else detail
    text = orjson.dumps(context).decode()
    assert "13900139000" not in text and "139****9000" in text and "applicant_request" in text
    # A person decides: the final answer is theirs, the automatic one kept beside it.
    assert (await client.post(f"/v1/reviews/{case['case_id']}/claim", headers=REVIEWER_A)).status_code == 200
    verdict = {"outcome": "approve", "reason": "VERIFIED_BY_CALL", "note": "consent confirmed by phone",
               "offer": {"amount": 20000, "term_months": 12, "rate_tier": "T2"}}
    done = await client.post(f"/v1/reviews/{case['case_id']}/decide", content=orjson.dumps(verdict), headers=REVIEWER_A)
    assert done.status_code == 200, done.text
    final = (await client.get(f"/v1/decisions/{declined['decision_id']}", headers=CLIENT)).json()
    assert final["outcome"] == "approve" and final["automatic"]["outcome"] == "decline"
    assert final["review"]["state"] == "decided"
    explained = (await client.get(f"/v1/decisions/{declined['decision_id']}/explanation", headers=CLIENT)).json()
    assert explained["decided_by"] == "person" and explained["outcome"] == "approve"
    # A referral is with a person already; past the window, no review.
    referred = (await post(client, application("rights-2"))).json()
    assert referred["outcome"] == "refer"
    late = await client.post(f"/v1/decisions/{referred['decision_id']}/review-request",
                             content=b'{"reason": "x"}', headers=CLIENT)
    assert late.status_code == 409
    old = (await post(client, application("rights-3", consents={"credit_inquiry": False,
                                                                "data_processing": True}))).json()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    runtime.review.now = lambda: later
    late = await client.post(f"/v1/decisions/{old['decision_id']}/review-request", content=b'{"reason": "x"}',
                             headers=CLIENT)
    assert late.status_code == 409 and "30 days" in late.json()["detail"]
    assert (await client.post("/v1/decisions/dec_none/review-request", content=b'{"reason": "x"}',
                              headers=CLIENT)).status_code == 404


async def test_an_applicant_who_refuses_automation_gets_a_person(app):
    client, runtime = app
    body = application("human-1", consents={"credit_inquiry": False, "data_processing": True,
                                            "automated_decision": False})
    resp = await client.post("/v1/decisions?explain=true", content=orjson.dumps(body), headers=CLIENT)
    decided = resp.json()
    assert decided["outcome"] == "refer" and decided["offer"] is None
    assert decided["reasons"][-1]["code"] == "HUMAN_DECISION_REQUESTED"
    assert not any("skipped" in step["detail"] for step in decided["trace"])  # every check ran
    assert any(step["stage"] == "scoring" and "features" in step["detail"] for step in decided["trace"])
    queue = (await client.get("/v1/reviews", headers=REVIEWER_A)).json()["cases"]
    case = next(c for c in queue if c["decision_id"] == decided["decision_id"])
    detail = (await client.get(f"/v1/reviews/{case['case_id']}", headers=REVIEWER_A)).json()
    text = orjson.dumps(detail).decode()
    assert '"origin":"no_automated_decision"' in text and '"outcome":"decline"' in text
    consenting = (await post(client, application("human-2", consents={"credit_inquiry": False,
                                                                     "data_processing": True,
                                                                     "automated_decision": True}))).json()
    assert consenting["outcome"] == "decline"


def test_localise_leaves_the_default_language_untouched():
    stored = orjson.dumps({"reasons": [{"code": "X", "message": "中", "messages": {"zh": "中", "en": "E"}}]})
    assert localise(stored, "zh") is stored
    assert orjson.loads(localise(stored, "en"))["reasons"][0]["message"] == "E"


def test_a_model_input_s_label_needs_both_languages(tmp_path):
    from service.scoring.features import SpecError, load_spec

    folder = tmp_path / "german_challenger"
    shutil.copytree(MODELS / "german_challenger", folder)
    spec = folder / "features.yaml"
    spec.write_text(spec.read_text().replace('label: {zh: "活期存款余额", en: "Deposit balance"}',
                                             'label: {en: "Deposit balance"}'))
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    assert any("[checking]" in str(e) and "'label'" in str(e) for e in error.value.errors)


def test_a_former_release_s_models_are_archived_from_the_command_line(tmp_path):
    """Decisions made before workers archived their models: the operator archives that
    release's model folders, and those decisions become explainable."""
    import os
    import subprocess
    import sys

    from service.config import REPO_ROOT
    from service.scoring.model import load_model
    from service.store.models import SqliteModels

    former = tmp_path / "release-1" / "german_champion"
    shutil.copytree(MODELS / FORMER, former)
    env = {**os.environ, "LOAN_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "service.cli", "model", "archive", str(former)]
    first = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    version = load_model(former).version
    assert first.stdout.strip() == f"{version}: archived"
    again = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert again.stdout.strip() == f"{version}: already archived"
    archive = SqliteModels(tmp_path / "data" / "decisions.sqlite3")
    archive.open()
    try:
        kept = archive.get(version)
    finally:
        archive.close()
    assert kept is not None and kept.files["model.onnx"] == (former / "model.onnx").read_bytes()
    broken = tmp_path / "broken"
    shutil.copytree(MODELS / FORMER, broken)
    (broken / "model.onnx").write_bytes(b"not a graph")
    failed = subprocess.run([*command[:-1], str(broken)], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=60)
    assert failed.returncode == 1 and "cannot load" in failed.stderr


@pytest.mark.parametrize(("language", "value", "best", "text"), [
    ("en", None, "real_estate", "Collateral: not given (best: real_estate) lowered the score by 7.6 points."),
    ("zh", False, True, "担保人为无（最佳为有），使评分降低1.5分。"),
    ("en", 30000.0, 14262.0, "Amount requested: 30000 (best: 14262) lowered the score by 16.2 points."),
])
def test_a_factor_is_said_in_plain_words(language, value, best, text):
    from service.engine.messages import Message
    from service.explanations import factor_view
    from service.scoring.explain import Factor

    labels = {"Collateral": Message("抵押物", "Collateral"), "Guarantor": Message("担保人", "Guarantor"),
              "Amount requested": Message("申请金额", "Amount requested")}
    name = next(n for n in labels if text.startswith(n) or labels[n].zh in text)
    points = -float(text.split("by ")[-1].split(" ")[0]) if language == "en" else -1.5
    assert factor_view(Factor("x", labels[name], value, best, points), language)["text"] == text
