"""The risk team's workflow: backtests over past applications and the funnel of live decisions."""

from __future__ import annotations

import asyncio
import os
import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from offline.backtest import Evaluator, PastApplication
from service.config import REPO_ROOT
from service.engine.ruleset import load_ruleset
from offline.funnel import funnel, parse_time
from service.decide import application_facts, decide
from service.scoring.model import load_models
from service.store.labels import Label
from tests.factories import application
from tests.test_verification import simulator, verified  # noqa: F401 - fixtures

GERMAN = REPO_ROOT / "models/data/german_credit/applications.jsonl"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def models():
    return load_models(REPO_ROOT / "models")


def grade_d_approved(tmp_path: Path) -> Path:
    """A draft ruleset: grade D approved like C instead of referred."""
    draft = tmp_path / "draft"
    shutil.copytree(REPO_ROOT / "rules", draft)
    text = (draft / "strategy.yaml").read_text()
    text = text.replace("    - {id: grade_d, grade: D, outcome: refer, reason: BORDERLINE}\n", "")
    text = text.replace("{id: approve_c, grade: C,", "{id: approve_c, grade: [C, D],")
    (draft / "strategy.yaml").write_text(text)
    return draft


def test_batch_backtest_decides_exactly_as_the_live_pipeline(models):
    """Batch scoring and the synchronous stages give every application the outcome, reasons,
    grade and offer the pipeline gives it one at a time."""
    ruleset = load_ruleset(REPO_ROOT / "rules", set(models))
    apps = [PastApplication.model_validate_json(line) for line in GERMAN.read_bytes().splitlines()]
    results = Evaluator(ruleset, models).evaluate(apps)
    assert {r.outcome for r in results} == {"approve", "decline", "refer"}

    def one(app: PastApplication):
        return decide(application_facts(app, ruleset) | app.stage_facts(), ruleset, models=models)

    for app, result in zip(apps, results):
        ctx = one(app)
        assert (result.outcome, result.grade) == (ctx.outcome.label, ctx.score["grade"] if ctx.score else None)
        assert result.reasons == tuple((r["code"], r["stage"]) for r in ctx.reasons)
        assert result.amount == (ctx.offer["amount"] if ctx.outcome.label == "approve" else 0.0)
        if ctx.score:
            assert result.pd == pytest.approx(ctx.score["pd"], abs=2e-6)


