"""A model's feature spec (``models/NAME/features.yaml``): its inputs, in column order, and how
each is computed from the decision's facts. Training and serving both call ``encode``, so the
matrix a model was fitted on and the row it scores in production come from one code path.

Each feature reads one expression in the rules' language (``from``) and encodes it as
- ``numeric`` — one column, the number itself (``transform: log1p`` optional);
- ``categories: [...]`` — one-hot columns, plus a reserved column for a value the model never saw;
- ``bands: [edges]`` — one-hot columns for ``x < e1``, ``e1 <= x < e2``, …, ``x >= last``.

``missing`` says what a null (or an expression that fails, such as a division by zero) becomes:
``refuse`` (no score: the strategy decides what an unscored application gets), ``{impute: v}``
(the value ``v`` is encoded instead) or ``{category: name}`` (its own one-hot column). A null
never reaches the graph: a scorecard would put it in its lowest bin, which may be the best one.

The same file holds how PD becomes points and a grade (``calibration``, ``points``, ``grades``)
and, for ``loan-decision model train``, the learner.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.engine.expressions import ExpressionError, compile_expression
from service.engine.facts import BOOL, CATALOGUE, NUMBER, STRING
from service.engine.messages import LANGUAGES, Message
from service.engine.named import Named, compile_named
from service.engine.ruleset import display_path
from service.engine.source import Located, Position, RuleError, load_yaml

ENCODINGS = ("numeric", "categories", "bands")
LEARNERS = ("scorecard", "lr_forest")
UNSEEN = "__unseen__"


class SpecError(Exception):
    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class Refused(Exception):
    """A feature is missing and its spec says ``refuse``: the application gets no score."""

    def __init__(self, features: list[str]) -> None:
        super().__init__(", ".join(features))
        self.features = features


@dataclass(frozen=True)
class Feature:
    name: str
    source: str
    fn: Any  # compiled expression: (facts, lists) -> value
    encoding: str
    transform: str | None
    levels: tuple[Any, ...]  # categories, or band edges
    missing: str  # refuse | impute | category
    missing_value: Any  # the imputed value, or the missing category's name
    label: Message | None = None  # what the input is called in an explanation
    boolean: bool = False  # ``from`` gives true/false (encoded 1/0)

    @property
    def columns(self) -> list[str]:
        if self.encoding == "numeric":
            return [self.name]
        if self.encoding == "categories":
            labels = [str(c) for c in self.levels] + [UNSEEN]
        else:
            edges = self.levels
            labels = [f"<{edges[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(edges, edges[1:])] \
                + [f">={edges[-1]:g}"]
        if self.missing == "category":
            labels.append(str(self.missing_value))
        return [f"{self.name}[{label}]" for label in labels]

    def encode(self, value: Any, out: list[float]) -> bool:
        """Append this feature's columns for ``value``; False if it must be refused."""
        if value is None:
            if self.missing == "refuse":
                return False
            if self.missing == "category":
                width = len(self.levels) + (2 if self.encoding == "categories" else 1)
                out.extend([0.0] * width)
                out.append(1.0)
                return True
            value = self.missing_value
        if self.encoding == "numeric":
            number = float(value)
            out.append(math.log1p(number) if self.transform == "log1p" else number)
            return True
        if self.encoding == "categories":
            slot = self.levels.index(value) if value in self.levels else len(self.levels)
            width = len(self.levels) + 1
        else:
            slot = bisect.bisect_right(self.levels, value)
            width = len(self.levels) + 1
        row = [0.0] * (width + (self.missing == "category"))
        row[slot] = 1.0
        out.extend(row)
        return True


