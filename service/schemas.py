"""The Decision API v1 contract (../shared/API.md) as pydantic models.

These models are the single source of the OpenAPI document. Validation is strict (a string is
never coerced into a number) and unknown fields are rejected at every level, so that a typo in
an optional block such as ``bureau`` is a 422 instead of a silently skipped fraud check.
Bounds on numbers keep absurd values (1e300 CNY) out of the rules; business limits such as a
product's amount range are rules, not schema.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

MONEY_MAX = 1e12
YEARS_MAX = 150
COUNT_MAX = 1_000_000

Money = Annotated[float, Field(ge=0, le=MONEY_MAX)]
Years = Annotated[float, Field(ge=0, le=YEARS_MAX)]
Count = Annotated[int, Field(ge=0, le=COUNT_MAX)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
IdNumber = Annotated[str, Field(min_length=18, max_length=18)]
Phone = Annotated[str, Field(min_length=1, max_length=32)]
Name = Annotated[str, Field(min_length=1, max_length=64)]


@functools.lru_cache(maxsize=16384)  # addresses repeat (carrier NAT); v6 canonical text is costly
def canonical_ip(text: str) -> str:
    """An IPv4 or IPv6 address in canonical text form ('2001:DB8:0::1' → '2001:db8::1')."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("value is not a valid IPv4 or IPv6 address") from None


# Kept as canonical text: rules, velocity keys and list look-ups all want the string, and
# pydantic's IPvAnyAddress costs ~50 µs a request in Python code.
IpAddress = Annotated[str, Field(max_length=64), AfterValidator(canonical_ip),
                      WithJsonSchema({"type": "string", "format": "ipvanyaddress"})]

Channel = Literal["mobile_banking", "wechat", "h5"]
Occupation = Literal[
    "farmer", "merchant", "salaried", "self_employed", "student", "retired", "unemployed", "other"
]
Housing = Literal["own", "rent", "family", "other"]
Purpose = Literal[
    "agri_production", "business_operation", "consumption", "education", "medical", "other"
]
DeviceOs = Literal["android", "ios", "harmonyos", "other"]
CreditHistory = Literal["none", "all_paid", "paid_duly", "delayed", "critical"]
CollateralType = Literal["none", "real_estate", "vehicle", "insurance", "warehouse_receipt"]
Relation = Literal["spouse", "guarantor", "partner", "contact"]
AttachmentType = Literal["id_front", "id_back", "business_license", "contract", "other"]
Outcome = Literal["approve", "decline", "refer"]
Stage = Literal["validation", "verification", "enrichment", "fraud", "scoring", "strategy"]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class Applicant(Strict):
    name: Name
    id_number: IdNumber
    phone: Phone
    occupation: Occupation
    monthly_income: Money
    employment_years: Years
    residence_years: Years
    housing: Housing
    dependents: Annotated[int, Field(ge=0, le=100)]


class Loan(Strict):
    amount: Annotated[float, Field(gt=0, le=MONEY_MAX)]
    term_months: Annotated[int, Field(gt=0, le=600)]
    purpose: Purpose


class Gps(Strict):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class Device(Strict):
    device_id: Annotated[str, Field(min_length=1, max_length=128)]
    ip: IpAddress
    os: DeviceOs
    is_emulator: bool
    is_rooted: bool
    gps: Gps | None = None
    typing_ms_per_char: Annotated[float, Field(ge=0, le=1e6)] | None = None
    form_fill_seconds: Annotated[float, Field(ge=0, le=1e7)] | None = None


class SmsCode(Strict):
    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    code: Annotated[str, Field(min_length=1, max_length=16)]


class FaceToken(Strict):
    liveness_token: Annotated[str, Field(min_length=1, max_length=4096)]


class Verification(Strict):
    sms: SmsCode
    face: FaceToken


class ESignature(Strict):
    signed_at: AwareDatetime
    document_sha256: Sha256Hex


class Consents(Strict):
    credit_inquiry: bool
    data_processing: bool
    e_signature: ESignature | None = None


class Bank(Strict):
    deposit_balance: Money | None = None
    avg_balance_6m: Money | None = None
    savings_balance: Money | None = None
    relationship_years: Years | None = None
    payroll: bool | None = None


class Bureau(Strict):
    credit_history: CreditHistory | None = None
    open_loans: Count | None = None
    overdue_count_24m: Count | None = None
    max_overdue_days: Count | None = None
    queries_3m: Count | None = None
    multi_lender_count: Count | None = None
    total_debt: Money | None = None


class Collateral(Strict):
    type: CollateralType
    value: Money | None = None


class Business(Strict):
    uscc: Annotated[str, Field(min_length=18, max_length=18)]
    name: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    years_operating: Years | None = None
    annual_revenue: Money | None = None


class RelatedParty(Strict):
    relation: Relation
    name: Name
    id_number: IdNumber | None = None
    phone: Phone | None = None


class Attachment(Strict):
    type: AttachmentType
    sha256: Sha256Hex


class DecisionRequest(Strict):
    """POST /v1/decisions body."""

    application_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    product: Annotated[str, Field(min_length=1, max_length=64)]
    channel: Channel
    submitted_at: AwareDatetime
    applicant: Applicant
    loan: Loan
    device: Device
    verification: Verification
    consents: Consents
    bank: Bank | None = None
    bureau: Bureau | None = None
    collateral: Collateral | None = None
    business: Business | None = None
    related_parties: Annotated[list[RelatedParty], Field(max_length=20)] | None = None
    attachments: Annotated[list[Attachment], Field(max_length=20)] | None = None


# --- response -------------------------------------------------------------------------------


class Offer(BaseModel):
    amount: float
    limit: float
    term_months: int
    annual_rate: float
    rate_tier: str


class Reason(BaseModel):
    code: str
    stage: Stage
    message: str


class Score(BaseModel):
    model: str
    pd: float
    points: float
    grade: str


class Versions(BaseModel):
    ruleset: str
    model: str | None
    service: str


class Experiment(BaseModel):
    arm: str


class TraceStage(BaseModel):
    stage: Stage
    ms: float = Field(description="wall time of the stage in milliseconds")
    reasons: list[str]
    detail: dict = Field(default_factory=dict, description="rules evaluated, provider calls, …")


class DecisionResponse(BaseModel):
    decision_id: str
    application_id: str
    outcome: Outcome
    offer: Offer | None
    reasons: list[Reason]
    score: Score | None
    versions: Versions
    experiment: Experiment
    submitted_at: str
    decided_at: str
    disburse_by: str = Field(description="submitted_at + 10 minutes: the SLA end")
    elapsed_ms: float
    trace: list[TraceStage] | None = Field(None, description="present with ?explain=true")


class FieldError(BaseModel):
    field: str = Field(description="JSON path of the bad field, e.g. applicant.id_number")
    pointer: str = Field(description="the same path as an RFC 6901 JSON pointer")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


# --- admin: lists ---------------------------------------------------------------------------


class ListChange(Strict):
    """POST/DELETE /admin/lists/{name}/entries body: who changes what, and why (audited)."""

    values: Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]],
                      Field(min_length=1, max_length=10_000)]
    actor: Annotated[str, Field(min_length=1, max_length=64, description="the person making the change")]
    reason: Annotated[str, Field(min_length=1, max_length=500, description="why: ticket, case number")]
