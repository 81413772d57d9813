"""A ruleset: the risk team's YAML files under rules/, checked and compiled as one version.

Loading never half-succeeds: it returns either a Ruleset or the full list of errors, each with
file:line:column, the rule id and a one-line reason. The version is a content hash of the files,
so the same files always give the same version and any edit gives a new one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config import PROVIDERS
from service.engine.experiment import CHAMPION, Arm, Experiment
from service.engine.expressions import Compiled, ExpressionError, compile_expression
from service.engine.facts import BOOL, CATALOGUE, LIST_SOURCES, NUMBER, STRING
from service.engine.messages import LANGUAGES, Message
from service.engine.named import DerivedFact, compile_named
from service.engine.shapes import FILE_SHAPES, LIST_KINDS, NAME, SHAPES, shape_errors
from service.engine.shapes import REASON_CODE as REASON_PATTERN
from service.engine.source import Located, Position, RuleError, load_yaml
from service.engine.tables import HIT_POLICIES, RESERVED_OUTPUTS, CellError, condition, is_path

RULE_FILES = ("products.yaml", "lists.yaml", "derived.yaml", "validation.yaml", "fraud.yaml", "strategy.yaml")
ACTIONS = ("decline", "refer", "flag")
OUTCOMES = ("approve", "decline", "refer")
CHECKS = PROVIDERS
ERROR_POLICIES = ("refer", "decline", "ignore")
REASON_CODE = re.compile(REASON_PATTERN)
ARM_NAME = COLUMN = re.compile(NAME)
MAX_ARMS = 8


@dataclass(frozen=True)
class Product:
    code: str
    name: str
    min_amount: float
    max_amount: float
    terms: tuple[int, ...]
    min_age: int
    max_age: int
    occupations: tuple[str, ...]
    requires_business: bool
    requires_income: bool
    income_multiple: float | None  # offer cap as a multiple of monthly income; None: no cap
    required_attachments: tuple[str, ...]
    required_checks: tuple[str, ...]
    face_threshold: float
    reference_rate: float
    rate_tiers: dict[str, float]
    models: dict[str, str]  # segment → model name (scoring issue)
    review_sla_s: float = 600.0  # a referral's deadline from submitted_at: the disbursement clock
    four_eyes_above: float | None = None  # a reviewer's approval above this amount needs a second one

    def facts(self) -> dict[str, Any]:
        return {
            "product.known": True, "product.code": self.code,
            "product.min_amount": self.min_amount, "product.max_amount": self.max_amount,
            "product.terms": list(self.terms), "product.min_age": self.min_age,
            "product.max_age": self.max_age, "product.occupations": list(self.occupations),
            "product.requires_business": self.requires_business,
            "product.requires_income": self.requires_income,
            "product.income_multiple": self.income_multiple,
            "product.required_attachments": list(self.required_attachments),
            "product.face_threshold": self.face_threshold,
            "product.reference_rate": self.reference_rate,
        }


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    when: Compiled
    action: str
    message: Message
    position: Position
    # The rule's trace entries, built once and shared by every decision (never mutated).
    passed: dict[str, str] = field(init=False, repr=False, compare=False)
    hit: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", {"id": self.id, "result": "pass"})
        object.__setattr__(self, "hit", {"id": self.id, "result": "hit", "action": self.action})


@dataclass(frozen=True)
class RuleSet:
    """The rules of one stage (validation or fraud): every rule is evaluated."""

    stage: str
    rules: tuple[Rule, ...]
    on_error: str  # what a rule that raises at run time counts as


@dataclass(frozen=True)
class OfferSpec:
    amount: Compiled
    limit: Compiled
    term_months: Compiled
    rate_tier: Compiled


@dataclass(frozen=True)
class StrategyRow:
    id: str
    when: Compiled
    outcome: str
    reason_code: str | None
    message: Message | None
    offer: OfferSpec | None
    position: Position
    outputs: dict[str, Compiled] = field(default_factory=dict)  # a column table's output cells


@dataclass(frozen=True)
class Strategy:
    rows: tuple[StrategyRow, ...]
    on_error: str
    hit: str = "first"  # first | priority | collect (column tables)
    outputs: tuple[str, ...] = ()  # a column table's output columns, read by its offer as table.NAME


@dataclass(frozen=True)
class ListSpec:
    name: str
    kind: str  # what its entries are: id_number | phone | device | ip | uscc
    description: str


@dataclass(frozen=True)
class Ruleset:
    version: str
    directory: Path
    products: dict[str, Product]
    lists: dict[str, ListSpec]
    validation: RuleSet
    fraud: RuleSet
    strategy: Strategy
    experiment: Experiment
    # The reason codes a reviewer may give, by outcome (approve | decline): code → message.
    review_reasons: dict[str, dict[str, Message]] = field(default_factory=dict)
    derived: dict[str, DerivedFact] = field(default_factory=dict)  # derived.yaml, read as derived.NAME

    @property
    def list_kinds(self) -> dict[str, str]:
        """Declared list name → what its entries are (what a list store needs to know)."""
        return {name: spec.kind for name, spec in self.lists.items()}


class RulesetError(Exception):
    """Every problem found: positioned load errors, or the report lines of failing rule tests
    (which carry their own case positions)."""

    def __init__(self, errors: list[RuleError] | list[str]) -> None:
        super().__init__(f"{len(errors)} error(s) in the ruleset")
        self.errors = errors


def display_path(path: Path) -> str:
    """The path as the analyst would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def version_of(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in RULE_FILES:
        path = directory / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"") + b"\0")
    return "rs-" + digest.hexdigest()[:12]


