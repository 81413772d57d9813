"""Credit scoring: the German-credit data, the feature spec, the ONNX models, PD → points → grade."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from stdnum.cn import ric

from service.config import REPO_ROOT, Settings
from service.identifiers import age_on
from service.engine.ruleset import RulesetError, load_ruleset
from service.decide import application_facts
from service.stages import scoring
from service.stages.decision import NO_LISTS, Decision
from offline import german_credit
from service.scoring.features import Refused, SpecError, load_spec
from service.scoring.model import ModelError, OnnxModel, load_model, load_models
from offline.training import feature_matrix, read_labelled

from .conftest import LiveServer
from .factories import CLIENT, application

DATA = REPO_ROOT / "models" / "data" / "german_credit"
MODELS = REPO_ROOT / "models"
RULES = REPO_ROOT / "rules"


@pytest.fixture(scope="module")
def labelled():
    return read_labelled(DATA / "applications.jsonl")


@pytest.fixture(scope="module")
def champion() -> OnnxModel:
    return load_model(MODELS / "german_champion")


# --- data ------------------------------------------------------------------------------------

def test_conversion_reproduces_the_committed_files(tmp_path):
    assert german_credit.convert(DATA / "germancredit.csv", tmp_path) == 1000
    for name in ("applications.jsonl", "protected.csv"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_applications_are_contract_shaped_and_carry_the_source(labelled):
    import csv

    rows = list(csv.DictReader((DATA / "germancredit.csv").open(encoding="utf-8")))
    assert len(labelled.requests) == 1000 and int(labelled.labels.sum()) == 300
    for request, row, label in zip(labelled.requests, rows, labelled.labels):
        number = request.applicant.id_number
        assert ric.is_valid(number)
        assert age_on(ric.get_birth_date(number), request.submitted_at.date()) == int(row["age_in_years"])
        assert request.loan.amount == float(row["credit_amount"]) * german_credit.DM_TO_CNY
        assert request.loan.term_months == int(row["duration_in_month"])
        assert label == (row["creditability"] == "bad")
    protected = (DATA / "protected.csv").read_text()
    assert "sex" in protected.splitlines()[0]
    body = (DATA / "applications.jsonl").read_text()
    assert "female" not in body and "foreign" not in body


# --- the feature path ------------------------------------------------------------------------

def test_serving_reproduces_the_training_matrix_for_every_application(labelled, champion):
    """The scoring stage, run on each application's live context, feeds the graph exactly the
    rows training fitted on — and so gives the PDs the training matrix gives."""
    ruleset = load_ruleset(RULES, {"german_champion"})
    training = feature_matrix(champion.spec, labelled.requests, ruleset)
    fed: list[np.ndarray] = []
    run = champion.session.run

    class Recording:
        def run(self, outputs, feeds):
            fed.append(feeds["features"].copy())
            return run(outputs, feeds)

    model = OnnxModel(champion.spec, Recording(), champion.version)  # type: ignore[arg-type]
    arm = ruleset.experiment.live[0]

    def score_all():
        scores = []
        for request in labelled.requests:
            d = Decision(application_facts(request, ruleset), ruleset, ruleset.products[request.product], arm,
                         NO_LISTS, {"german_champion": model})
            scoring.run(d)
            scores.append(d.score["pd"])
        return scores

    served_pds = score_all()
    assert np.array_equal(np.vstack(fed), training)
    # one row at a time vs one batch: the same inputs, float32 sums in another order
    expected = [champion.result(float(p))["pd"] for p in champion.sample_pds(training)]
    assert served_pds == pytest.approx(expected, abs=2e-6)


def _facts(**patch):
    from service.schemas import DecisionRequest

    request = DecisionRequest.model_validate(application(**patch), strict=False)
    ruleset = load_ruleset(RULES)
    return application_facts(request, ruleset)


def test_missing_inputs_are_imputed_categorised_or_refused(champion):
    spec = champion.spec
    columns = spec.columns
    row, raw = spec.encode(_facts(bank=None, bureau=None, collateral=None))
    assert raw["checking"] is None and row[columns.index("checking[no_account]")] == 1.0
    assert row[columns.index("credit_history[paid_duly]")] == 1.0  # imputed
    assert row[columns.index("other_lenders")] == 0.0  # imputed
    assert row[columns.index("collateral[none]")] == 1.0
    with pytest.raises(Refused) as refused:
        spec.encode(_facts(applicant={"monthly_income": 0}))  # a ratio over zero income
    assert refused.value.features == ["instalment_share", "instalment_band"]


def test_a_category_the_model_never_saw_takes_the_reserved_column(champion):
    spec = champion.spec
    row, _ = spec.encode(_facts(applicant={"occupation": "farmer"}))
    block = [c for c in spec.columns if c.startswith("occupation[")]
    assert [row[spec.columns.index(c)] for c in block] == [0, 0, 0, 0, 1.0]
    assert block[-1] == "occupation[__unseen__]"


def test_bands_split_at_their_edges(champion):
    spec = champion.spec
    for balance, band in ((0, "<1"), (0.99, "<1"), (1, "1-1000"), (999, "1-1000"), (1000, ">=1000")):
        row, _ = spec.encode(_facts(bank={"deposit_balance": balance}))
        assert row[spec.columns.index(f"checking[{band}]")] == 1.0, balance


def test_pd_points_and_grades(champion):
    spec = champion.spec
    assert spec.calibrate(0.30) == pytest.approx(0.05)  # the sample's bad rate → the portfolio's
    assert spec.calibrate(0.5) > spec.calibrate(0.3) > spec.calibrate(0.1)
    assert spec.points(1 / 51) == 600  # 50:1 good:bad odds
    assert spec.points(1 / 101) == pytest.approx(620, abs=0.2)  # odds doubled: +20
    assert [spec.grade(p) for p in (0.001, 0.0149, 0.015, 0.05, 0.1, 0.5, 1.0)] == \
        ["A", "A", "B", "C", "D", "E", "E"]


# --- the shipped models ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["german_champion", "german_challenger"])
def test_recorded_metrics_belong_to_the_shipped_graph_and_meet_the_bar(name):
    model = load_model(MODELS / name)
    metrics = json.loads((MODELS / name / "metrics.json").read_text())
    assert metrics["version"] == model.version
    assert metrics["cv"]["folds"] == 50
    assert metrics["cv"]["auc"]["mean"] < 0.83  # above this, suspect leakage
    if name == "german_champion":
        assert metrics["cv"]["auc"]["mean"] >= 0.790
        assert metrics["cv"]["ks"]["mean"] >= 0.45
        assert metrics["cv"]["brier"]["mean"] <= 0.170
    rates = [g["bad_rate"] for g in metrics["grades"]]
    assert rates == sorted(rates), rates  # observed bad rate rises from A to E


@pytest.mark.parametrize("name", ["german_champion", "german_challenger"])
def test_training_reproduces_the_shipped_model(tmp_path, name):
    pytest.importorskip("sklearn", reason="the train extra is part of the dev install")
    from offline.training import train

    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(MODELS / name / "features.yaml", folder)
    data = DATA / "applications.jsonl"
    result = train(folder, data, RULES, cv=False, log=lambda _: None)
    assert (folder / "model.onnx").read_bytes() == (MODELS / name / "model.onnx").read_bytes()
    assert result["version"].split("-")[1] == load_model(MODELS / name).version.split("-")[1]


def test_models_load_and_score_the_example_application():
    models = load_models(MODELS)
    assert set(models) == {"german_champion", "german_challenger"}
    for model in models.values():
        score, detail = model.score(_facts())
        assert 0 < score["pd"] < 1 and score["grade"] in "ABCDE"
        assert score["points"] == model.spec.points(score["pd"])
        assert detail["features"]["age"] == 36


# --- start-up and lint checks ----------------------------------------------------------------

def _copy_model(tmp_path: Path, name: str = "german_champion") -> Path:
    folder = tmp_path / "models" / name
    shutil.copytree(MODELS / name, folder)
    return folder


def test_a_spec_that_no_longer_matches_its_graph_is_refused(tmp_path, champion):
    columns = champion.spec.columns
    folder = _copy_model(tmp_path)
    spec = folder / "features.yaml"
    spec.write_text(spec.read_text().replace("name: age,", "name: age_years,"))
    with pytest.raises(ModelError) as error:
        load_models(tmp_path / "models")
    assert f"column {columns.index('age')}: graph 'age', spec 'age_years'" in str(error.value)
    spec.write_text(spec.read_text().replace("bands: [1, 1000]", "bands: [1, 1000, 5000]", 1))
    with pytest.raises(ModelError, match=f"the graph takes {len(columns)} columns, the spec gives "
                                         f"{len(columns) + 1}"):
        load_models(tmp_path / "models")


def test_serve_refuses_to_start_with_a_mismatched_model(tmp_path, champion):
    folder = _copy_model(tmp_path)
    spec = folder / "features.yaml"
    spec.write_text(spec.read_text().replace("name: age,", "name: age_years,"))
    server = LiveServer(tmp_path / "data", {"LOAN_MODELS_DIR": str(tmp_path / "models")})
    proc = subprocess.run([sys.executable, "-m", "service.cli", "serve"], env=server.env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"column {champion.spec.columns.index('age')}: graph 'age', spec 'age_years'" in proc.stderr


def test_spec_errors_name_file_line_and_feature(tmp_path):
    folder = _copy_model(tmp_path)
    spec = folder / "features.yaml"
    text = spec.read_text()
    text = text.replace("from: loan.term_months,", "from: loan.term_monhts,")
    text = text.replace("missing: {impute: 0}", "missing: {impute: zero}")
    spec.write_text(text)
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    lines = [str(e) for e in error.value.errors]
    where = next(n for n, line in enumerate(text.splitlines(), 1) if "name: term_months" in line)
    assert any(f":{where}:" in line and "[term_months]" in line and "loan.term_months" in line for line in lines), lines
    assert any("[other_lenders]" in line and "'missing'" in line for line in lines), lines


def test_lint_names_a_product_routed_to_a_model_that_is_not_loaded(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    products = rules / "products.yaml"
    products.write_text(products.read_text().replace("models: {default: german_champion}   #",
                                                     "models: {default: german_champoin}   #"))
    with pytest.raises(RulesetError) as error:
        load_ruleset(rules, {"german_champion", "german_challenger"})
    message = str(error.value.errors[0])
    assert "products.yaml:18:" in message and "german_champoin" in message and "[farmer_quick]" in message


# --- through the API -------------------------------------------------------------------------

def _points_count(text: str) -> float:
    line = 'loan_model_score_points_count{model="german_champion"} '
    return next((float(row[len(line):]) for row in text.splitlines() if row.startswith(line)), 0.0)


async def test_decisions_carry_the_score_and_the_model_version(client):
    before = _points_count((await client.get("/metrics")).text)
    resp = await client.post("/v1/decisions?explain=true", json=application("app-score"), headers=CLIENT)
    body = resp.json()
    assert body["score"]["model"].startswith("german_champion-")
    assert body["versions"]["model"] == body["score"]["model"]
    scoring = next(s for s in body["trace"] if s["stage"] == "scoring")["detail"]
    assert scoring["segment"] == "salaried" and scoring["features"]["instalment_share"] > 0
    metrics = (await client.get("/metrics")).text
    assert _points_count(metrics) == before + 1
    assert 'loan_model_info{model="german_champion",version="' in metrics


async def test_a_refused_feature_means_no_score_and_no_approval(client):
    resp = await client.post("/v1/decisions?explain=true", headers=CLIENT,
                             json=application("app-no-income", product="farmer_quick",
                                              applicant={"occupation": "farmer", "monthly_income": 0}))
    body = resp.json()
    assert body["score"] is None and body["outcome"] != "approve"
    scoring = next(s for s in body["trace"] if s["stage"] == "scoring")["detail"]
    assert scoring["refused"] == ["instalment_share", "instalment_band"]


def test_settings_default_to_the_bundled_models():
    assert Settings().models_dir == MODELS


def test_quality_measures_on_known_cases():
    pytest.importorskip("sklearn", reason="the train extra is part of the dev install")
    from offline.training import fold_metrics, grade_table

    labels = np.array([0, 0, 0, 1, 1, 1])
    perfect = fold_metrics(labels, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))
    assert perfect["auc"] == 1.0 and perfect["ks"] == 1.0
    assert perfect["brier"] == pytest.approx((0.01 + 0.04 + 0.09) * 2 / 6)
    inverted = fold_metrics(labels, np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]))
    assert inverted["auc"] == 0.0
    spec = load_spec(MODELS / "german_champion" / "features.yaml")
    # sample PDs 0.05 and 0.9 calibrate into grades A and E; two repeats pooled
    table = grade_table(spec, np.array([0, 1]), np.array([[0.05, 0.9], [0.05, 0.9]]))
    by_grade = {row["grade"]: row for row in table}
    assert by_grade["A"]["share"] == 0.5 and by_grade["A"]["bad_rate"] == 0.0
    assert by_grade["E"]["bad_rate"] == 1.0 and by_grade["C"]["bad_rate"] is None


def test_a_model_names_its_own_derived_inputs_frozen_with_its_version(tmp_path):
    """A features.yaml may name expressions (as rules/derived.yaml does) and read them as
    derived.NAME: the definition is part of the file, so of the model's version, and a rule
    edit can never change what the model was trained on."""
    from service.decide import application_facts
    from service.engine.ruleset import load_ruleset
    from service.schemas import DecisionRequest
    from tests.factories import application

    folder = _copy_model(tmp_path)
    spec = folder / "features.yaml"
    text = spec.read_text()
    text = text.replace("features:\n", "derived:\n  monthly_repayment: loan.amount / loan.term_months\n"
                                       "  share: derived.monthly_repayment / applicant.monthly_income\nfeatures:\n", 1)
    text = text.replace("from: loan.amount / loan.term_months / applicant.monthly_income", "from: derived.share")
    spec.write_text(text)
    changed, original = load_spec(spec), load_spec(MODELS / "german_champion" / "features.yaml")
    assert changed.digest != original.digest  # another spec: another model version
    facts = application_facts(DecisionRequest.model_validate(application(), strict=False), load_ruleset(RULES))
    assert changed.encode(facts)[0] == original.encode(facts)[0]  # the same inputs, named
    spec.write_text(text.replace("  share: derived.monthly_repayment", "  share: derived.monthly_repaymnt"))
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    assert any("derived.monthly_repaymnt" in str(e) and "[share]" in str(e) for e in error.value.errors)
