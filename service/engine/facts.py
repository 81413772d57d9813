"""The facts rules can read: every field path, its type, and how a decision fills it.

The catalogue is derived from the request schema (so a new contract field is a new fact at
once) plus the facts computed once per decision (age, instalment ratio, …) and the facts that
stages and products add. Rules are type-checked against it at load time.

Facts live in one flat dict keyed by dotted path, with every catalogued path present (``None``
when absent), so a compiled rule reads a fact with a single dict lookup.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Any, Literal, get_args, get_origin

from pydantic import AwareDatetime, BaseModel

from service.schemas import AttachmentType, DecisionRequest, Relation

NUMBER, STRING, BOOL, DATETIME, DATE, ANY = ("number", "string", "bool", "datetime", "date", "any")
OBJECT = "object"  # an item of related_parties or attachments: readable only through quantifiers


def list_of(item: str) -> str:
    """The type of a list whose items are ``item``: lists are typed by what they hold, so that
    `'12' in product.terms` (text among numbers) is refused when the rule is loaded."""
    return f"list[{item}]"


def item_of(kind: str) -> str | None:
    """What a list type holds; None for a type that is not a list."""
    return kind[5:-1] if kind.startswith("list[") else None


LIST_NUMBER, LIST_STRING, LIST_OBJECT = list_of(NUMBER), list_of(STRING), list_of(OBJECT)


def _type_of(annotation: Any) -> tuple[str, type[BaseModel] | None]:
    """Map a pydantic field annotation to a fact type (and the nested model, if any)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _type_of(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return _type_of(inner[0])
    if origin is Literal:
        return STRING, None
    if origin is list:
        item, nested = _type_of(get_args(annotation)[0])
        return list_of(OBJECT if nested is not None else item), None
    if annotation is AwareDatetime:
        return DATETIME, None
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "model", annotation
        if issubclass(annotation, bool):
            return BOOL, None
        if issubclass(annotation, (int, float)):
            return NUMBER, None
        if issubclass(annotation, dt.datetime):
            return DATETIME, None
        if issubclass(annotation, str):
            return STRING, None
    return STRING, None  # IP addresses and other string-like formats


def _request_plan(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, Any]]:
    """[(attribute, path, type or nested plan)] for a request model, computed once at import."""
    plan = []
    for name, field in model.model_fields.items():
        kind, nested = _type_of(field.annotation)
        path = prefix + name
        plan.append((name, path, _request_plan(nested, path + ".") if nested else kind))
    return plan


REQUEST_PLAN = _request_plan(DecisionRequest)


def _literals(annotation: Any) -> frozenset[str] | None:
    """The values a ``Literal`` field (or a list of them) can take; None for any other."""
    origin = get_origin(annotation)
    if origin is Literal:
        return frozenset(get_args(annotation))
    if origin in (typing.Annotated, list, typing.Union, types.UnionType):
        inner = [a for a in get_args(annotation)[:1 if origin is typing.Annotated else None] if a is not type(None)]
        return _literals(inner[0]) if len(inner) == 1 else None
    return None


def _enums(model: type[BaseModel], prefix: str = "") -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for name, field in model.model_fields.items():
        kind, nested = _type_of(field.annotation)
        if nested is not None and not kind.startswith("list["):
            out |= _enums(nested, f"{prefix}{name}.")
        elif (values := _literals(field.annotation)) is not None:
            out[prefix + name] = values
    return out


