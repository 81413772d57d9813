"""The ONNX models a worker serves: one folder each under ``models/`` with ``features.yaml`` and
``model.onnx``. A model is checked against its spec when it loads — input name, type, width and
the feature names recorded in the graph — so a spec edited without retraining (or a graph from
another spec) stops start-up with the difference named, instead of scoring garbage.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.engine.ruleset import display_path
from service.scoring.features import FeatureSpec, SpecError, load_spec

INPUT = "features"  # the graph's one input: float32 [n, width]
OUTPUT = "probabilities"  # its PD output: float32 [n, 2], column 1 = bad
FEATURE_NAMES = "feature_names"  # metadata: JSON list of the spec's column names


class ModelError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass
class OnnxModel:
    spec: FeatureSpec
    session: ort.InferenceSession
    version: str  # name + content hash of model.onnx and features.yaml
    # The files it was loaded from (archived by version, so that a decision stays explainable
    # after the model has changed) and the reference the explanations compare with.
    files: dict[str, bytes] = field(default_factory=dict, repr=False)
    reference: dict[str, list[Any]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def sample_pds(self, matrix: np.ndarray) -> np.ndarray:
        """PDs on the training sample's scale for a batch of encoded rows."""
        return self.session.run([OUTPUT], {INPUT: matrix.astype(np.float32, copy=False)})[0][:, 1]

    def score(self, facts: dict[str, Any], lists: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(score, trace detail) for one application; raises features.Refused. The detail keeps
        what the score was computed from: the inputs as encoded for the graph, their raw values
        and the feature spec's digest (the model's version names the graph and the spec)."""
        row, raw = self.spec.encode(facts, lists)
        sample_pd = float(self.sample_pds(np.array([row], dtype=np.float32))[0])
        return self.result(sample_pd), {"features": raw, "inputs": row, "spec": self.spec.digest[:12]}

    def result(self, sample_pd: float) -> dict[str, Any]:
        spec = self.spec
        pd = spec.calibrate(sample_pd)
        return {"model": self.version, "pd": round(pd, 6), "points": spec.points(pd), "grade": spec.grade(pd)}


def check_graph(spec: FeatureSpec, session: ort.InferenceSession, where: str) -> list[str]:
    """Every way the graph's signature differs from what the spec produces."""
    errors = []
    inputs = session.get_inputs()
    columns = spec.columns
    if len(inputs) != 1 or inputs[0].name != INPUT or inputs[0].type != "tensor(float)":
        got = ", ".join(f"{i.name} {i.type}" for i in inputs)
        errors.append(f"{where}: the graph must take one float tensor '{INPUT}', not {got}")
    elif inputs[0].shape[-1] != len(columns):
        errors.append(f"{where}: the graph takes {inputs[0].shape[-1]} columns, the spec gives {len(columns)}")
    if OUTPUT not in {o.name for o in session.get_outputs()}:
        errors.append(f"{where}: the graph has no output '{OUTPUT}'")
    recorded = session.get_modelmeta().custom_metadata_map.get(FEATURE_NAMES)
    names = json.loads(recorded) if recorded else None
    if names is None:
        errors.append(f"{where}: the graph records no '{FEATURE_NAMES}'")
    elif names != columns:
        for i, (graph, ours) in enumerate(zip(names + [None] * len(columns), columns + [None] * len(names))):
            if graph != ours:
                errors.append(f"{where}: column {i}: graph '{graph}', spec '{ours}'")
                break
    return errors


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    # One worker per core: onnxruntime's own thread pools would fight the event loop for it.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: graph-optimiser notices are not operators' business
    return options


FILES = ("features.yaml", "model.onnx", "metrics.json")  # what a version is archived with


def load_model(folder: Path) -> OnnxModel:
    spec_path, graph_path = folder / "features.yaml", folder / "model.onnx"
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        raise ModelError([str(e) for e in exc.errors]) from None
    where = display_path(graph_path)
    try:
        graph = graph_path.read_bytes()
        session = ort.InferenceSession(graph, session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any unreadable graph is one clear start-up error
        raise ModelError([f"{where}: cannot load: {exc}"]) from None
    errors = check_graph(spec, session, where)
    if errors:
        raise ModelError(errors)
    spec_bytes = spec_path.read_bytes()
    digest = hashlib.sha256(graph + b"\0" + spec_bytes).hexdigest()[:12]
    metrics_path = folder / "metrics.json"
    metrics = metrics_path.read_bytes() if metrics_path.exists() else b"{}"
    try:
        reference = json.loads(metrics).get("reference", {})
    except ValueError:
        raise ModelError([f"{display_path(metrics_path)}: not JSON"]) from None
    return OnnxModel(spec, session, f"{spec.name}-{digest}",
                     {"features.yaml": spec_bytes, "model.onnx": graph, "metrics.json": metrics}, reference)


def load_archived(name: str, files: dict[str, bytes]) -> OnnxModel:
    """A model version from its archived files (``FILES``), as it was loaded then."""
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        for file_name, content in files.items():
            if file_name in FILES:
                (folder / file_name).write_bytes(content)
        return load_model(folder)


def model_folders(directory: Path) -> list[Path]:
    return sorted(p.parent for p in Path(directory).glob("*/features.yaml"))


def load_models(directory: Path) -> dict[str, OnnxModel]:
    """Every model under ``directory``; ModelError lists every problem of every model."""
    models: dict[str, OnnxModel] = {}
    errors: list[str] = []
    for folder in model_folders(directory):
        try:
            models[folder.name] = load_model(folder)
        except ModelError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ModelError(errors)
    return models
