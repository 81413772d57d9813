"""Champion/challenger arms: configuration, a stable split, shadow arms recorded and never answered."""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from service import metrics
from service.api.app import create_app
from service.config import REPO_ROOT, Settings
from service.engine.ruleset import RulesetError, load_ruleset
from service.ruletests import run_rule_tests
from service.runtime import Runtime
from tests.factories import ADMIN, CLIENT, application

MODELS = {"german_champion", "german_challenger"}
# The trial arm's table: the main one with unflagged grade D approved at half the amount, in
# place of the rows that refer grade D or a flagged application.
GRADE_D_APPROVE = {"id": "approve_d_small", "grade": "D", "flags": "== 0", "outcome": "approve", "share": 0.5,
                   "rate_tier": "'T3'"}


def experiment_rules(tmp_path: Path, arms: dict | None = None, name: str = "grade-d-trial") -> Path:
    """The bundled rules plus an experiment: 80/20 champion and an arm that approves grade D
    at half the amount, and a shadow arm scoring with the challenger model."""
    target = tmp_path / f"rules-{name}"
    shutil.copytree(REPO_ROOT / "rules", target)
    doc = yaml.safe_load((target / "strategy.yaml").read_text())
    rows = [GRADE_D_APPROVE if row["id"] == "grade_d" else row for row in doc["table"]["rows"]
            if row["id"] != "flagged"]
    table = {**doc["table"], "rows": rows}
    doc["experiment"] = {"name": name, "arms": arms or {
        "champion": {"share": 0.8},
        "grade_d_small": {"share": 0.2, "table": table},
        "challenger_model": {"shadow": True, "model": "german_challenger"},
    }}
    (target / "strategy.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return target


def add_arm_cases(rules: Path) -> None:
    (rules / "tests" / "experiment.yaml").write_text(yaml.safe_dump({"cases": [{
        "name": "grade D approved at half the amount on the trial arm", "base": "good_consumer",
        "arm": "grade_d_small", "facts": {"score.grade": "D", "score.pd": 0.3},
        "expect": {"outcome": "approve", "strategy_row": "approve_d_small",
                   "offer": {"amount": 15000, "rate_tier": "T3"}}}, {
        "name": "the same application is referred on the champion", "base": "good_consumer",
        "arm": "champion", "facts": {"score.grade": "D", "score.pd": 0.3},
        "expect": {"outcome": "refer", "reasons": "BORDERLINE"}}]}))


def test_split_follows_the_shares_and_is_stable(tmp_path):
    experiment = load_ruleset(experiment_rules(tmp_path), MODELS).experiment
    ids = [f"app-{i:06d}" for i in range(20_000)]
    arms = [experiment.assign(i).name for i in ids]
    n, p = len(ids), 0.2
    challenger = arms.count("grade_d_small")
    # a binomial count is within 4.5 standard deviations of its mean (fails ~1 in 150,000 runs)
    assert abs(challenger - n * p) < 4.5 * math.sqrt(n * p * (1 - p)), challenger
    assert set(arms) == {"champion", "grade_d_small"}  # a shadow arm never takes live traffic
    again = load_ruleset(experiment_rules(tmp_path / "again"), MODELS).experiment
    assert [again.assign(i).name for i in ids] == arms  # same id, same arm, across loads
    renamed = load_ruleset(experiment_rules(tmp_path / "b", name="next-trial"), MODELS).experiment
    moved = sum(renamed.assign(i).name != a for i, a in zip(ids, arms))
    # a new experiment name reshuffles: P(arm differs) = 2 * 0.8 * 0.2 = 0.32
    assert abs(moved - n * 0.32) < 4.5 * math.sqrt(n * 0.32 * 0.68), moved


@pytest.mark.parametrize("arms, message", [
    ({"champion": {"share": 0.7}, "b": {"share": 0.2}}, "add up to 1 (they add up to 0.9)"),
    ({"champion": {"share": 1.0}, "x": {"shadow": True, "model": "nope"}}, "model 'nope' is not loaded"),
    ({"Champion": {"share": 1.0}}, "lower_snake_case"),
    ({"champion": {"share": 1.0}, "s": {"shadow": True, "share": 0.1}}, "takes no share"),
    ({"s": {"shadow": True}}, "at least one arm must take live traffic"),
    ({"champion": {"share": 1.0, "tabel": []}}, "unknown key 'tabel'"),
])
def test_bad_experiments_are_refused_with_file_and_line(tmp_path, arms, message):
    with pytest.raises(RulesetError) as caught:
        load_ruleset(experiment_rules(tmp_path, arms), MODELS)
    text = "\n".join(str(e) for e in caught.value.errors)
    assert message in text
    assert "strategy.yaml:" in text


def test_a_row_an_arm_changes_needs_a_rule_test_on_that_arm(tmp_path):
    rules = experiment_rules(tmp_path)
    ruleset = load_ruleset(rules, MODELS)
    report = run_rule_tests(ruleset)
    assert report.uncovered == ["grade_d_small/approve_d_small"]
    add_arm_cases(rules)
    report = run_rule_tests(ruleset)
    assert report.passed, report.lines()


@pytest.fixture
async def experiment_client(tmp_path):
    rules = experiment_rules(tmp_path)
    add_arm_cases(rules)
    settings = Settings(data_dir=tmp_path / "data", rules_dir=rules)
    runtime = Runtime.from_settings(settings)
    runtime.start()
    app = create_app(settings, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, runtime, settings
    runtime.stop()


async def test_decisions_carry_their_arm_and_record_shadows_without_answering_them(experiment_client):
    client, runtime, settings = experiment_client
    experiment = runtime.ruleset.experiment
    before = metrics.SHADOW_DECISIONS.labels("challenger_model", "refer", "consumer_quick", "yes")._value.get()
    seen = {}
    for i in range(30):
        app_id = f"exp-{i:03d}"
        response = await client.post("/v1/decisions?explain=true", headers=CLIENT,
                                     content=orjson.dumps(application(app_id, device={"device_id": f"d{i}"})))
        assert response.status_code == 200
        body = response.json()
        assert body["experiment"]["arm"] == experiment.assign(app_id).name
        assert b"challenger_model" not in response.content and "shadow" not in body
        seen[app_id] = body
    assert {b["experiment"]["arm"] for b in seen.values()} == {"champion", "grade_d_small"}
    replay = await client.post("/v1/decisions", headers=CLIENT,
                               content=orjson.dumps(application("exp-000", device={"device_id": "d0"})))
    assert replay.json()["experiment"] == seen["exp-000"]["experiment"]
    with sqlite3.connect(settings.database_path) as db:
        rows = db.execute("SELECT application_id, arm, shadow FROM decisions").fetchall()
    assert len(rows) == 30
    challenger = runtime.models["german_challenger"].version
    for app_id, arm, shadow in rows:
        assert arm == seen[app_id]["experiment"]["arm"]
        (recorded,) = orjson.loads(shadow)
        # no providers here: the live decision refers before the strategy, and so does the shadow
        assert recorded["arm"] == "challenger_model" and recorded["outcome"] == "refer"
        assert recorded["model"] == challenger and recorded["grade"] in "ABCDE"
    after = metrics.SHADOW_DECISIONS.labels("challenger_model", "refer", "consumer_quick", "yes")._value.get()
    assert after - before == 30
    shown = (await client.get("/admin/rules", headers=ADMIN)).json()["experiment"]
    assert shown["name"] == "grade-d-trial"
    assert [(a["name"], a["share"], a["shadow"], a["model"], a["own_table"]) for a in shown["arms"]] == [
        ("champion", 0.8, False, None, False), ("grade_d_small", 0.2, False, None, True),
        ("challenger_model", 0.0, True, "german_challenger", False)]


def test_a_store_from_before_shadows_is_migrated_in_place(tmp_path):
    from service.store.decisions import SqliteDecisions

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("""CREATE TABLE decisions (decision_id TEXT PRIMARY KEY, application_id TEXT NOT NULL
            UNIQUE, body_sha256 BLOB NOT NULL, outcome TEXT NOT NULL, product TEXT NOT NULL, arm TEXT NOT NULL,
            decided_at TEXT NOT NULL, response BLOB NOT NULL, trace BLOB NOT NULL);
            INSERT INTO decisions VALUES ('dec_1', 'a1', x'00', 'refer', 'p', 'champion', '2026', '{}', '[]');""")
    store = SqliteDecisions(path)
    store.open()
    try:
        assert store.get("dec_1").shadow == b"[]"
    finally:
        store.close()