def _item_models(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The request's lists of objects (related_parties, attachments) and the model of an item."""
    out = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        while get_origin(annotation) in (typing.Annotated, typing.Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        if get_origin(annotation) is list and isinstance(item := get_args(annotation)[0], type) \
                and issubclass(item, BaseModel):
            out[name] = item
    return out


def _catalogue(plan: list, out: dict[str, str]) -> dict[str, str]:
    for _, path, kind in plan:
        if isinstance(kind, list):
            _catalogue(kind, out)
        else:
            out[path] = kind
    return out


# Facts computed once per decision from the request (see derive()).
DERIVED: dict[str, str] = {
    "applicant.age": NUMBER,
    "applicant.birth_date": DATE,
    "applicant.id_region": STRING,
    "applicant.id_province": STRING,
    "loan.instalment": NUMBER,
    "loan.instalment_to_income": NUMBER,
    "related.id_numbers": LIST_STRING,
    "related.phones": LIST_STRING,
    "related.relations": LIST_STRING,
    "attachments.types": LIST_STRING,
    "submitted.hour": NUMBER,
    "device.gps_km_from_id_province": NUMBER,
}

# Facts from the product catalogue (rules/products.yaml).
PRODUCT: dict[str, str] = {
    "product.known": BOOL,
    "product.code": STRING,
    "product.min_amount": NUMBER,
    "product.max_amount": NUMBER,
    "product.terms": LIST_NUMBER,
    "product.min_age": NUMBER,
    "product.max_age": NUMBER,
    "product.occupations": LIST_STRING,
    "product.requires_business": BOOL,
    "product.requires_income": BOOL,
    "product.income_multiple": NUMBER,
    "product.required_attachments": LIST_STRING,
    "product.face_threshold": NUMBER,
    "product.reference_rate": NUMBER,
}

# Facts that stages add while the decision runs.
STAGE: dict[str, str] = {
    "verification.identity.status": STRING,
    "verification.identity.error": STRING,
    "verification.face.status": STRING,
    "verification.face.score": NUMBER,
    "verification.face.error": STRING,
    "verification.sms.status": STRING,
    "verification.sms.error": STRING,
    # the market-regulation registry, for products that require a business:
    "verification.business.status": STRING,
    "verification.business.error": STRING,
    "verification.business.representative_match": BOOL,
    "verification.business.established": DATE,
    "verification.business.years_operating": NUMBER,
    "verification.business.abnormal": BOOL,
    "verification.required": LIST_STRING,
    "verification.failed": LIST_STRING,
    "verification.unavailable": LIST_STRING,
    "enrichment.unavailable": LIST_STRING,
    "whitelist.listed": BOOL,
    "whitelist.limit": NUMBER,
    "whitelist.segment": STRING,
    "whitelist.rate_tier": STRING,
    "whitelist.expired": BOOL,
    **{f"velocity.{key}_{window}": NUMBER
       for key in ("device", "phone", "id", "ip") for window in ("1h", "24h", "7d", "30d")},
    "flags": LIST_STRING,
    "score.model": STRING,
    "score.pd": NUMBER,
    "score.points": NUMBER,
    "score.grade": STRING,
}
# What each computed fact means (request fields are described by the contract's own docs),
# for `loan-decision rules facts` and docs/RULES.md.
NOTES: dict[str, str] = {
    "applicant.age": "whole years on the submission day (Beijing time), from the ID's birth date",
    'applicant.id_region': "the ID's 6-digit administrative division code",
    "applicant.id_province": "the ID's first two digits (its province)",
    'loan.instalment': "monthly instalment at the product's reference rate",
    "loan.instalment_to_income": "loan.instalment / applicant.monthly_income; null when income is 0",
    "related.relations": "the relation of each related party",
    'submitted.hour': 'hour of submission in Beijing time, 0–23, whatever offset was sent',
    'device.gps_km_from_id_province': "GPS to the ID province's capital; rough",
    "verification.identity.status": "the identity authority's answer on name + ID number",
    "verification.face.status": "the liveness check's answer",
    "verification.sms.status": "the SMS code check's answer",
    "verification.business.status": "the market-regulation registry's answer on the USCC",
    'verification.business.representative_match': 'the applicant is its legal representative or operator',
    'verification.business.established': "the registry's establishment date",
    'verification.business.years_operating': 'from it to the submission (Beijing time); not the typed one',
    'verification.business.abnormal': 'on the abnormal-operations list (经营异常名录)',
    'verification.required': 'the checks the product requires',
    'verification.failed': 'required checks that did not pass',
    'verification.unavailable': 'required checks that errored',
    'enrichment.unavailable': 'the stores that failed while gathering: whitelist, velocity, lists',
    'flags': 'ids of the fraud/validation rules with action `flag` that fired',
    'applicant.birth_date': 'the birth date the ID number holds',
    'related.id_numbers': 'the ID numbers of the related parties that have one',
    'related.phones': 'the phones of the related parties that have one',
    'attachments.types': 'the types of the attached documents',
    'product.known': "the application's product is in products.yaml",
    'product.code': "the product's code",
    'product.min_amount': "the product's smallest loan",
    'product.max_amount': "the product's largest loan",
    'product.terms': 'the terms in months the product offers',
    'product.min_age': 'the youngest applicant the product takes',
    'product.max_age': 'the oldest applicant the product takes',
    'product.occupations': 'the occupations the product is for',
    'product.requires_business': 'applications must carry a registered business',
    'product.requires_income': 'applications must state an income',
    'product.income_multiple': 'the most a loan may be, in months of income',
    'product.required_attachments': 'the documents an application must attach',
    'product.face_threshold': 'the least face similarity that passes',
    'product.reference_rate': 'the annual rate loan.instalment is computed at',
    'verification.identity.error': 'why the identity check failed to answer (timeout, circuit_open, …)',
    'verification.face.score': 'face similarity, 0–1',
    'verification.face.error': 'why the face check failed to answer',
    'verification.sms.error': 'why the SMS check failed to answer',
    'verification.business.error': 'why the registry failed to answer',
    'whitelist.listed': 'the applicant is on the active pre-approved whitelist',
    'whitelist.limit': 'the pre-approved credit limit',
    'whitelist.segment': "the whitelist segment (selects the product's model)",
    'whitelist.rate_tier': 'the pre-approved rate tier',
    'whitelist.expired': "the whitelist entry's validity ended before the submission (Beijing day)",
    'score.model': 'the model that scored the application',
    'score.pd': 'probability of default, 0–1',
    'score.points': 'scorecard points (higher is better)',
    'score.grade': 'the grade the points fall in (A best)',
    **{f"velocity.{key}_{window}": f"applications with this {what} in the last {window}, this one included"
       for key, what in (("device", "device"), ("phone", "phone"), ("id", "ID number"), ("ip", "IP address"))
       for window in ("1h", "24h", "7d", "30d")},
}

# The stage facts gathered from outside the application (providers, whitelist, velocity): what a
# decision records, so that a backtest can decide it again without calling anything.
RECORDABLE = {name: kind for name, kind in STAGE.items()
              if name.startswith(("whitelist.", "velocity.")) or name.count(".") == 2}

# The facts that hold each kind of identifier a list can hold: what in_list (a single value) and
# any_in_list (a list) may read, and what gathering looks up on the bank's lists.
LIST_SOURCES: dict[str, dict[str, bool]] = {  # kind → {fact path: holds a list}
    "id_number": {"applicant.id_number": False, "related.id_numbers": True},
    "phone": {"applicant.phone": False, "related.phones": True},
    "device": {"device.device_id": False},
    "ip": {"device.ip": False},
    "uscc": {"business.uscc": False},
}

CATALOGUE: dict[str, str] = _catalogue(REQUEST_PLAN, {}) | DERIVED | PRODUCT | STAGE

# What a quantifier's variable holds when it ranges over a list of objects: each item's fields
# and their types (`any(p.relation == 'guarantor' and p.phone == applicant.phone for p in
# related_parties)`), keyed as "related_parties.relation".
_ITEM_MODELS = _item_models(DecisionRequest)
ITEMS: dict[str, dict[str, str]] = {
    path: {name: _type_of(field.annotation)[0] for name, field in model.model_fields.items()}
    for path, model in _ITEM_MODELS.items()}

# The only values some text facts (or the items of some lists) can take: comparing one with
# any other text can never be true, so it is a lint error (a typo such as 'famer').
_STATUS = {"verification.identity.status": "match mismatch not_found error skipped",
           "verification.face.status": "pass fail error skipped",
           "verification.sms.status": "verified wrong_code expired error skipped",
           "verification.business.status": "active deregistered revoked not_found error skipped"}
ENUMS: dict[str, frozenset[str]] = (
    _enums(DecisionRequest)
    | {f"{path}.{name}": values for path, model in _ITEM_MODELS.items() for name, values in _enums(model).items()}
    | {"related.relations": frozenset(get_args(Relation)), "attachments.types": frozenset(get_args(AttachmentType)),
       "product.required_attachments": frozenset(get_args(AttachmentType))}
    | {path: frozenset(values.split()) for path, values in _STATUS.items()})
EMPTY: dict[str, Any] = dict.fromkeys(CATALOGUE)


def _fill_source(plan: list, obj: str, depth: int = 1) -> list[str]:
    """Straight-line Python that copies every request field into the facts dict."""
    lines, pad = [], "    " * depth
    for attr, path, kind in plan:
        if isinstance(kind, list):
            var = f"v{depth}"
            lines += [f"{pad}{var} = {obj}.{attr}", f"{pad}if {var} is not None:"]
            lines += _fill_source(kind, var, depth + 1) or [f"{pad}    pass"]
        else:
            lines.append(f"{pad}f[{path!r}] = {obj}.{attr}")
    return lines


def _compile_fill(plan: list) -> Any:
    """The request → facts copy as one generated function: ~4x faster than walking the plan
    (it runs for every decision). Built only from the schema's own field names."""
    source = "def fill(r, f):\n" + "\n".join(_fill_source(plan, "r")) + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "<request facts>", "exec"), namespace)  # noqa: S102 - schema-derived code
    return namespace["fill"]


_fill = _compile_fill(REQUEST_PLAN)


def request_facts(request: DecisionRequest) -> dict[str, Any]:
    facts = EMPTY.copy()
    _fill(request, facts)
    return facts


def list_candidates(facts: dict[str, Any], kinds: dict[str, str]) -> dict[str, list[str]]:
    """For each declared list (name → kind), the application's identifiers of that kind."""
    out: dict[str, list[str]] = {}
    for name, kind in kinds.items():
        values: list[str] = []
        for path, many in LIST_SOURCES[kind].items():
            value = facts[path]
            if value is None:
                continue
            if many:
                values.extend(value)
            else:
                values.append(value)
        if values:
            out[name] = values
    return out
