"""Why a model gave the points it gave: the points each input cost against its best attribute.

A scorecard reports, for each characteristic, the points the applicant's attribute earns
against the best attribute of that characteristic. The same question for any model:

- An *input* is what an applicant can be told about: the features reading one ``from``
  expression are one input (the champion reads the amount both as a number and in bands).
- Its *best attribute* is, among the candidate values of that input — its categories, or the
  values recorded for it in the model's training reference (``metrics.json``: ``reference``) —
  the one giving the most points with the applicant's other inputs as they are.
- The *reference applicant* is the applicant with every input at its best attribute.
- Each input's contribution is its Shapley value in the game "points with these inputs at the
  applicant's values and the others at the reference's" (interventional Shapley values against
  one baseline). Contributions add up exactly to the applicant's points minus the reference's:
  each sampled order of inputs telescopes to that difference, so their mean does too.

For an additive model (the logistic scorecard: points are linear in the log-odds, every input
one-hot) every order gives the same contributions, so two orders are exact: each contribution
is the points of the applicant's attribute minus the points of the best one, as a scorecard
reports it. For the others (the champion's logistic regression and forest, PDs averaged) the
orders are sampled — ``SAMPLES`` of them in antithetic pairs, seeded by the decision id, so the
same decision always gets the same explanation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.engine.messages import Message
from service.scoring.features import Feature, FeatureSpec
from service.scoring.model import OnnxModel

SAMPLES = 64  # orders of inputs for a non-additive model (32 antithetic pairs)
ADDITIVE = ("scorecard",)  # learners whose points are a sum over inputs
TOP = 4  # the factors an explanation names


@dataclass(frozen=True)
class Input:
    """The features of a model that read one expression: one thing to explain."""

    name: str
    label: Message
    features: tuple[Feature, ...]
    positions: tuple[int, ...]  # their columns in the encoded row (not always adjacent)


def inputs(spec: FeatureSpec) -> list[Input]:
    """The spec's inputs in column order of their first feature."""
    groups: dict[str, list[tuple[Feature, int]]] = {}
    offset = 0
    for feature in spec.features:
        groups.setdefault(feature.source, []).append((feature, offset))
        offset += len(feature.columns)
    result = []
    for members in groups.values():
        first = members[0][0]
        label = next((f.label for f, _ in members if f.label is not None), None) or Message(first.name, first.name)
        positions = tuple(i for f, start in members for i in range(start, start + len(f.columns)))
        result.append(Input(first.name, label, tuple(f for f, _ in members), positions))
    return result


def encode_input(item: Input, value: Any) -> list[float] | None:
    """The columns of ``item`` for ``value`` (in ``positions`` order); None if it would be refused."""
    out: list[float] = []
    for feature in item.features:
        if not feature.encode(value, out):
            return None
    return out


def candidates(item: Input, reference: dict[str, list[Any]], value: Any) -> list[Any]:
    """The values an input's best attribute is chosen from."""
    first = item.features[0]
    if first.encoding == "categories":
        values: list[Any] = list(first.levels)
        if first.missing == "category":
            values.append(None)
    elif first.boolean:
        values = [False, True]
    else:
        values = list(reference.get(item.name, ()))
        for feature in item.features:  # one value inside each band the model distinguishes
            if feature.encoding == "bands":
                edges = list(feature.levels)
                values += [edges[0] / 2 if 0 < edges[0] < 2 else edges[0] - 1] + edges
                if feature.missing == "category":
                    values.append(None)
    if value not in values:
        values.append(value)
    return values


@dataclass(frozen=True)
class Factor:
    input: str
    label: Message
    value: Any
    best: Any
    points: float  # the contribution: <= 0 lowered the score against the best attribute


@dataclass(frozen=True)
class Explanation:
    model: str
    method: str  # exact | shapley-sampled
    points: float  # the applicant's points (unrounded)
    reference_points: float  # the reference applicant's
    factors: list[Factor]  # every input, the most points lost first

    @property
    def top(self) -> list[Factor]:
        return [f for f in self.factors if f.points < -0.05][:TOP]


