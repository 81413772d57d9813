"""The shape of every rule file, defined once: the loader validates each file against its model
(so it can never accept what an editor's schema refuses), and `rules/schema/*.schema.json`,
which editors use while the analyst types, are generated from the same models
(`loan-decision rules schemas`; a test keeps the committed files current).

The loader then checks what a shape cannot say — expressions, types, cross-references — and
gives its own, friendlier message where it has one for a problem; the model backs it up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.config import PROVIDERS
from service.engine.source import Located, Position, RuleError
from service.engine.tables import HIT_POLICIES
from service.schemas import AttachmentType, Occupation

REASON_CODE = r"^[A-Z][A-Z0-9_]{1,63}$"  # rule ids and reason codes: the bank sees them
NAME = r"^[a-z][a-z0-9_]{0,31}$"  # lists, arms, table columns, derived facts
LIST_KINDS = ("id_number", "phone", "device", "ip", "uscc")

Code = Annotated[str, Field(pattern=REASON_CODE)]
Name = Annotated[str, Field(pattern=NAME)]
Text = Annotated[str, Field(min_length=1)]
Expression = Annotated[str | bool | int | float, Field(description="A rule expression (docs/RULES.md).")]


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Message(Shape):
    """Customer-safe text in Chinese (the default) and English."""

    zh: Text
    en: Text


# --- validation.yaml, fraud.yaml ------------------------------------------------------------

class Rule(Shape):
    id: Code
    """The reason code."""
    description: Text
    """What the rule checks and why (its rationale)."""
    when: Expression
    """The rule fires when it is true."""
    action: Literal["decline", "refer", "flag"]
    message: Message


class RulesFile(Shape):
    """Every rule is evaluated; each one whose `when` holds adds its id as a reason code."""

    on_error: Literal["refer", "decline", "ignore"] = "refer"
    """What a rule that fails at run time (e.g. division by zero) counts as."""
    rules: list[Rule]


# --- lists.yaml, derived.yaml -----------------------------------------------------------------

class ListSpec(Shape):
    kind: Literal["id_number", "phone", "device", "ip", "uscc"]
    """What an entry is."""
    description: Text


class ListsFile(Shape):
    """The bank's black and grey lists that rules may ask about."""

    lists: dict[Name, ListSpec]


class Derived(Shape):
    expression: Expression
    description: Text | None = None


class DerivedFile(Shape):
    """Named expressions: facts computed from others, read by rules and tables as derived.NAME."""

    derived: dict[Name, Expression | Derived]


# --- products.yaml --------------------------------------------------------------------------

class Range(Shape):
    min: Annotated[float, Field(ge=0)]
    max: Annotated[float, Field(ge=0)]


class Review(Shape):
    """The manual-review channel for this product's referrals."""

    sla_minutes: Annotated[float, Field(ge=1, le=10080)] | None = None
    """A referral's deadline from submitted_at (default 10: the disbursement clock)."""
    four_eyes_above: Annotated[float, Field(ge=0)] | None = None
    """A reviewer's approval above this amount (CNY) waits for a second, different reviewer."""


class Product(Shape):
    name: str
    amount: Range
    """CNY."""
    terms: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
    age: Range
    occupations: list[Occupation] | None = None
    requires_business: bool | None = None
    requires_income: bool | None = None
    income_multiple: Annotated[float, Field(ge=0)] | None = None
    """Offer cap as a multiple of monthly income."""
    required_attachments: list[AttachmentType] | None = None
    required_checks: list[Literal[PROVIDERS]] | None = None  # type: ignore[valid-type]
    face_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    reference_rate: Annotated[float, Field(ge=0, le=1)]
    rate_tiers: Annotated[dict[str, Annotated[float, Field(ge=0, lt=1)]], Field(min_length=1)]
    models: dict[str, str] | None = None
    """Segment → model name."""
    review: Review | None = None


class ReviewReasons(Shape):
    """The reason codes reviewers may give, by outcome."""

    approve: Annotated[dict[Code, Message], Field(min_length=1)] | None = None
    decline: Annotated[dict[Code, Message], Field(min_length=1)] | None = None


class ProductsFile(Shape):
    """The products: amounts, terms, ages, checks, rate tiers and which model scores them."""

    products: Annotated[dict[str, Product], Field(min_length=1)]
    review_reasons: ReviewReasons | None = None


# --- strategy.yaml --------------------------------------------------------------------------

class Offer(Shape):
    amount: Expression
    limit: Expression
    term_months: Expression
    rate_tier: Expression
    """An expression giving a tier of the product, e.g. "'T1'"."""


class Row(Shape):
    """A row of a table in rows: the first whose `when` holds decides."""

    id: Text
    when: Expression
    outcome: Literal["approve", "decline", "refer"]
    reason: Code | None = None
    message: Message | None = None
    offer: Offer | None = None


Cell = Annotated[str | bool | int | float | list[str | bool | int | float] | None,
                 Field(description="'-', a value, a comparison ('>= 100'), a range ('[18..60]'), a list ([A, B]), "
                                   "'missing', 'not <cell>'; an output cell is an expression.")]


