"""The named functions rule expressions may call, with their argument and result types.

Null policy: a function given a null where it needs a value returns null (so a comparison on
it is false), except ``min``/``max``, which skip nulls, and the ``*_valid`` checks, which
return false. Each function is pure: rules and backtests give the same answer for the same
facts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from service.engine.facts import ANY, BOOL, DATE, DATETIME, LIST, NUMBER, STRING
from service.identifiers import (
    age_from_id,
    birth_date_from_id,
    id_number_valid,
    id_region_known,
    phone_valid,
    uscc_valid,
)


def distance_km(lat1: float | None, lon1: float | None, lat2: float | None,
                lon2: float | None) -> float | None:
    """Great-circle (haversine) distance."""
    if lat1 is None or lon1 is None or lat2 is None or lon2 is None:
        return None
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12742.0 * math.asin(min(1.0, math.sqrt(a)))


def _min(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _max(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _abs(value: float | None) -> float | None:
    return None if value is None else abs(value)


def _len(value: Any) -> int | None:
    return None if value is None else len(value)


def _round(value: float | None, step: float) -> float | None:
    """Round down to a multiple of ``step`` (offers are floored, never rounded up)."""
    if value is None:
        return None
    return math.floor(value / step) * step


def all_ids_valid(values: Iterable[str] | None) -> bool:
    return all(id_number_valid(v) for v in values or ())


def all_in(needles: Iterable[Any] | None, haystack: Iterable[Any] | None) -> bool:
    """True when every item of ``needles`` is in ``haystack`` (e.g. required attachments)."""
    present = set(haystack or ())
    return all(item in present for item in needles or ())


def days_between(start: dt.date | dt.datetime | None, end: dt.date | dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds() / 86400 if isinstance(start, dt.datetime) else (end - start).days


@dataclass(frozen=True, slots=True)
class Function:
    fn: Callable[..., Any]
    args: tuple[str, ...]  # argument types; with variadic, the type of every argument
    returns: str
    variadic: bool = False
    # Arguments that must be literal strings (list names, regexes), by index.
    literal_args: tuple[int, ...] = ()


REGISTRY: dict[str, Function] = {
    "id_number_valid": Function(id_number_valid, (STRING,), BOOL),
    "id_region_known": Function(id_region_known, (STRING,), BOOL),
    "birth_date_from_id": Function(birth_date_from_id, (STRING,), DATE),
    "age_from_id": Function(age_from_id, (STRING, DATETIME), NUMBER),
    "uscc_valid": Function(uscc_valid, (STRING,), BOOL),
    "phone_valid": Function(phone_valid, (STRING,), BOOL),
    "all_ids_valid": Function(all_ids_valid, (LIST,), BOOL),
    "distance_km": Function(distance_km, (NUMBER, NUMBER, NUMBER, NUMBER), NUMBER),
    "all_in": Function(all_in, (LIST, LIST), BOOL),
    "days_between": Function(days_between, (ANY, ANY), NUMBER),
    "min": Function(_min, (NUMBER,), NUMBER, variadic=True),
    "max": Function(_max, (NUMBER,), NUMBER, variadic=True),
    "abs": Function(_abs, (NUMBER,), NUMBER),
    "len": Function(_len, (ANY,), NUMBER),
    "floor_to": Function(_round, (NUMBER, NUMBER), NUMBER),
    # Compiled specially (see expressions.py): they need the rule's context, not just values.
    "missing": Function(lambda value: value is None, (ANY,), BOOL),
    "matches": Function(lambda pattern, text: None, (STRING, STRING), BOOL, literal_args=(0,)),
    "in_list": Function(lambda lists, name, value: None, (STRING, ANY), BOOL, literal_args=(0,)),
    "any_in_list": Function(lambda lists, name, values: None, (STRING, LIST), BOOL,
                            literal_args=(0,)),
}
