"""``loan-decision model train``: fit a model from labelled, contract-shaped applications, measure
it on the published protocol, export ONNX and write the model card.

Needs the optional ``train`` extra (scikit-learn, skl2onnx, onnx); serving needs none of it.

Applications are parsed with the API's own parser and turned into facts by the pipeline's own
``context``; the feature spec encodes them. So the matrix a model is fitted on is, row for row,
what the scoring stage computes in production (a test checks all 1000 German-credit rows).

Protocol: repeated stratified 5-fold × 10 (``random_state=20240601``); every fitted step —
scaling, the regularisation strength (chosen by an inner CV), the forest — is refitted inside
each training fold; metrics are means over the 50 test folds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from service.decide import application_facts
from service.engine.ruleset import Ruleset, load_ruleset
from service.schemas import DecisionRequest
from service.scoring.features import FeatureSpec, Refused, load_spec
from service.scoring.model import FEATURE_NAMES, INPUT, OUTPUT, load_model, session_options

SEED = 20240601
FOLDS, REPEATS = 5, 10
PARITY = 1e-5  # largest |PD(ONNX) - PD(scikit-learn)| the export accepts
OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass
class Labelled:
    requests: list[DecisionRequest]
    labels: np.ndarray  # 1 = went bad
    ids: list[str]


def read_labelled(path: Path) -> Labelled:
    """JSON lines in the API's request shape plus ``label`` (and optional ``recorded`` stage
    facts, ignored here); every line must parse."""
    requests, labels, errors = [], [], []
    for number, line in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            body = orjson.loads(line)
            label = body.pop("label")
            body.pop("recorded", None)  # stage facts for backtests; models read the request only
            if label not in (0, 1):
                raise ValueError("label must be 0 or 1")
            requests.append(DecisionRequest.model_validate_json(orjson.dumps(body)))
            labels.append(label)
        except Exception as exc:  # noqa: BLE001 - report every bad line, then stop
            errors.append(f"{path}:{number}: {str(exc).splitlines()[0]}")
    if errors:
        raise ValueError("\n".join(errors[:20]) + (f"\n… {len(errors)} bad lines" if len(errors) > 20 else ""))
    return Labelled(requests, np.array(labels, dtype=np.int64), [r.application_id for r in requests])


def feature_matrix(spec: FeatureSpec, requests: list[DecisionRequest], ruleset: Ruleset) -> np.ndarray:
    """The encoded rows, through the serving path: application_facts, then spec.encode."""
    rows, refused = [], []
    for request in requests:
        try:
            rows.append(spec.encode(application_facts(request, ruleset))[0])
        except Refused as exc:
            refused.append(f"{request.application_id}: {exc}")
    if refused:
        raise ValueError(f"{len(refused)} applications have refused features, e.g. {refused[:3]}")
    return np.array(rows, dtype=np.float32)


def reference_values(spec: FeatureSpec, requests: list[DecisionRequest], ruleset: Ruleset) -> dict[str, list[Any]]:
    """For each numeric input (features reading one expression), the deciles of its values in
    the training data: the candidates an explanation picks the best attribute from
    (service/scoring/explain.py). Categories and true/false need none."""
    from service.scoring.explain import inputs

    values: dict[str, list[float]] = {}
    for request in requests:
        facts = application_facts(request, ruleset)
        for item in inputs(spec):
            first = item.features[0]
            if first.encoding == "categories" or first.boolean:
                continue
            value = first.fn(facts, None)
            if value is not None:
                values.setdefault(item.name, []).append(float(value))
    return {name: sorted({float(round(v, 4)) for v in np.quantile(vs, np.linspace(0, 1, 11))})
            for name, vs in values.items()}


def learner(spec: FeatureSpec) -> Any:
    """A fresh, unfitted estimator for ``spec.learner`` with its parameters."""
    from sklearn.ensemble import RandomForestClassifier, VotingClassifier
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    params = spec.learner_params
    logistic = Pipeline([
        ("scale", StandardScaler()),
        ("logistic", LogisticRegressionCV(Cs=params.get("Cs", 12), cv=5, scoring="neg_log_loss",
                                          l1_ratios=(0.0,), use_legacy_attributes=False, max_iter=5000)),
    ])
    if spec.learner == "scorecard":
        return logistic
    forest = RandomForestClassifier(
        n_estimators=params.get("trees", 300), min_samples_leaf=params.get("min_leaf", 5),
        max_features=params.get("max_features", "sqrt"), random_state=SEED, n_jobs=1)
    weight = params.get("forest_weight", 0.5)
    return VotingClassifier([("logistic", logistic), ("forest", forest)], voting="soft", flatten_transform=False,
                            weights=np.array([1 - weight, weight]))


def ks(labels: np.ndarray, pds: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, pds)
    return float(np.max(tpr - fpr))


def fold_metrics(labels: np.ndarray, pds: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    return {"auc": float(roc_auc_score(labels, pds)), "ks": ks(labels, pds),
            "brier": float(brier_score_loss(labels, pds))}


def _fold(template: Any, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    from sklearn.base import clone

    return clone(template).fit(x[train], y[train]).predict_proba(x[test])[:, 1]


def cross_validate(spec: FeatureSpec, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Repeated stratified CV: per-metric mean and std over the folds, and out-of-fold PDs.

    Folds run on every core; each is seeded, so the result does not depend on how many."""
    from joblib import Parallel, delayed
    from sklearn.model_selection import RepeatedStratifiedKFold

    splits = list(RepeatedStratifiedKFold(n_splits=FOLDS, n_repeats=REPEATS, random_state=SEED).split(x, y))
    template = learner(spec)
    predictions = Parallel(n_jobs=-1)(delayed(_fold)(template, x, y, train, test) for train, test in splits)
    folds, oof = [], np.zeros((REPEATS, len(y)))
    for number, ((_, test), pds) in enumerate(zip(splits, predictions)):
        oof[number // FOLDS, test] = pds
        folds.append(fold_metrics(y[test], pds))
    summary = {key: {"mean": round(float(np.mean([f[key] for f in folds])), 4),
                     "std": round(float(np.std([f[key] for f in folds])), 4)} for key in folds[0]}
    return {"folds": len(folds), **summary, "oof": oof}


def grade_table(spec: FeatureSpec, y: np.ndarray, oof: np.ndarray) -> list[dict[str, Any]]:
    """Out-of-fold applications and bad rate per grade, pooled over the repeats."""
    grades = np.array([[spec.grade(spec.calibrate(p)) for p in repeat] for repeat in oof])
    labels = np.broadcast_to(y, grades.shape)
    table = []
    for grade in spec.grades:
        hit = grades == grade.name
        count = int(hit.sum())
        table.append({"grade": grade.name, "max_pd": grade.max_pd, "share": round(count / hit.size, 4),
                      "bad_rate": round(float(labels[hit].mean()), 4) if count else None})
    return table


def export(spec: FeatureSpec, model: Any, x: np.ndarray) -> bytes:
    """The fitted model as ONNX, with the spec's column names recorded; refused unless its PDs
    match scikit-learn's on every training row."""
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    proto = to_onnx(model, initial_types=[(INPUT, FloatTensorType([None, x.shape[1]]))],
                    options={id(model): {"zipmap": False}}, target_opset=OPSET,
                    final_types=None, naming=spec.name + "_")
    proto.graph.name = spec.name
    proto.producer_name, proto.producer_version = "loan-decision model train", ""
    proto.doc_string = f"{spec.name}: see MODEL_CARD.md"
    entry = proto.metadata_props.add()
    entry.key, entry.value = FEATURE_NAMES, json.dumps(spec.columns)
    graph = proto.SerializeToString(deterministic=True)
    session = ort.InferenceSession(graph, session_options(), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    if OUTPUT not in outputs:
        raise ValueError(f"the exported graph has outputs {outputs}, not '{OUTPUT}'")
    ours = session.run([OUTPUT], {INPUT: x})[0][:, 1]
    native = model.predict_proba(x)[:, 1]
    gap = float(np.max(np.abs(ours - native)))
    if gap > PARITY:
        raise ValueError(f"ONNX and scikit-learn PDs differ by {gap:.2e} (> {PARITY:g}): not written")
    return graph


def fairness(spec: FeatureSpec, x: np.ndarray, y: np.ndarray, oof: np.ndarray,
             protected: list[dict[str, str]], ages: np.ndarray) -> dict[str, Any]:
    """What dropping the protected attributes costs, and calibration by group."""
    extra = np.array([[p["sex"] == "female", p["foreign_worker"] == "yes"] for p in protected],
                     dtype=np.float32)
    with_protected = cross_validate(spec, np.hstack([x, extra]), y)
    mean_pd = oof.mean(axis=0)
    groups: dict[str, np.ndarray] = {
        "sex=female": np.array([p["sex"] == "female" for p in protected]),
        "sex=male": np.array([p["sex"] == "male" for p in protected]),
        "foreign_worker=yes": np.array([p["foreign_worker"] == "yes" for p in protected]),
        "foreign_worker=no": np.array([p["foreign_worker"] == "no" for p in protected]),
        "age<25": ages < 25, "age 25-39": (ages >= 25) & (ages < 40), "age 40-59": (ages >= 40) & (ages < 60),
        "age>=60": ages >= 60,
    }
    return {
        "auc_with_protected": with_protected["auc"]["mean"],
        "by_group": [{"group": name, "count": int(mask.sum()),
                      "observed_bad_rate": round(float(y[mask].mean()), 4),
                      "mean_pd": round(float(mean_pd[mask].mean()), 4)}
                     for name, mask in groups.items() if mask.any()],
    }


def read_protected(path: Path, ids: list[str]) -> list[dict[str, str]] | None:
    if not path.exists():
        return None
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        rows = {row["application_id"]: row for row in csv.DictReader(handle)}
    return [rows[i] for i in ids] if all(i in rows for i in ids) else None


def train(folder: Path, data: Path | None, rules_dir: Path, cv: bool = True,
          log: Any = print) -> dict[str, Any]:
    """Fit ``folder``'s spec on ``data`` (default: the spec's own), write model.onnx and, with
    ``cv``, metrics.json and MODEL_CARD.md. Returns the metrics."""
    from offline.model_card import model_card

    spec = load_spec(folder / "features.yaml")
    data = Path(data or spec.data or "")
    if not data.is_file():
        raise ValueError(f"no training data: {data}")
    labelled = read_labelled(data)
    ruleset = load_ruleset(rules_dir)
    x, y = feature_matrix(spec, labelled.requests, ruleset), labelled.labels
    log(f"{spec.name}: {len(y)} applications, {int(y.sum())} bad, {x.shape[1]} columns")
    # One BLAS thread: a multi-threaded reduction may sum in another order under load, and the
    # shipped graph must come out byte for byte (it did not, once in a loaded test run).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        model = learner(spec).fit(x, y)
    (folder / "model.onnx").write_bytes(export(spec, model, x))
    served = load_model(folder)
    log(f"{spec.name}: wrote {folder / 'model.onnx'} ({served.version})")
    if not cv:
        return {"version": served.version}
    log(f"{spec.name}: {FOLDS}-fold x {REPEATS} cross-validation …")
    result = cross_validate(spec, x, y)
    oof = result.pop("oof")
    metrics: dict[str, Any] = {
        "model": spec.name, "version": served.version, "data": data.name,
        "applications": len(y), "bad": int(y.sum()),
        "columns": x.shape[1], "protocol": f"repeated stratified {FOLDS}-fold x {REPEATS}, "
                                           f"random_state={SEED}", "cv": result,
        "grades": grade_table(spec, y, oof),
        "reference": reference_values(spec, labelled.requests, ruleset),
    }
    protected = read_protected(data.parent / "protected.csv", labelled.ids)
    if protected is not None:
        ages = np.array([float(p["age"]) for p in protected])
        metrics["fairness"] = fairness(spec, x, y, oof, protected, ages)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (folder / "MODEL_CARD.md").write_text(model_card(spec, metrics), encoding="utf-8")
    log(f"{spec.name}: AUC {result['auc']['mean']:.4f}, KS {result['ks']['mean']:.4f}, "
        f"Brier {result['brier']['mean']:.4f}")
    return metrics