class _Loader:
    def __init__(self, directory: Path, models: set[str] | None) -> None:
        self.directory = directory
        self.models = models  # the model names that exist; None: not checked
        self.errors: list[RuleError] = []
        self.products_doc: Located | None = None
        # What expressions may read: the catalogue, and the named expressions of derived.yaml.
        self.catalogue: dict[str, str] = CATALOGUE
        self.named: dict[str, Any] = {}
        self.shape: list[RuleError] = []  # what the files break of their shapes (shapes.py)

    def error(self, position: Position, message: str, rule_id: str | None = None) -> None:
        self.errors.append(RuleError(position, message, rule_id))

    def document(self, name: str) -> Located | None:
        path = self.directory / name
        doc, errors = load_yaml(path, display_path(path))
        self.errors.extend(errors)
        if doc is not None:
            self.shape += shape_errors(doc, SHAPES[FILE_SHAPES[name]][0], display_path(path))
        if doc is None and not errors:
            self.error(Position(str(path), 1, 1), "the file is empty")
        elif doc is not None and not isinstance(doc, Located):
            self.error(Position(str(path), 1, 1), "the file must hold a mapping")
            return None
        return doc

    def expression(self, owner: Located, key: str, expect: str | None, rule_id: str | None,
                   catalogue: dict[str, str] | None = None) -> Compiled | None:
        if key not in owner:
            self.error(owner.position, f"'{key}' is required", rule_id)
            return None
        try:
            return compile_expression(owner[key], catalogue or self.catalogue, expect, self.named)
        except ExpressionError as exc:
            self.error(owner.locate(key, exc.offset), exc.message, rule_id)
            return None

    def text(self, owner: Located, key: str, rule_id: str | None, required: bool = True) -> str:
        value = owner.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.error(owner.at(key), f"'{key}' must be non-empty text", rule_id)
            return ""
        return value.strip()

    def message(self, owner: Located, key: str, rule_id: str | None) -> Message:
        """A message to the applicant: ``{zh: …, en: …}``, both non-empty."""
        value = owner.get(key)
        if not isinstance(value, Located) or set(value) != set(LANGUAGES) \
                or not all(isinstance(value[lang], str) and value[lang].strip() for lang in LANGUAGES):
            self.error(owner.at(key), f"'{key}' must give the text in every language: "
                                      "{zh: '中文', en: 'English'}", rule_id)
            return Message("", "")
        return Message(value["zh"].strip(), value["en"].strip())

    def number(self, owner: Located, key: str, rule_id: str, default: float | None = None,
               low: float = 0.0, high: float = float("inf")) -> float:
        value = owner.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.error(owner.at(key), f"'{key}' must be a number from {low:g} to {high:g}", rule_id)
            return 0.0
        return float(value)

    def unknown_keys(self, owner: Located, allowed: set[str], rule_id: str | None) -> None:
        for key in owner:
            if key not in allowed and not key.startswith("$"):
                self.error(owner.at(key), f"unknown key '{key}' (allowed: {', '.join(sorted(allowed))})", rule_id)

    def choice(self, owner: Located, key: str, options: tuple[str, ...], rule_id: str | None,
               default: str | None = None) -> str:
        value = owner.get(key, default)
        if value not in options:
            self.error(owner.at(key), f"'{key}' must be one of {', '.join(options)}", rule_id)
            return options[0]
        return value

    def add_shape_errors(self) -> None:
        """The files' shape problems that no friendlier message above already points at."""
        reported = {(e.position.file, e.position.line) for e in self.errors}
        self.errors += [e for e in self.shape if (e.position.file, e.position.line) not in reported]

    # --- named expressions ------------------------------------------------------------------

    def derived(self) -> dict[str, DerivedFact]:
        """derived.yaml (optional): facts named once and read as derived.NAME by rules and
        tables; each may read the ones above it."""
        if not (self.directory / "derived.yaml").exists():
            return {}
        doc = self.document("derived.yaml")
        if doc is None:
            return {}
        self.unknown_keys(doc, {"derived"}, None)
        entries = doc.get("derived")
        if not isinstance(entries, Located):
            self.error(doc.at("derived"), "'derived' must map names to expressions: {dti: loan.instalment / …}")
            return {}
        named = compile_named(entries, self.catalogue, self.error)
        self.catalogue, self.named = named.catalogue, named.trees
        return named.facts

    # --- products ---------------------------------------------------------------------------

    def products(self) -> dict[str, Product]:
        doc = self.products_doc = self.document("products.yaml")
        products: dict[str, Product] = {}
        if doc is None:
            return products
        self.unknown_keys(doc, {"products", "review_reasons"}, None)
        entries = doc.get("products")
        if not isinstance(entries, Located) or not entries:
            self.error(doc.at("products"), "'products' must map product codes to their settings")
            return products
        for code, spec in entries.items():
            if not isinstance(spec, Located):
                self.error(entries.at(code), "a product must be a mapping", code)
                continue
            self.unknown_keys(spec, {"name", "amount", "terms", "age", "occupations", "requires_business",
                                     "requires_income", "income_multiple", "required_attachments",
                                     "required_checks", "face_threshold", "reference_rate",
                                     "rate_tiers", "models", "review"}, code)
            amount = spec.get("amount") if isinstance(spec.get("amount"), Located) else None
            age = spec.get("age") if isinstance(spec.get("age"), Located) else None
            if amount is None or age is None:
                self.error(spec.position, "'amount' and 'age' must be mappings with min and max", code)
                continue
            terms = spec.get("terms")
            if not (isinstance(terms, list) and terms and all(isinstance(t, int) and t > 0 for t in terms)):
                self.error(spec.at("terms"), "'terms' must be a list of whole months", code)
                terms = []
            tiers = spec.get("rate_tiers")
            if not (isinstance(tiers, Located) and tiers and all(
                    isinstance(r, (int, float)) and 0 <= r < 1 for r in tiers.values())):
                self.error(spec.at("rate_tiers"), "'rate_tiers' must map tier names to annual rates in [0, 1)", code)
                tiers = {}
            checks = spec.get("required_checks", [])
            if not (isinstance(checks, list) and set(checks) <= set(CHECKS)):
                self.error(spec.at("required_checks"), f"'required_checks' may list {', '.join(CHECKS)}", code)
                checks = []
            elif "business" in checks and spec.get("requires_business") is not True:
                self.error(spec.at("required_checks"), "the 'business' check needs 'requires_business: true' "
                                                       "(a business to look up)", code)
            models = spec.get("models", {})
            if not isinstance(models, Located) or not all(isinstance(m, str) for m in models.values()):
                self.error(spec.at("models"), "'models' must map segments to model names", code)
                models = {}
            for segment, model in models.items():
                if self.models is not None and model not in self.models:
                    known = ", ".join(sorted(self.models)) or "none"
                    self.error(models.at(segment), f"segment '{segment}' routes to model '{model}', "
                                                   f"which is not loaded (models: {known})", code)
            sla_s, four_eyes = self.review(spec, code)
            product = Product(
                code=code, name=self.text(spec, "name", code),
                min_amount=self.number(amount, "min", code), max_amount=self.number(amount, "max", code),
                terms=tuple(terms), min_age=int(self.number(age, "min", code, high=120)),
                max_age=int(self.number(age, "max", code, high=120)),
                occupations=tuple(spec.get("occupations") or ()),
                requires_business=bool(spec.get("requires_business", False)),
                requires_income=bool(spec.get("requires_income", False)),
                income_multiple=(self.number(spec, "income_multiple", code, high=1000)
                                 if "income_multiple" in spec else None),
                required_attachments=tuple(spec.get("required_attachments") or ()),
                required_checks=tuple(checks),
                face_threshold=self.number(spec, "face_threshold", code, default=0.8, high=1),
                reference_rate=self.number(spec, "reference_rate", code, high=1),
                rate_tiers={str(k): float(v) for k, v in tiers.items()}, models=dict(models),
                review_sla_s=sla_s, four_eyes_above=four_eyes)
            if product.min_amount > product.max_amount or product.min_age > product.max_age:
                self.error(spec.position, "a min is above its max", code)
            products[code] = product
        return products

    def review(self, spec: Located, code: str) -> tuple[float, float | None]:
        """(the review SLA in seconds, the four-eyes amount) of a product's ``review`` block."""
        block = spec.get("review")
        if block is None:
            return 600.0, None
        if not isinstance(block, Located):
            self.error(spec.at("review"), "'review' must be a mapping: sla_minutes, four_eyes_above", code)
            return 600.0, None
        self.unknown_keys(block, {"sla_minutes", "four_eyes_above"}, code)
        minutes = self.number(block, "sla_minutes", code, default=10, low=1, high=7 * 24 * 60)
        four_eyes = self.number(block, "four_eyes_above", code) if "four_eyes_above" in block else None
        return minutes * 60, four_eyes

    def review_reasons(self) -> dict[str, dict[str, Message]]:
        """products.yaml's ``review_reasons``: {approve: {CODE: message}, decline: {…}}."""
        doc = self.products_doc
        block = doc.get("review_reasons") if doc is not None else None
        if doc is None or block is None:
            return {}
        reasons: dict[str, dict[str, Message]] = {}
        if not isinstance(block, Located) or set(block) - {"approve", "decline"}:
            self.error(doc.at("review_reasons"), "'review_reasons' maps approve and decline to {CODE: message}")
            return reasons
        for outcome, codes in block.items():
            if not isinstance(codes, Located) or not codes:
                self.error(block.at(outcome), f"'{outcome}' must map reason codes to messages")
                continue
            for code in codes:
                if not isinstance(code, str) or not REASON_CODE.fullmatch(code):
                    self.error(codes.at(code), "a reason code is UPPER_SNAKE_CASE")
                    continue
                reasons.setdefault(outcome, {})[code] = self.message(codes, code, code)
        return reasons

    # --- lists ------------------------------------------------------------------------------

    def lists(self) -> dict[str, ListSpec]:
        doc = self.document("lists.yaml")
        specs: dict[str, ListSpec] = {}
        if doc is None:
            return specs
        self.unknown_keys(doc, {"lists"}, None)
        entries = doc.get("lists")
        if not isinstance(entries, Located):
            self.error(doc.at("lists"), "'lists' must map list names to {kind, description}")
            return specs
        for name, spec in entries.items():
            if not (isinstance(name, str) and name.isidentifier() and name.islower()):
                self.error(entries.at(name), "a list name must be lower_snake_case", str(name))
                continue
            if not isinstance(spec, Located):
                self.error(entries.at(name), "a list must be a mapping with 'kind' and 'description'", name)
                continue
            self.unknown_keys(spec, {"kind", "description"}, name)
            specs[name] = ListSpec(name, self.choice(spec, "kind", LIST_KINDS, name),
                                   self.text(spec, "description", name))
        return specs

    def check_list_reads(self, lists: dict[str, ListSpec], uses: list[tuple[Position, str, Compiled]]) -> None:
        """Every in_list/any_in_list names a declared list and reads the application's own
        identifiers of that list's kind (those are what gathering looks up)."""
        for position, rule_id, compiled in uses:
            for name, path, many in sorted(compiled.list_reads, key=str):
                spec = lists.get(name)
                if spec is None:
                    known = ", ".join(sorted(lists)) or "none"
                    self.error(position, f"list '{name}' is not declared in lists.yaml (declared: {known})",
                               rule_id)
                    continue
                sources = LIST_SOURCES[spec.kind]
                if path not in sources:
                    self.error(position, f"list '{name}' holds {spec.kind} entries: it can be asked about "
                                         f"{' or '.join(sources)}", rule_id)
                elif sources[path] != many:
                    function = "any_in_list" if sources[path] else "in_list"
                    self.error(position, f"{path} holds {'several values' if sources[path] else 'one value'}: "
                                         f"use {function}('{name}', {path})", rule_id)

    # --- validation and fraud rules ---------------------------------------------------------

    def rules(self, name: str, stage: str) -> RuleSet:
        doc = self.document(name)
        if doc is None:
            return RuleSet(stage, (), "refer")
        self.unknown_keys(doc, {"rules", "on_error"}, None)
        on_error = self.choice(doc, "on_error", ERROR_POLICIES, None, default="refer")
        entries = doc.get("rules")
        if not isinstance(entries, list):
            self.error(doc.at("rules"), "'rules' must be a list of rules")
            return RuleSet(stage, (), on_error)
        rules, seen = [], set()
        for entry in entries:
            if not isinstance(entry, Located):
                self.error(doc.at("rules"), "each rule must be a mapping")
                continue
            rule_id = entry.get("id")
            if not isinstance(rule_id, str) or not REASON_CODE.fullmatch(rule_id):
                self.error(entry.at("id"), "'id' must be an UPPER_SNAKE_CASE reason code", str(rule_id))
                continue
            if rule_id in seen:
                self.error(entry.at("id"), "duplicate rule id", rule_id)
            seen.add(rule_id)
            self.unknown_keys(entry, {"id", "description", "when", "action", "message"}, rule_id)
            description = self.text(entry, "description", rule_id)
            message = self.message(entry, "message", rule_id)
            action = self.choice(entry, "action", ACTIONS, rule_id)
            when = self.expression(entry, "when", BOOL, rule_id)
            if when is not None:
                rules.append(Rule(rule_id, description, when, action, message, entry.position))
        return RuleSet(stage, tuple(rules), on_error)

    # --- strategy table ---------------------------------------------------------------------

    def strategy(self, rule_ids: set[str]) -> tuple[Strategy, Experiment]:
        doc = self.document("strategy.yaml")
        if doc is None:
            return Strategy((), "refer"), _single(Strategy((), "refer"))
        self.unknown_keys(doc, {"table", "on_error", "experiment"}, None)
        on_error = self.choice(doc, "on_error", ("refer", "decline"), None, default="refer")
        main = self.table(doc, rule_ids, on_error)
        if "experiment" not in doc:
            return main, _single(main)
        return main, self.experiment(doc, main, rule_ids)

    def table(self, owner: Located, rule_ids: set[str], on_error: str, arm: str | None = None) -> Strategy:
        """A decision table: rows with a `when` each (first hit), or columns (see tables.py)."""
        if isinstance(owner.get("table"), Located):
            return self.column_table(owner["table"], rule_ids, on_error, arm)
        return Strategy(self.row_table(owner, rule_ids, arm), on_error)

    def row_table(self, owner: Located, rule_ids: set[str], arm: str | None) -> tuple[StrategyRow, ...]:
        entries = owner.get("table")
        if not isinstance(entries, list) or not entries:
            self.error(owner.at("table"), "'table' must be a non-empty list of rows", arm)
            return ()
        rows = []
        for entry in entries:
            if not isinstance(entry, Located):
                self.error(owner.at("table"), "each row must be a mapping", arm)
                continue
            row_id = entry.get("id")
            if not isinstance(row_id, str) or not row_id:
                self.error(entry.position, "each row needs an 'id'", arm)
                continue
            self.unknown_keys(entry, {"id", "when", "outcome", "reason", "message", "offer"}, row_id)
            when = self.expression(entry, "when", BOOL, row_id)
            outcome = self.choice(entry, "outcome", OUTCOMES, row_id)
            reason = message = None
            offer = None
            if outcome == "approve":
                offer_doc = entry.get("offer")
                if not isinstance(offer_doc, Located):
                    self.error(entry.position, "an approve row needs an 'offer'", row_id)
                else:
                    self.unknown_keys(offer_doc, {"amount", "limit", "term_months", "rate_tier"}, row_id)
                    amount, limit, term, tier = (self.expression(offer_doc, k, t, row_id) for k, t in (
                        ("amount", NUMBER), ("limit", NUMBER), ("term_months", NUMBER), ("rate_tier", STRING)))
                    offer = (OfferSpec(amount, limit, term, tier)
                             if amount and limit and term and tier else None)
            else:
                reason = entry.get("reason")
                if not isinstance(reason, str) or not REASON_CODE.fullmatch(reason):
                    self.error(entry.at("reason"), "a decline/refer row needs an UPPER_SNAKE_CASE 'reason'", row_id)
                elif reason in rule_ids:
                    self.error(entry.at("reason"), f"reason '{reason}' is already a rule id", row_id)
                message = self.message(entry, "message", row_id)
            if when is not None:
                rows.append(StrategyRow(row_id, when, outcome, reason, message, offer, entry.position))
        last = entries[-1]
        if isinstance(last, Located) and last.get("when") is not True:
            self.error(last.at("when") if isinstance(last, Located) else owner.position,
                       "the last row must be a catch-all ('when: true')", last.get("id"))
        return tuple(rows)

    def column_table(self, spec: Located, rule_ids: set[str], on_error: str, arm: str | None) -> Strategy:
        """A table in columns: named inputs, rows of cells, output columns, one offer."""
        self.unknown_keys(spec, {"hit", "inputs", "outputs", "reasons", "rows", "offer"}, arm)
        hit = self.choice(spec, "hit", HIT_POLICIES, arm, default="first")
        inputs: dict[str, str] = {}  # column → its expression's text
        inputs_doc = spec.get("inputs")
        if not isinstance(inputs_doc, Located) or not inputs_doc:
            self.error(spec.at("inputs"), "'inputs' must name the columns: {grade: score.grade, …}", arm)
        else:
            for column in inputs_doc:
                if not COLUMN.fullmatch(column) or column in RESERVED_OUTPUTS + ("id",):
                    self.error(inputs_doc.at(column), f"'{column}': a column is lower_snake_case, not id, "
                                                      "outcome or reason", arm)
                elif self.expression(inputs_doc, column, None, column) is not None:
                    inputs[column] = str(inputs_doc[column]).strip()
        outputs_doc = spec.get("outputs", [])
        outputs = tuple(o for o in outputs_doc if isinstance(o, str)) if isinstance(outputs_doc, list) else ()
        for name in outputs:
            if not COLUMN.fullmatch(name) or name in inputs or name in RESERVED_OUTPUTS + ("id",):
                self.error(spec.at("outputs"), f"output '{name}': lower_snake_case, not an input, id, outcome "
                                               "or reason", arm)
        reasons_doc = spec.get("reasons", Located())
        reasons: dict[str, Message] = {}
        if isinstance(reasons_doc, Located):
            for code in reasons_doc:
                if not REASON_CODE.fullmatch(code) or code in rule_ids:
                    self.error(reasons_doc.at(code), f"'{code}': an UPPER_SNAKE_CASE code that is no rule's id", arm)
                reasons[code] = self.message(reasons_doc, code, code)
        rows_doc = spec.get("rows")
        if not isinstance(rows_doc, list) or not rows_doc:
            self.error(spec.at("rows"), "'rows' must be a non-empty list", arm)
            return Strategy((), on_error, hit, outputs)
        kinds: dict[str, str] = {}  # output column → type, from its cells
        parsed = []
        for entry in rows_doc:
            row = self.column_row(entry, spec, inputs, outputs, reasons, kinds)
            if row is not None:
                parsed.append(row)
        offer = self.table_offer(spec, kinds, parsed, arm)
        rows = tuple(StrategyRow(row_id, when, outcome, reason, reasons.get(reason or ""),
                                 offer if outcome == "approve" else None, position, cells)
                     for row_id, when, outcome, reason, position, cells in parsed)
        if hit != "collect" and parsed and parsed[-1][1].text != "true":
            self.error(parsed[-1][4], f"with hit policy '{hit}', the last row must be a catch-all that holds for "
                                      "every application (every input cell '-')", parsed[-1][0])
        return Strategy(rows, on_error, hit, outputs)

    def column_row(self, entry: Any, spec: Located, inputs: dict[str, str], outputs: tuple[str, ...],
                   reasons: dict[str, Message], kinds: dict[str, str]) -> tuple | None:
        if not isinstance(entry, Located) or not isinstance(entry.get("id"), str) or not entry["id"]:
            self.error(entry.position if isinstance(entry, Located) else spec.at("rows"), "each row needs an 'id'")
            return None
        row_id = entry["id"]
        self.unknown_keys(entry, {"id", "outcome", "reason", *inputs, *outputs}, row_id)
        conditions, ok = [], True
        for column, source in inputs.items():
            try:
                text = condition(source, is_path(source), entry.get(column))
                if text is not None:
                    compile_expression(text, self.catalogue, BOOL, self.named)
                    conditions.append(f"({text})")
            except (CellError, ExpressionError) as exc:
                message = exc.message if isinstance(exc, ExpressionError) else str(exc)
                self.error(entry.at(column), f"column '{column}': {message}", row_id)
                ok = False
        outcome = self.choice(entry, "outcome", OUTCOMES, row_id)
        reason = entry.get("reason")
        if outcome != "approve" and reason not in reasons:
            self.error(entry.at("reason"), "a decline/refer row names a reason declared under the table's "
                                           f"'reasons' ({', '.join(reasons) or 'none declared'})", row_id)
            ok = False
        cells: dict[str, Compiled] = {}
        for name in outputs:
            if name in entry and (compiled := self.expression(entry, name, None, row_id)) is not None:
                if kinds.setdefault(name, compiled.type) != compiled.type and "any" not in (kinds[name], compiled.type):
                    self.error(entry.at(name), f"output '{name}' is a {kinds[name]} in other rows, "
                                               f"a {compiled.type} here", row_id)
                cells[name] = compiled
        if not ok:
            return None
        when = compile_expression(" and ".join(conditions) or "true", self.catalogue, BOOL, self.named)
        return row_id, when, outcome, reason if outcome != "approve" else None, entry.position, cells

    def table_offer(self, spec: Located, kinds: dict[str, str], rows: list[tuple], arm: str | None) -> OfferSpec | None:
        """The one offer of a column table: its expressions may read the row's outputs as
        table.NAME; an approving row must give every output the offer reads."""
        approving = [row for row in rows if row[2] == "approve"]
        offer_doc = spec.get("offer")
        if not approving:
            return None
        if not isinstance(offer_doc, Located):
            self.error(spec.position, "a table with approve rows needs an 'offer'", arm)
            return None
        self.unknown_keys(offer_doc, {"amount", "limit", "term_months", "rate_tier"}, arm)
        catalogue = self.catalogue | {f"table.{name}": kind for name, kind in kinds.items()}
        parts = [self.expression(offer_doc, key, kind, arm, catalogue) for key, kind in (
            ("amount", NUMBER), ("limit", NUMBER), ("term_months", NUMBER), ("rate_tier", STRING))]
        if not all(parts):
            return None
        read = {f.removeprefix("table.") for part in parts if part for f in part.fields if f.startswith("table.")}
        for row_id, _, _, _, position, cells in approving:
            if missing := sorted(read - set(cells)):
                self.error(position, f"an approve row gives every output the offer reads: {', '.join(missing)}", row_id)
        amount, limit, term, tier = parts
        assert amount and limit and term and tier
        return OfferSpec(amount, limit, term, tier)

    def experiment(self, doc: Located, main: Strategy, rule_ids: set[str]) -> Experiment:
        spec = doc["experiment"]
        if not isinstance(spec, Located):
            self.error(doc.at("experiment"), "'experiment' must be a mapping with 'name' and 'arms'")
            return _single(main)
        self.unknown_keys(spec, {"name", "arms"}, None)
        name = self.text(spec, "name", None)
        arms_doc = spec.get("arms")
        if not isinstance(arms_doc, Located) or not arms_doc:
            self.error(spec.at("arms"), "'arms' must map arm names to {share | shadow, table, model}")
            return _single(main)
        if len(arms_doc) > MAX_ARMS:
            self.error(spec.at("arms"), f"at most {MAX_ARMS} arms (each is a metric label value)")
        live, shadows = [], []
        for arm_name, arm_doc in arms_doc.items():
            where = arms_doc.at(arm_name)
            if not ARM_NAME.fullmatch(str(arm_name)):
                self.error(where, "an arm name is lower_snake_case, at most 32 characters", str(arm_name))
                continue
            if not isinstance(arm_doc, Located):
                self.error(where, "an arm must be a mapping", arm_name)
                continue
            self.unknown_keys(arm_doc, {"share", "shadow", "table", "model"}, arm_name)
            strategy = self.table(arm_doc, rule_ids, main.on_error, arm_name) if "table" in arm_doc else main
            model = arm_doc.get("model")
            if model is not None and (not isinstance(model, str)
                                      or (self.models is not None and model not in self.models)):
                known = ", ".join(sorted(self.models or ())) or "none"
                self.error(arm_doc.at("model"), f"model {model!r} is not loaded (known: {known})", arm_name)
            if arm_doc.get("shadow") is True:
                if "share" in arm_doc:
                    self.error(arm_doc.at("share"), "a shadow arm takes no share of live traffic", arm_name)
                shadows.append(Arm(arm_name, strategy, model))
            else:
                share = self.number(arm_doc, "share", arm_name, low=0.0, high=1.0)
                live.append(Arm(arm_name, strategy, model, share))
        if not live:
            self.error(spec.at("arms"), "at least one arm must take live traffic ('share')")
            return _single(main)
        total = sum(a.share for a in live)
        if abs(total - 1.0) > 1e-9:
            self.error(spec.at("arms"), f"the live arms' shares must add up to 1 (they add up to {total:g})")
        return Experiment(name, tuple(live), tuple(shadows))