def test_backtest_cli_reports_rates_reasons_bad_rates_and_the_swap_set(tmp_path):
    out = tmp_path / "out"
    done = cli("backtest", "--rules", "rules", "--against", str(grade_d_approved(tmp_path)),
               "--input", str(GERMAN), "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = orjson.loads((out / "backtest.json").read_bytes())
    assert (out / "backtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a, b = report["rulesets"]
    assert report["applications"] == 1000 and sum(a["outcomes"].values()) == 1000
    assert a["labelled"]["bad_rate_all"] == 0.3  # 300 bad of 1000 in the German data
    assert a["decline_reasons"][0][0] == "TERM_NOT_OFFERED"  # German terms are not product terms
    # the draft approves every grade D the champion referred, and changes nothing else
    grade_d = a["by_grade"]["D"]
    cells = {(c["from"], c["to"]): c for c in report["swaps"]["cells"]}
    assert cells[("refer", "approve")]["count"] == grade_d["refer"] > 0
    assert report["swaps"]["changed"] == grade_d["refer"]
    assert len(cells[("refer", "approve")]["examples"]) == 5
    assert b["outcomes"]["approve"] == a["outcomes"]["approve"] + grade_d["refer"]
    # grade D is riskier than the book: the approved bad rate goes up
    assert b["labelled"]["bad_rate_approved"] > a["labelled"]["bad_rate_approved"]
    assert cells[("refer", "approve")]["bad_rate"] > a["labelled"]["bad_rate_approved"]
    assert "swap set A → B" in done.stdout and "refer → approve" in done.stdout


def test_unrecorded_checks_count_as_unavailable(models, tmp_path):
    recorded = orjson.loads(GERMAN.read_bytes().splitlines()[0])["recorded"]
    del recorded["verification.face.status"]
    app = PastApplication.model_validate_json(orjson.dumps({**application(), "recorded": recorded}))
    ruleset = load_ruleset(REPO_ROOT / "rules", set(models))
    (result,) = Evaluator(ruleset, models).evaluate([app])
    assert ("VERIFICATION_UNAVAILABLE", "fraud") in result.reasons


def test_recorded_list_entries_decide_like_the_live_lists(models):
    recorded = orjson.loads(GERMAN.read_bytes().splitlines()[0])["recorded"]
    ruleset = load_ruleset(REPO_ROOT / "rules", set(models))
    evaluator = Evaluator(ruleset, models)
    body = {**application("listed"), "recorded": recorded}
    clean, device, network, related = evaluator.evaluate([PastApplication.model_validate_json(orjson.dumps(b)) for b in (
        body, {**body, "lists": {"black_devices": ["dev-abc"]}},
        {**body, "lists": {"black_ips": ["203.0.113.0/24"]}},
        {**body, "lists": {"black_phones": ["13912345678"]}})])  # not the applicant's phone
    assert clean.outcome == "approve" and related.outcome == "approve"
    assert ("BLACKLIST_DEVICE", "fraud") in device.reasons and device.outcome == "decline"
    assert network.outcome == "decline" and any(code == "BLACKLIST_IP" for code, _ in network.reasons)


@pytest.mark.parametrize("change, where", [
    (lambda b: b["recorded"].update({"whitelist.listd": True}), "recorded.whitelist.listd"),
    (lambda b: b["recorded"].update({"whitelist.limit": "50000"}), "recorded.whitelist.limit"),
    (lambda b: b.update(label=2), "label"),
    (lambda b: b["loan"].update(amount=-1), "loan.amount"),
    (lambda b: b.update(lists={"black_ips": ["10.0.0.0/99"]}), "lists"),
])
def test_a_bad_input_line_is_named_and_nothing_is_written(tmp_path, change, where):
    lines = GERMAN.read_bytes().splitlines()[:5]
    body = orjson.loads(lines[3])
    change(body)
    lines[3] = orjson.dumps(body)
    source = tmp_path / "past.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    done = cli("backtest", "--rules", "rules", "--input", str(source), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert f"{source}:4: {where}" in done.stderr
    assert not (tmp_path / "out").exists()


def test_backtest_refuses_a_broken_ruleset(tmp_path):
    draft = grade_d_approved(tmp_path)
    (draft / "strategy.yaml").write_text((draft / "strategy.yaml").read_text().replace("grade: score.grade", "grade: score.grde"))
    done = cli("backtest", "--rules", "rules", "--against", str(draft), "--input", str(GERMAN),
               "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "strategy.yaml:" in done.stderr and "score.grde" in done.stderr


async def test_funnel_counts_entries_exits_and_reasons_per_stage(verified, tmp_path):  # noqa: F811
    client, runtime = verified
    started = dt.datetime.now(dt.timezone.utc)
    for app_id, patch in (("f1", {}), ("f2", {}),
                          ("f3", {"verification": {"face": {"liveness_token": "tok-spoof"},
                                                   "sms": {"request_id": "s", "code": "123456"}}}),
                          ("f4", {"loan": {"amount": 30000, "term_months": 7, "purpose": "consumption"}})):
        body = application(app_id, device={"device_id": f"dev-{app_id}"}, **patch)
        response = await client.post("/v1/decisions", content=orjson.dumps(body),
                                     headers={"Authorization": "Bearer dev-client-key-change-me",
                                              "Content-Type": "application/json"})
        assert response.status_code == 200, response.text
    await asyncio.sleep(0)
    report = funnel(runtime.settings.database_path, started - dt.timedelta(seconds=1),
                    dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1))
    (path,) = report["paths"]
    assert (path["product"], path["arm"], path["applications"], path["approved"]) == ("consumer_quick", "champion", 4, 2)
    stages = {s["stage"]: s for s in path["stages"]}
    assert stages["validation"]["entered"] == 4 and stages["validation"]["declined"] == 1
    assert ("TERM_NOT_OFFERED", 1) in stages["validation"]["top_reasons"]
    assert stages["fraud"]["entered"] == 3 and stages["fraud"]["declined"] == 1
    assert ("FACE_LIVENESS_FAILED", 1) in stages["fraud"]["top_reasons"]
    assert stages["strategy"]["entered"] == 2 and stages["strategy"]["left"] == 0
    empty = funnel(runtime.settings.database_path, started + dt.timedelta(hours=1), started + dt.timedelta(hours=2))
    assert empty["applications"] == 0 and empty["paths"] == []

    done = cli("report", "funnel", "--database", str(runtime.settings.database_path),
               "--since", (started - dt.timedelta(minutes=1)).isoformat())
    assert done.returncode == 0, done.stderr
    assert "consumer_quick / arm champion: 4 applications, 2 approved (50.0%)" in done.stdout
    bad = cli("report", "funnel", "--database", str(runtime.settings.database_path), "--since", "last week")
    assert bad.returncode == 2 and "funnel:" in bad.stderr


def test_funnel_times_without_offset_are_beijing_time():
    assert parse_time("2026-11-16") == dt.datetime(2026, 11, 15, 16, 0, tzinfo=dt.timezone.utc)
    assert parse_time("2026-11-16T08:00+00:00") == dt.datetime(2026, 11, 16, 8, 0, tzinfo=dt.timezone.utc)


def test_backtest_runs_each_application_on_its_arm_or_the_one_named(models, tmp_path):
    from tests.test_experiment import experiment_rules

    ruleset = load_ruleset(experiment_rules(tmp_path), set(models))
    apps = [PastApplication.model_validate_json(line) for line in GERMAN.read_bytes().splitlines()]

    def run_on(arm):
        evaluator = Evaluator(ruleset, models, arm)
        return {r.application_id: r for r in evaluator.evaluate(apps)}

    live, champion, trial = run_on(None), run_on("champion"), run_on("grade_d_small")
    grade_d = [i for i, r in champion.items() if r.grade == "D" and r.outcome == "refer"]
    approved = [i for i in grade_d if trial[i].outcome == "approve"]
    assert approved and trial[approved[0]].amount > 0
    # the trial row approves unflagged grade D; a flagged one falls through to manual review
    assert all(trial[i].reasons == (("MANUAL_REVIEW", "strategy"),) for i in set(grade_d) - set(approved))
    for i in grade_d:  # without --arm, each application is decided on the arm it would get live
        expected = trial if ruleset.experiment.assign(i).name == "grade_d_small" else champion
        assert live[i].outcome == expected[i].outcome
    with pytest.raises(ValueError, match="no arm 'nope'"):
        Evaluator(ruleset, models, "nope")


def test_recorded_business_registry_facts_decide_like_the_live_check(models):
    """A backtest line may record what the registry said; a revoked licence is declined, an
    establishment date that is not a date is a line error naming the fact."""
    from tests.factories import merchant

    recorded = orjson.loads(GERMAN.read_bytes().splitlines()[0])["recorded"]
    ruleset = load_ruleset(REPO_ROOT / "rules", set(models))
    registry = {"verification.business.status": "active", "verification.business.representative_match": True,
                "verification.business.established": "2018-03-01", "verification.business.abnormal": False}
    facts = ({**recorded, **registry}, {**recorded, **registry, "verification.business.status": "revoked"},
             recorded)  # the last: the registry unrecorded
    apps = [PastApplication.model_validate_json(orjson.dumps({**merchant(f"bt-biz-{n}"), "recorded": f}))
            for n, f in enumerate(facts)]
    active, revoked, unrecorded = Evaluator(ruleset, models).evaluate(apps)
    assert not [code for code, _ in active.reasons if code.startswith("BUSINESS_")]
    assert revoked.outcome == "decline" and ("BUSINESS_REVOKED_OR_DEREGISTERED", "fraud") in revoked.reasons
    assert unrecorded.outcome == "refer" and ("VERIFICATION_UNAVAILABLE", "fraud") in unrecorded.reasons
    with pytest.raises(Exception, match="verification.business.established"):
        PastApplication.model_validate_json(orjson.dumps(
            {**merchant("bt-biz-3"), "recorded": {**recorded, "verification.business.established": "soon"}}))


async def test_the_backtest_reads_past_applications_their_facts_and_labels_from_the_store(verified, models):  # noqa: F811
    """Decided live (simulator, whitelist, velocity), then decided again from what the store
    recorded: the same outcome, reasons and grade for each, and the labels that came back."""
    from offline.backtest import from_store, run

    client, runtime = verified
    started = dt.datetime.now(dt.timezone.utc)
    live = {}
    for app_id, patch in (("s1", {}), ("s2", {"verification": {"face": {"liveness_token": "tok-spoof"},
                                                              "sms": {"request_id": "s", "code": "123456"}}}),
                          ("s3", {"loan": {"amount": 30000, "term_months": 7, "purpose": "consumption"}}),
                          ("s4", {}), ("s5", {}), ("s6", {})):
        body = application(app_id, device={"device_id": "dev-shared"}, **patch)  # velocity counts up
        response = await client.post("/v1/decisions", content=orjson.dumps(body),
                                     headers={"Authorization": "Bearer dev-client-key-change-me",
                                              "Content-Type": "application/json"})
        live[app_id] = response.json()
    assert {d["outcome"] for d in live.values()} >= {"approve", "decline"}
    runtime.labels.put([Label("s1", "bad", 95, dt.date(2026, 6, 1)), Label("s4", "good", 0, dt.date(2026, 6, 1))],
                       "test", dt.datetime.now(dt.UTC))
    lines = list(from_store(runtime.settings.database_path, started - dt.timedelta(seconds=1),
                            dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)))
    apps = [PastApplication.model_validate_json(line) for line in lines]
    assert [a.application_id for a in apps] == list(live)
    assert {a.application_id: a.label for a in apps} == {"s1": 1, "s2": None, "s3": None, "s4": 0, "s5": None,
                                                         "s6": None}
    ruleset = load_ruleset(REPO_ROOT / "rules", set(models))
    for app, result in zip(apps, Evaluator(ruleset, models).evaluate(apps)):
        answered = live[app.application_id]
        assert result.outcome == answered["outcome"], app.application_id
        assert list(result.reasons) == [(r["code"], r["stage"]) for r in answered["reasons"]]
        assert result.grade == (answered["score"]["grade"] if answered["score"] else None)
    report, errors = run("store", [Evaluator(ruleset, models)], lines=lines)
    assert not errors and report["applications"] == 6
    done = subprocess.run([sys.executable, "-m", "service.cli", "backtest", "--rules", "rules", "--no-chart",
                           "--since", (started - dt.timedelta(minutes=1)).isoformat(), "--out",
                           str(runtime.settings.data_dir / "bt")], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "LOAN_DATA_DIR": str(runtime.settings.data_dir)}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "6 applications from the decision store" in done.stdout
    both = cli("backtest", "--rules", "rules", "--input", "x.jsonl", "--since", "2026-11-01")
    assert both.returncode == 2 and "give --input FILE, or --since" in both.stderr
