"""The named functions rule expressions may call, with the types each argument accepts.

Null policy: a function given a null where it needs a value returns null (so a comparison on
it is false), except ``min``/``max``, which skip nulls, and the ``*_valid`` checks, which
return false. A number without a finite value (an overflow, a division by zero) is an
arithmetic error, recorded as the rule's error like a division by zero in the expression.
Each function is pure: rules and backtests give the same answer for the same facts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from service.engine.facts import ANY, BOOL, DATE, NUMBER, STRING, item_of
from service.identifiers import (
    CHINA,
    age_from_id,
    birth_date_from_id,
    id_number_valid,
    id_region_known,
    phone_valid,
    uscc_valid,
)


def _finite(*values: float) -> None:
    for value in values:
        if not math.isfinite(value):
            raise OverflowError("a number without a finite value")


def distance_km(lat1: float | None, lon1: float | None, lat2: float | None,
                lon2: float | None) -> float | None:
    """Great-circle (haversine) distance."""
    if lat1 is None or lon1 is None or lat2 is None or lon2 is None:
        return None
    _finite(lat1, lon1, lat2, lon2)
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


def _round(value: float | None, step: float | None) -> float | None:
    """Round down to a multiple of ``step`` (offers are floored, never rounded up)."""
    if value is None or step is None:
        return None
    quotient = value / step
    _finite(quotient)
    return math.floor(quotient) * step


def power(base: float, exponent: float) -> float:
    """``**`` in floating point: a result too large is an overflow (an error, at once) instead
    of an integer of millions of digits, and a root of a negative number is no number."""
    result = float(base) ** exponent
    if isinstance(result, complex):
        raise ArithmeticError("a fractional power of a negative number")
    return result


def all_ids_valid(values: Iterable[str] | None) -> bool:
    return all(id_number_valid(v) for v in values or ())


def all_in(needles: Iterable[Any] | None, haystack: Iterable[Any] | None) -> bool:
    """True when every item of ``needles`` is in ``haystack`` (e.g. required attachments)."""
    present = set(haystack or ())
    return all(item in present for item in needles or ())


def days_between(start: dt.date | dt.datetime | None, end: dt.date | dt.datetime | None) -> float | None:
    """Days from ``start`` to ``end``: fractional between two instants; whole days when either
    is a date (an instant counts as its day in Beijing time)."""
    if start is None or end is None:
        return None
    if isinstance(start, dt.datetime) and isinstance(end, dt.datetime):
        return (end - start).total_seconds() / 86400
    return (_day(end) - _day(start)).days


def _day(value: dt.date) -> dt.date:
    return value.astimezone(CHINA).date() if isinstance(value, dt.datetime) else value


@dataclass(frozen=True, slots=True)
class Function:
    fn: Callable[..., Any]
    # The types each argument accepts, "|" between alternatives, "list[*]" for any list; with
    # variadic, the types of every argument.
    args: tuple[str, ...]
    returns: str
    summary: str  # what it does, for `loan-decision rules facts` and docs/RULES.md
    variadic: bool = False
    # Arguments that must be literal strings (list names, regexes), by index.
    literal_args: tuple[int, ...] = ()
    same_items: bool = False  # its list arguments must hold the same type of item
    literal_label: str = "text"  # what its literal argument is, in the signature

    def signature(self, name: str) -> str:
        args = [f"'{self.literal_label}'" if i in self.literal_args else a for i, a in enumerate(self.args)]
        return f"{name}({', '.join(args)}{', …' if self.variadic else ''}) → {self.returns}"


def accepts(spec: str, kind: str) -> bool:
    """Whether an argument typed ``spec`` accepts a value of type ``kind`` (null always)."""
    if kind == ANY:
        return True
    return any(want == kind or (want == "list[*]" and item_of(kind) is not None) for want in spec.split("|"))


WHEN = "date|datetime"
REGISTRY: dict[str, Function] = {
    "id_number_valid": Function(id_number_valid, (STRING,), BOOL,
                                "an 18-character resident ID number with a valid check character and birth date"),
    "id_region_known": Function(id_region_known, (STRING,), BOOL,
                                "its first six digits are a known administrative division"),
    "birth_date_from_id": Function(birth_date_from_id, (STRING,), DATE, "the birth date an ID number holds"),
    "age_from_id": Function(age_from_id, (STRING, WHEN), NUMBER,
                            "whole years from the ID's birth date to a day (an instant: its Beijing day)"),
    "uscc_valid": Function(uscc_valid, (STRING,), BOOL,
                           "a unified social credit code per GB 32100-2015 (authority, kind, check character)"),
    "phone_valid": Function(phone_valid, (STRING,), BOOL, "an 11-digit mainland mobile number"),
    "all_ids_valid": Function(all_ids_valid, ("list[string]",), BOOL, "every item is a valid ID number"),
    "distance_km": Function(distance_km, (NUMBER, NUMBER, NUMBER, NUMBER), NUMBER,
                            "great-circle distance between (lat1, lon1) and (lat2, lon2)"),
    "all_in": Function(all_in, ("list[*]", "list[*]"), BOOL, "every item of the first list is in the second",
                       same_items=True),
    "days_between": Function(days_between, (WHEN, WHEN), NUMBER,
                             "days from the first to the second; whole days when either is a date"),
    "min": Function(_min, (NUMBER,), NUMBER, "the smallest, nulls skipped", variadic=True),
    "max": Function(_max, (NUMBER,), NUMBER, "the largest, nulls skipped", variadic=True),
    "abs": Function(_abs, (NUMBER,), NUMBER, "the absolute value"),
    "len": Function(_len, ("string|list[*]",), NUMBER, "characters of a text, items of a list"),
    "floor_to": Function(_round, (NUMBER, NUMBER), NUMBER, "rounded down to a multiple of the second"),
    # Compiled specially (see expressions.py): they need the rule's context, not just values.
    "any": Function(any, ("condition for p in list",), BOOL,
                    "one item satisfies the condition (false for an empty list); p.field reads a party's "
                    "or attachment's field"),
    "all": Function(all, ("condition for p in list",), BOOL,
                    "every item satisfies the condition (true for an empty list)"),
    "missing": Function(lambda value: value is None, (ANY,), BOOL, "the field is null (absent)"),
    "matches": Function(lambda pattern, text: None, (STRING, STRING), BOOL,
                        "the whole text matches the RE2 regular expression (linear time)", literal_args=(0,),
                        literal_label="pattern"),
    "in_list": Function(lambda lists, name, value: None, (STRING, STRING), BOOL,
                        "the application's identifier is on the bank's list", literal_args=(0,),
                        literal_label="list"),
    "any_in_list": Function(lambda lists, name, values: None, (STRING, "list[string]"), BOOL,
                            "any of the identifiers is on the bank's list", literal_args=(0,),
                            literal_label="list"),
}