@dataclass(frozen=True)
class Grade:
    name: str
    max_pd: float  # upper bound (exclusive) of the portfolio-calibrated PD


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    path: Path
    digest: str  # sha256 of the file, part of the model version
    features: tuple[Feature, ...]
    sample_bad_rate: float  # the training data's bad rate …
    portfolio_bad_rate: float  # … and the portfolio's: PDs are shifted from one to the other
    base_points: float
    base_odds: float
    points_to_double_odds: float
    grades: tuple[Grade, ...]
    learner: str
    learner_params: dict[str, Any]
    data: Path | None  # default training data, relative to the spec

    @property
    def columns(self) -> list[str]:
        return [column for feature in self.features for column in feature.columns]

    def encode(self, facts: dict[str, Any], lists: Any = None) -> tuple[list[float], dict[str, Any]]:
        """One application's model input row, and the raw values (for the trace).

        Raises Refused naming every feature that is missing with ``missing: refuse``."""
        row: list[float] = []
        raw: dict[str, Any] = {}
        refused: list[str] = []
        for feature in self.features:
            try:
                value = feature.fn(facts, lists)
            except (ArithmeticError, TypeError, ValueError):
                value = None  # e.g. a ratio over a zero income: the same as a missing input
            raw[feature.name] = value
            if not feature.encode(value, row):
                refused.append(feature.name)
        if refused:
            raise Refused(refused)
        return row, raw

    def calibrate(self, sample_pd: float) -> float:
        """Shift a PD from the training sample's bad rate to the portfolio's (prior correction)."""
        sample_pd = min(max(sample_pd, 1e-9), 1 - 1e-9)
        shift = _logit(self.portfolio_bad_rate) - _logit(self.sample_bad_rate)
        return 1 / (1 + math.exp(-(_logit(sample_pd) + shift)))

    def points(self, pd: float) -> float:
        """Scorecard points: base points at base odds (good:bad), and so many more per doubling."""
        pd = min(max(pd, 1e-9), 1 - 1e-9)
        odds = (1 - pd) / pd
        return round(self.base_points + self.points_to_double_odds * math.log2(odds / self.base_odds), 1)

    def sample_points(self, sample_pds: np.ndarray) -> np.ndarray:
        """``points(calibrate(p))`` for a batch of sample PDs, unrounded (explanations add them up)."""
        p = np.clip(sample_pds.astype(np.float64), 1e-9, 1 - 1e-9)
        shift = _logit(self.portfolio_bad_rate) - _logit(self.sample_bad_rate)
        log_odds = -(np.log(p / (1 - p)) + shift)  # ln(good:bad) after the prior shift
        return self.base_points + self.points_to_double_odds * (log_odds / math.log(2) - math.log2(self.base_odds))

    def grade(self, pd: float) -> str:
        for grade in self.grades:
            if pd < grade.max_pd:
                return grade.name
        return self.grades[-1].name


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class _SpecLoader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[RuleError] = []
        self.named = Named(CATALOGUE)  # the spec's own named expressions (frozen with the model)

    def error(self, position: Position, message: str, feature: str | None = None) -> None:
        self.errors.append(RuleError(position, message, feature))

    def number(self, doc: Located, key: str, low: float, high: float, default: float | None = None) -> float:
        value = doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.error(doc.at(key), f"'{key}' must be a number from {low:g} to {high:g}")
            return low
        return float(value)

    def feature(self, entry: Any, where: Position, seen: set[str]) -> Feature | None:
        if not isinstance(entry, Located):
            self.error(where, "each feature must be a mapping")
            return None
        name = entry.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            self.error(entry.at("name"), "'name' must be an identifier", str(name))
            return None
        if name in seen:
            self.error(entry.at("name"), "duplicate feature name", name)
        seen.add(name)
        allowed = {"name", "from", "missing", "transform", "label", *ENCODINGS}
        for key in entry:
            if key not in allowed:
                self.error(entry.at(key), f"unknown key '{key}' (allowed: {', '.join(sorted(allowed))})", name)
        encodings = [e for e in ENCODINGS if e in entry]
        if len(encodings) != 1:
            self.error(entry.position, "give exactly one of numeric, categories, bands", name)
            return None
        encoding = encodings[0]
        levels: tuple[Any, ...] = ()
        if encoding == "categories":
            levels = tuple(entry["categories"] or ())
            if not levels or not all(isinstance(c, str) for c in levels) or len(set(levels)) != len(levels):
                self.error(entry.at("categories"), "'categories' must be distinct texts", name)
        elif encoding == "bands":
            levels = tuple(entry["bands"] or ())
            if not levels or not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in levels) \
                    or list(levels) != sorted(set(levels)):
                self.error(entry.at("bands"), "'bands' must be increasing numbers (the band edges)", name)
                levels = (0,)
        transform = entry.get("transform")
        if transform not in (None, "log1p") or (transform and encoding != "numeric"):
            self.error(entry.at("transform"), "'transform' may be log1p, on a numeric feature", name)
        expect = STRING if encoding == "categories" else NUMBER
        source = entry.get("from")
        fn, boolean = None, False
        try:
            compiled = compile_expression(source, self.named.catalogue, None, self.named.trees)
            if compiled.type not in (expect, BOOL if encoding == "numeric" else expect, "any"):
                self.error(entry.at("from"), f"'from' gives a {compiled.type}; {encoding} needs a {expect}", name)
            fn, boolean = compiled.fn, compiled.type == BOOL
        except ExpressionError as exc:
            self.error(entry.locate("from", exc.offset), exc.message, name)
        missing, missing_value = self.missing(entry, encoding, levels, name)
        label = self.label(entry, name) if "label" in entry else None
        if fn is None:
            return None
        return Feature(name, str(source), fn, encoding, transform, levels, missing, missing_value, label, boolean)

    def label(self, entry: Located, name: str) -> Message | None:
        value = entry.get("label")
        if isinstance(value, Located) and set(value) == set(LANGUAGES) \
                and all(isinstance(value[lang], str) and value[lang].strip() for lang in LANGUAGES):
            return Message(value["zh"].strip(), value["en"].strip())
        self.error(entry.at("label"), "'label' must name the input in every language: {zh: …, en: …}", name)
        return None

    def missing(self, entry: Located, encoding: str, levels: tuple, name: str) -> tuple[str, Any]:
        policy = entry.get("missing")
        if policy == "refuse":
            return "refuse", None
        if isinstance(policy, dict) and set(policy) == {"impute"}:
            value = policy["impute"]
            ok = isinstance(value, str) if encoding == "categories" else (
                isinstance(value, (int, float)) and not isinstance(value, bool))
            if ok:
                return "impute", value
        elif isinstance(policy, dict) and set(policy) == {"category"} and encoding != "numeric":
            value = policy["category"]
            if isinstance(value, str) and value not in levels:
                return "category", value
        self.error(entry.at("missing"), "'missing' must be refuse, {impute: value} or, for categories "
                                        "and bands, {category: new_name}", name)
        return "refuse", None

    def load(self) -> FeatureSpec:
        shown = display_path(self.path)
        doc, errors = load_yaml(self.path, shown)
        self.errors.extend(errors)
        if not isinstance(doc, Located):
            if not errors:
                self.error(Position(shown, 1, 1), "the file must hold a mapping")
            raise SpecError(self.errors)
        derived = doc.get("derived")
        if isinstance(derived, Located):
            self.named = compile_named(derived, CATALOGUE, self.error)
        elif derived is not None:
            self.error(doc.at("derived"), "'derived' must map names to expressions, as in rules/derived.yaml")
        entries = doc.get("features")
        features: list[Feature] = []
        seen: set[str] = set()
        if not isinstance(entries, list) or not entries:
            self.error(doc.at("features"), "'features' must be a non-empty list")
        else:
            for entry in entries:
                feature = self.feature(entry, doc.at("features"), seen)
                if feature is not None:
                    features.append(feature)
        calibration = doc.get("calibration")
        points = doc.get("points")
        grades_doc = doc.get("grades")
        training = doc.get("training")
        for key, value in (("calibration", calibration), ("points", points), ("grades", grades_doc),
                           ("training", training)):
            if not isinstance(value, Located):
                self.error(doc.at(key), f"'{key}' must be a mapping")
        if self.errors:
            raise SpecError(self.errors)
        assert isinstance(calibration, Located) and isinstance(points, Located)  # checked just above
        assert isinstance(grades_doc, Located) and isinstance(training, Located)
        grades = tuple(Grade(str(g), self.number(grades_doc, g, 0, 1)) for g in grades_doc)
        bounds = [g.max_pd for g in grades]
        if len(grades) < 2 or bounds != sorted(set(bounds)) or bounds[-1] != 1:
            self.error(grades_doc.position, "'grades' must map grade names to increasing PD upper "
                                            "bounds, the last one 1")
        learner = training.get("learner")
        if learner not in LEARNERS:
            self.error(training.at("learner"), f"'learner' must be one of {', '.join(LEARNERS)}")
        data = training.get("data")
        spec = FeatureSpec(
            name=self.path.parent.name, path=self.path,
            digest=hashlib.sha256(self.path.read_bytes()).hexdigest(), features=tuple(features),
            sample_bad_rate=self.number(calibration, "sample_bad_rate", 1e-4, 1 - 1e-4),
            portfolio_bad_rate=self.number(calibration, "portfolio_bad_rate", 1e-4, 1 - 1e-4),
            base_points=self.number(points, "base", 0, 10_000),
            base_odds=self.number(points, "odds", 1e-3, 1e6),
            points_to_double_odds=self.number(points, "double_odds", 1, 1000),
            grades=grades, learner=str(learner),
            learner_params={k: v for k, v in training.items() if k not in ("learner", "data")},
            data=(self.path.parent / data).resolve() if isinstance(data, str) else None)
        if self.errors:
            raise SpecError(self.errors)
        return spec


def load_spec(path: Path) -> FeatureSpec:
    """Load and check ``features.yaml``; SpecError lists every problem as file:line:col."""
    return _SpecLoader(Path(path)).load()
