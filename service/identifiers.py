"""The personal and business identifiers of Chinese lending: resident ID numbers, mainland
mobile numbers, unified social credit codes, and Beijing time, the banks' business day.

The lowest layer: the rule language, the stores and the offline tools all check and normalise
identifiers here, so that a list entry, a whitelist row and a rule see the same value.
"""

from __future__ import annotations

import datetime as dt
import re

from stdnum.cn import ric
from stdnum.exceptions import ValidationError

CHINA = dt.timezone(dt.timedelta(hours=8))  # Beijing time: the banks' business day
_PHONE = re.compile(r"1[3-9]\d{9}")
_RIC_SHAPE = re.compile(r"[0-9]{17}[0-9X]")


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
    """An ID number whose first six digits are a division python-stdnum knows (at its birth)."""
    if value is None or birth_date_from_id(value) is None:  # stdnum raises ValueError on other text
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
    return age_on(birth_date_from_id(value), at.astimezone(CHINA).date() if isinstance(at, dt.datetime) else at)


# GB 32100-2015, the unified social credit code (统一社会信用代码): 31 characters (no I O Z S V).
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# Character 1, the registration authority, and character 2, the kind of organisation it
# registers (table 1 of the standard, with the codes the national code centre added since: A
# for the military's institutions, N for rural collective economic organisations — the
# farmers' co-operatives of villages and townships that these loans serve).
USCC_KINDS: dict[str, str] = {
    "1": "1239",  # 机构编制: 机关, 事业单位, 中央编办管理的群众团体, 其他
    "2": "19",  # 外交: 外国常驻新闻机构, 其他
    "3": "123459",  # 司法行政: 律师执业机构, 公证处, 基层法律服务所, 司法鉴定机构, 仲裁委员会, 其他
    "4": "19",  # 文化: 外国在华文化中心, 其他
    "5": "1239",  # 民政: 社会团体, 民办非企业单位, 基金会, 其他
    "6": "129",  # 旅游: 外国 / 港澳台旅游部门常驻代表机构, 其他
    "7": "129",  # 宗教: 宗教活动场所, 宗教院校, 其他
    "8": "19",  # 工会: 基层工会, 其他
    "9": "123",  # 工商 (市场监管): 企业, 个体工商户, 农民专业合作社
    "A": "19",  # 中央军委改革和编制办公室: 军队事业单位, 其他
    "N": "1239",  # 农业: 组级, 村级, 乡镇级集体经济组织, 其他
    "Y": "1",  # 其他
}
_USCC_SHAPE = re.compile(r"[1-9ANY][1-9]\d{6}[0-9A-HJ-NPQRTUWXY]{10}")


def uscc_check_character(first17: str) -> str:
    """Character 18: 31 minus the weighted sum mod 31 (31 itself written 0)."""
    total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, _USCC_WEIGHTS))
    return USCC_ALPHABET[-total % 31]


def uscc_valid(value: str | None) -> bool:
    """A unified social credit code per GB 32100-2015: its character set, a known registration
    authority with one of its kinds, six digits of administrative division, and the check
    character. Characters 9–17 (the organisation code) are not checked against GB 11714's own
    check digit: codes issued in the pilot regions before the standard break it and are real."""
    if value is None:
        return False
    code = value.upper()
    if not _USCC_SHAPE.fullmatch(code) or code[1] not in USCC_KINDS[code[0]]:
        return False
    return uscc_check_character(code[:17]) == code[17]


def phone_valid(value: str | None) -> bool:
    return value is not None and _PHONE.fullmatch(value) is not None
