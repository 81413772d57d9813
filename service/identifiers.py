"""The personal and business identifiers of Chinese lending: resident ID numbers, mainland
mobile numbers, unified social credit codes, and Beijing time, the banks' business day.

The lowest layer: the rule language, the stores and the offline tools all check and normalise
identifiers here, so that a list entry, a whitelist row and a rule see the same value.
"""

from __future__ import annotations

import datetime as dt
import re

from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError

CHINA = dt.timezone(dt.timedelta(hours=8))  # Beijing time: the banks' business day
_PHONE = re.compile(r"1[3-9]\d{9}")
_RIC_SHAPE = re.compile(r"\d{17}[\dX]")


def normalise(kind: str, value: str) -> str:
    """How an identifier of ``kind`` is compared and keyed: ID numbers and USCCs upper-case."""
    value = value.strip()
    return value.upper() if kind in ("id_number", "uscc") else value


def id_number_valid(value: str | None) -> bool:
    """18-digit resident identity number: shape, ISO 7064 check digit and a real birth date.

    python-stdnum's ``ric.validate`` also rejects county codes missing from its bundled list,
    which lags behind China's administrative changes; a real customer must not be declined for
    that, so the region is left to ``id_region_known``.
    """
    if value is None:
        return False
    number = value.upper()
    if not _RIC_SHAPE.fullmatch(number) or ric.calc_check_digit(number) != number[-1]:
        return False
    return birth_date_from_id(number) is not None


def id_region_known(value: str | None) -> bool:
    if value is None:
        return False
    try:
        ric.get_birth_place(value.upper())
    except ValidationError:
        return False
    return True


def birth_date_from_id(value: str | None) -> dt.date | None:
    # What ric.get_birth_date does, minus its compact(): that normalises the text character by
    # character (≈15 µs), and the shape check has already proved it is 17 ASCII digits.
    if value is None or not _RIC_SHAPE.fullmatch(value.upper()):
        return None
    try:
        return dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return None


def age_on(birth: dt.date | None, on: dt.date) -> int | None:
    if birth is None or birth > on:
        return None
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_from_id(value: str | None, at: dt.datetime | dt.date | None) -> int | None:
    if at is None:
        return None
    return age_on(birth_date_from_id(value), at.date() if isinstance(at, dt.datetime) else at)


def uscc_valid(value: str | None) -> bool:
    return value is not None and uscc.is_valid(value)


def phone_valid(value: str | None) -> bool:
    return value is not None and _PHONE.fullmatch(value) is not None
