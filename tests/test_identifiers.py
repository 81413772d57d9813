"""The identifiers of Chinese lending: unified social credit codes and Beijing time."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from service.engine.derived import derive
from service.engine.facts import request_facts
from service.identifiers import USCC_KINDS, age_from_id, uscc_check_character, uscc_valid
from service.schemas import DecisionRequest
from tests.factories import application, id_number

# Published codes of real organisations, one per kind the tests could find.
REAL_USCCS = {
    "N21100006000373414": "rural collective economic organisation (N2, village level)",
    "91110108551385082Q": "company (91): Xiaomi",
    "91370000728611939A": "company (91), Shandong",
    "91310110666007217T": "company (91), Shanghai",
    "91350100M000100Y43": "company (91) whose organisation code has letters",
    "531000005000160090": "foundation (53): the Chinese Red Cross Foundation",
    "52410000663412719U": "private non-enterprise unit (52), Henan",
    "51100000500010993L": "social organisation (51)",
    "92330106MA2CK79986": "individual business (92), the README's merchant",
}


@pytest.mark.parametrize("code", REAL_USCCS)
def test_real_codes_of_every_kind_are_valid(code):
    assert uscc_valid(code), REAL_USCCS[code]
    assert uscc_valid(code.lower())


def test_every_authority_and_kind_of_the_standard_is_accepted_and_no_other():
    body = "110105MA01ABCD"
    for authority in "123456789ABCDEFGHJKLMNPQRTUWXY":
        for kind in "0123456789ABCDEFGHJKLMNPQRTUWXY":
            first17 = authority + kind + body + "1"
            code = first17 + uscc_check_character(first17)
            assert uscc_valid(code) == (kind in USCC_KINDS.get(authority, "")), code
    assert {"9": "123", "N": "1239"}.items() <= USCC_KINDS.items()  # co-operatives and village collectives


@pytest.mark.parametrize("code", [
    "91110108551385082F",  # check character wrong
    "91350211M00013FA1N",  # a pilot-era code that breaks the standard's check character
    "9111010855138508",  # short
    "91110108551385082QQ",  # long
    "94110108551385082Q",  # 工商 has no kind 4
    "B1110108551385082Q",  # no authority B
    "911101O8551385082Q",  # O is not in the character set (nor is it a digit of the region)
    "9111010855138508IQ",  # I is not in the character set
    "",
])
def test_invalid_codes_are_refused(code):
    assert not uscc_valid(code)


def _facts(submitted_at: str, ident: str) -> dict:
    request = DecisionRequest.model_validate_json(orjson.dumps(
        application("app-tz", submitted_at=submitted_at, applicant={"id_number": ident})))
    facts = request_facts(request)
    derive(request, facts, 0.05)
    return facts


def test_hour_and_age_are_beijing_time_whatever_offset_is_sent():
    """21:30 UTC on the eve of the 30th birthday is 05:30 on the birthday in Beijing: the same
    instant written with three offsets gives the same hour and the same age."""
    ident = id_number("19960601")
    instants = ["2026-05-31T21:30:00+00:00", "2026-06-01T05:30:00+08:00", "2026-05-31T17:30:00-04:00"]
    seen = {(f["submitted.hour"], f["applicant.age"]) for f in (_facts(i, ident) for i in instants)}
    assert seen == {(5, 30)}
    assert age_from_id(ident, dt.datetime.fromisoformat(instants[0])) == 30
    late = _facts("2026-05-31T19:30:00+00:00", ident)  # 03:30 in Beijing: night, and the birthday
    assert (late["submitted.hour"], late["applicant.age"]) == (3, 30)