def explain(model: OnnxModel, raw: dict[str, Any], seed: str, samples: int = SAMPLES) -> Explanation:
    """The explanation of ``model``'s points for the raw feature values ``raw`` (a decision's
    trace keeps them). Raises ValueError if ``raw`` does not encode (a refused feature)."""
    spec = model.spec
    items = inputs(spec)
    width = len(spec.columns)
    row = _row(spec, raw)
    x = np.array(row, dtype=np.float64)
    values = [raw.get(item.features[0].name) for item in items]

    def points(rows: np.ndarray) -> np.ndarray:
        return spec.sample_points(model.sample_pds(rows.astype(np.float32)))

    # The best attribute of each input, the others held at the applicant's values.
    tried: list[tuple[int, Any, list[float]]] = []
    for i, item in enumerate(items):
        for candidate in candidates(item, model.reference, values[i]):
            encoded = encode_input(item, candidate)
            if encoded is not None:
                tried.append((i, candidate, encoded))
    batch = np.repeat(x[None, :], len(tried), axis=0)
    for n, (i, _, encoded) in enumerate(tried):
        batch[n, list(items[i].positions)] = encoded
    scored = points(batch)
    best: list[tuple[float, Any, list[float]]] = [(-np.inf, None, [])] * len(items)
    for n, (i, candidate, encoded) in enumerate(tried):
        if scored[n] > best[i][0]:
            best[i] = (float(scored[n]), candidate, encoded)
    reference = x.copy()
    for i, item in enumerate(items):
        reference[list(item.positions)] = best[i][2]

    additive = spec.learner in ADDITIVE
    orders = _orders(len(items), 2 if additive else max(2, samples), seed)
    # Row k*(n+1)+j: the reference with the first j inputs of order k switched to the applicant's.
    n_items = len(items)
    rows = np.repeat(reference[None, :], len(orders) * (n_items + 1), axis=0).reshape(len(orders), n_items + 1, width)
    for k, order in enumerate(orders):
        walk = rows[k]  # a view: the reference, then one more input at the applicant's value per row
        for j, i in enumerate(order):
            cols = list(items[i].positions)
            walk[j + 1:, cols] = x[cols]
    path = points(rows.reshape(-1, width)).reshape(len(orders), n_items + 1)
    gains = np.diff(path, axis=1)  # gains[k, j]: what switching order[k][j] added
    contribution = np.zeros(n_items)
    for k, order in enumerate(orders):
        contribution[list(order)] += gains[k]
    contribution /= len(orders)
    factors = [Factor(item.name, item.label, _shown(item, values[i]), _shown(item, best[i][1]),
                      float(contribution[i])) for i, item in enumerate(items)]
    factors.sort(key=lambda f: f.points)
    return Explanation(model.version, "exact" if additive else "shapley-sampled", float(path[0, -1]),
                       float(path[0, 0]), factors)


def _shown(item: Input, value: Any) -> Any:
    """A value as the applicant knows it: a missing one by its category's name (``no_account``)."""
    first = item.features[0]
    if value is None and first.missing == "category":
        return first.missing_value
    return round(value, 4) if isinstance(value, float) else value


def _row(spec: FeatureSpec, raw: dict[str, Any]) -> list[float]:
    row: list[float] = []
    refused = [f.name for f in spec.features if not f.encode(raw.get(f.name), row)]
    if refused:
        raise ValueError(f"refused features: {', '.join(refused)}")
    return row


def _orders(n: int, count: int, seed: str) -> list[list[int]]:
    """``count`` orders of ``n`` inputs in antithetic pairs (an order, then its reverse)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    orders: list[list[int]] = []
    while len(orders) < count:
        order = [int(i) for i in rng.permutation(n)]
        orders += [order, order[::-1]]
    return orders[:count]