def _single(strategy: Strategy) -> Experiment:
    """No experiment block: all traffic on the main table, arm 'champion'."""
    return Experiment(CHAMPION, (Arm(CHAMPION, strategy, None, 1.0),))


def load_ruleset(directory: Path, models: set[str] | None = None) -> Ruleset:
    """Load and compile every file in ``directory``; raise RulesetError listing every problem.

    With ``models``, a product that routes a segment to a model not in it is an error too."""
    directory = Path(directory)
    loader = _Loader(directory, models)
    derived = loader.derived()
    products = loader.products()
    lists = loader.lists()
    validation = loader.rules("validation.yaml", "validation")
    fraud = loader.rules("fraud.yaml", "fraud")
    clash = {r.id for r in validation.rules} & {r.id for r in fraud.rules}
    for rule in fraud.rules:
        if rule.id in clash:
            loader.error(rule.position, "this id is also a validation rule", rule.id)
    strategy, experiment = loader.strategy({r.id for r in validation.rules + fraud.rules})
    arm_rows = [row for arm in experiment.live + experiment.shadows if arm.strategy.rows is not strategy.rows
                for row in arm.strategy.rows]
    uses = [(r.position, r.id, r.when) for r in validation.rules + fraud.rules + strategy.rows + tuple(arm_rows)]
    loader.check_list_reads(lists, uses)
    for rule in validation.rules:
        if rule.when.list_reads:  # gathering screens validation before the lists are looked up
            loader.error(rule.position, "validation rules check the application's own fields; "
                                        "read lists in fraud rules", rule.id)
    review_reasons = loader.review_reasons() if not loader.errors else {}
    loader.add_shape_errors()
    if loader.errors:
        raise RulesetError(loader.errors)
    return Ruleset(version_of(directory), directory, products, lists, validation, fraud, strategy, experiment,
                   review_reasons, derived)
