"""Contract-shaped applications for tests: a good base and helpers to change it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from stdnum.cn import ric, uscc

from service.ruletests import merge

CLIENT_KEY = "dev-client-key-change-me"
ADMIN_KEY = "dev-admin-key-change-me"
CLIENT = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
REVIEWER_A = {"Authorization": "Bearer dev-reviewer-a-key-change-me", "Content-Type": "application/json"}
REVIEWER_B = {"Authorization": "Bearer dev-reviewer-b-key-change-me", "Content-Type": "application/json"}


def id_number(birth: str = "19900307", region: str = "110105", seq: str = "123") -> str:
    body = region + birth + seq
    return body + ric.calc_check_digit(body + "0")


BASE: dict[str, Any] = {
    "application_id": "app-0001",
    "product": "consumer_quick",
    "channel": "mobile_banking",
    "submitted_at": "2026-11-23T09:30:00+08:00",
    "applicant": {
        "name": "Zhang Wei", "id_number": id_number(), "phone": "13800138000",
        "occupation": "salaried", "monthly_income": 12000, "employment_years": 5,
        "residence_years": 3, "housing": "rent", "dependents": 1,
    },
    "loan": {"amount": 30000, "term_months": 12, "purpose": "consumption"},
    "device": {
        "device_id": "dev-abc", "ip": "203.0.113.7", "os": "android", "is_emulator": False,
        "is_rooted": False, "gps": {"lat": 39.9, "lon": 116.4}, "typing_ms_per_char": 180,
        "form_fill_seconds": 95,
    },
    "verification": {"sms": {"request_id": "sms-1", "code": "123456"},
                     "face": {"liveness_token": "tok-good"}},
    "consents": {"credit_inquiry": True, "data_processing": True,
                 "e_signature": {"signed_at": "2026-11-23T09:29:50+08:00", "document_sha256": "a" * 64}},
    "bank": {"deposit_balance": 20000, "avg_balance_6m": 15000, "savings_balance": 5000,
             "relationship_years": 4, "payroll": True},
    "bureau": {"credit_history": "paid_duly", "open_loans": 1, "overdue_count_24m": 0,
               "max_overdue_days": 0, "queries_3m": 1, "multi_lender_count": 1, "total_debt": 8000},
    "attachments": [{"type": "id_front", "sha256": "b" * 64}, {"type": "id_back", "sha256": "c" * 64}],
}


def application(app_id: str = "app-0001", **patch: Any) -> dict[str, Any]:
    return merge(BASE, {"application_id": app_id, **patch})


def many_id_numbers(count: int, region: str = "110105") -> list[str]:
    """``count`` distinct valid ID numbers: a thousand sequence numbers per birth date."""
    first = dt.date(1950, 1, 1)
    return [id_number((first + dt.timedelta(days=i // 1000)).strftime("%Y%m%d"), region, f"{i % 1000:03d}")
            for i in range(count)]


def birth_for_age(age: int, on: dt.date = dt.date(2026, 11, 23)) -> str:
    return f"{on.year - age:04d}0101"


def uscc_code(marker: str = "123", region: str = "110105") -> str:
    """A valid unified social credit code (an individual business, 92…) whose 15th–17th
    characters are ``marker``: what the provider simulator's registry answers by."""
    body = "92" + region + "ABC123" + marker
    return body + uscc.calc_check_digit(body)


def merchant(app_id: str, marker: str = "123", **patch: Any) -> dict[str, Any]:
    """A merchants' quick loan application, its business registered under ``uscc_code(marker)``."""
    return merge(application(app_id, product="merchant_quick",
                             applicant={"occupation": "merchant", "monthly_income": 30000},
                             loan={"purpose": "business_operation"},
                             business={"uscc": uscc_code(marker), "name": "Zhang's Noodle Shop",
                                       "years_operating": 5, "annual_revenue": 900000},
                             attachments=BASE["attachments"] + [{"type": "business_license", "sha256": "f" * 64}]),
                 patch)


def as_answered(body: bytes) -> dict[str, Any]:
    """A GET answer without what a review adds (``automatic``, ``review``): for a referral not
    yet reviewed, exactly what POST answered; any other decision has nothing to remove."""
    data = orjson.loads(body)
    data.pop("automatic", None)
    data.pop("review", None)
    return data