class ColumnRow(BaseModel):
    """A row of a table in columns: a cell per input column (absent: any value), its outcome,
    and for an approving row its outputs."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)
    __pydantic_extra__: dict[str, Cell] = Field(init=False)  # type: ignore[assignment]
    id: Text
    outcome: Literal["approve", "decline", "refer"]
    reason: Code | None = None


class ColumnTable(Shape):
    """A decision table in columns: named inputs, rows of cells, outputs read by the offer."""

    hit: Literal[HIT_POLICIES] = "first"  # type: ignore[valid-type]
    """first: the first row that holds decides; priority: the strongest outcome among the rows
    that hold; collect: every declining or referring row that holds gives its reason."""
    inputs: Annotated[dict[Name, Expression], Field(min_length=1)]
    """Column name → a fact or an expression."""
    outputs: list[Name] = []
    """What rows give, read by the offer as table.NAME."""
    reasons: dict[Code, Message] = {}
    """The message of each reason a row gives."""
    rows: Annotated[list[ColumnRow], Field(min_length=1)]
    offer: Offer | None = None


Table = Annotated[list[Row], Field(min_length=1)] | ColumnTable


class Arm(Shape):
    share: Annotated[float, Field(ge=0, le=1)] | None = None
    """Share of live traffic; live shares add up to 1."""
    shadow: Literal[True] | None = None
    """Evaluated and recorded beside every live decision, never returned."""
    table: Table | None = None
    """This arm's decision table; the main table if absent."""
    model: str | None = None
    """The model (models/NAME) that scores everything this arm decides."""


class Experiment(Shape):
    name: Text
    """Salts the assignment hash: a new name reshuffles applications between arms."""
    arms: Annotated[dict[Name, Arm], Field(min_length=1, max_length=8)]


class StrategyFile(Shape):
    """The decision table (in columns, or rows with a `when` each) and an optional experiment:
    live traffic split between named arms, shadow arms evaluated beside it."""

    on_error: Literal["refer", "decline"] = "refer"
    table: Table
    experiment: Experiment | None = None


# --- rules/tests/ ---------------------------------------------------------------------------

class Bounds(Shape):
    min: float | None = None
    max: float | None = None


class Expect(Shape):
    outcome: Literal["approve", "decline", "refer"] | None = None
    reasons: list[str] | str | None = None
    not_reasons: list[str] | str | None = None
    flags: list[str] | str | None = None
    strategy_row: str | None = None
    offer: dict[str, float | str | Bounds] | None = None


class Case(Shape):
    name: str
    base: str
    """A fixture name from fixtures.yaml."""
    arm: str | None = None
    """Run on this experiment arm (strategy.yaml experiment.arms)."""
    application: dict[str, Any] | None = None
    """Merged over the base application; null deletes a key."""
    facts: dict[str, Any] | None = None
    """Stage facts as recorded, e.g. verification.face.score."""
    lists: dict[str, list[Any]] | None = None
    expect: Expect


class TestsFile(Shape):
    """Rule test cases."""

    cases: list[Case]


class Fixture(Shape):
    application: dict[str, Any]
    """A complete application in the API's request shape."""
    facts: dict[str, Any] | None = None
    lists: dict[str, list[Any]] | None = None


class FixturesFile(Shape):
    """Base applications for rule tests."""

    fixtures: dict[str, Fixture]


SHAPES: dict[str, tuple[type[BaseModel], str]] = {  # schema file → model, title
    "rules": (RulesFile, "Validation or fraud rules"), "lists": (ListsFile, "Lists"),
    "derived": (DerivedFile, "Named expressions"), "products": (ProductsFile, "Products"),
    "strategy": (StrategyFile, "Strategy decision table"), "tests": (TestsFile, "Rule test cases"),
    "fixtures": (FixturesFile, "Rule test fixtures"),
}
FILE_SHAPES = {"validation.yaml": "rules", "fraud.yaml": "rules", "lists.yaml": "lists", "derived.yaml": "derived",
               "products.yaml": "products", "strategy.yaml": "strategy"}


def _without_null(schema: Any) -> Any:
    """Optional keys are optional, not nullable: drop the `null` pydantic adds for `| None`."""
    if isinstance(schema, dict):
        options = schema.get("anyOf")
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            only = rest[0] if len(rest) == 1 else {"anyOf": rest}
            schema = {k: v for k, v in schema.items() if k != "anyOf"} | only
            if schema.get("default") is None:
                schema.pop("default", None)
        if "patternProperties" in schema and "additionalProperties" not in schema:
            schema = schema | {"additionalProperties": False}  # as the model: keys must match
        return {k: _without_null(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_without_null(v) for v in schema]
    return schema


def json_schema(name: str) -> dict[str, Any]:
    model, title = SHAPES[name]
    generated = _without_null(model.model_json_schema())
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://loan-decision.dev/schema/{name}.schema.json", **generated, "title": title}


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SHAPES:
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(name), ensure_ascii=False, indent=2) + "\n")
        written.append(path)
    return written


def shape_errors(doc: Any, model: type[BaseModel], file: str) -> list[RuleError]:
    """What ``doc`` breaks of ``model``, each at the position of the value at fault."""
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        return [RuleError(_position(doc, error["loc"], file), _message(error)) for error in exc.errors()]
    return []


def _position(doc: Any, loc: tuple[Any, ...], file: str) -> Position:
    here, position = doc, doc.position if isinstance(doc, Located) else Position(file, 1, 1)
    for key in loc:
        if isinstance(here, Located) and key in here:
            position, here = here.at(key), here[key]
        elif isinstance(here, list) and isinstance(key, int) and key < len(here):
            here = here[key]
            position = here.position if isinstance(here, Located) else position
        else:
            break  # a union's branch name, or a key that is missing: the parent is the place
    return position


def _message(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and ("[" in p or p in _BRANCHES)))
    return f"{where}: {error['msg']}" if where else error["msg"]


_BRANCHES = {"str", "bool", "int", "float", "list", "dict", "none", "Derived", "ColumnTable", "function-after"}
