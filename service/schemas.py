"""The Decision API v1 contract (../shared/API.md) as pydantic models.

These models are the single source of the OpenAPI document. Validation is strict (a string is
never coerced into a number) and unknown fields are rejected at every level, so that a typo in
an optional block such as ``bureau`` is a 422 instead of a silently skipped fraud check.
Bounds on numbers keep absurd values (1e300 CNY) out of the rules; business limits such as a
product's amount range are rules, not schema.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

from service.identifiers import id_number_valid

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
Stage = Literal["validation", "verification", "enrichment", "fraud", "scoring", "strategy", "review"]


# The README's example application and what it is answered: the OpenAPI document shows them,
# and a test checks that the first is valid and the same as tests/example-application.json.
EXAMPLE_REQUEST: dict[str, Any] = {
    "application_id": "app-readme-1",
    "product": "consumer_quick",
    "channel": "mobile_banking",
    "submitted_at": "2026-11-23T09:30:00+08:00",
    "applicant": {
        "name": "Zhang Wei",
        "id_number": "110105199003071239",
        "phone": "13800138000",
        "occupation": "salaried",
        "monthly_income": 12000,
        "employment_years": 5,
        "residence_years": 3,
        "housing": "rent",
        "dependents": 1
    },
    "loan": {
        "amount": 30000,
        "term_months": 12,
        "purpose": "consumption"
    },
    "device": {
        "device_id": "dev-abc",
        "ip": "203.0.113.7",
        "os": "android",
        "is_emulator": False,
        "is_rooted": False,
        "gps": {
            "lat": 39.9,
            "lon": 116.4
        },
        "typing_ms_per_char": 180,
        "form_fill_seconds": 95
    },
    "verification": {
        "sms": {
            "request_id": "sms-1",
            "code": "123456"
        },
        "face": {
            "liveness_token": "tok-good"
        }
    },
    "consents": {
        "credit_inquiry": True,
        "data_processing": True,
        "e_signature": {
            "signed_at": "2026-11-23T09:29:50+08:00",
            "document_sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        }
    },
    "bank": {
        "deposit_balance": 20000,
        "avg_balance_6m": 15000,
        "savings_balance": 5000,
        "relationship_years": 4,
        "payroll": True
    },
    "bureau": {
        "credit_history": "paid_duly",
        "open_loans": 1,
        "overdue_count_24m": 0,
        "max_overdue_days": 0,
        "queries_3m": 1,
        "multi_lender_count": 1,
        "total_debt": 8000
    },
    "attachments": [
        {
            "type": "id_front",
            "sha256": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
        },
        {
            "type": "id_back",
            "sha256": "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
        }
    ]
}
EXAMPLE_RESPONSE: dict[str, Any] = {
    "decision_id": "dec_01KBJX1R0TQ6S1M8S3WG0Y5F2V",
    "application_id": "app-readme-1",
    "outcome": "approve",
    "offer": {
        "amount": 21000.0,
        "limit": 35000.0,
        "term_months": 12,
        "annual_rate": 0.08,
        "rate_tier": "T3"
    },
    "reasons": [],
    "score": {
        "model": "german_champion-fe9cb5b91217",
        "pd": 0.052,
        "points": 571.0,
        "grade": "C"
    },
    "versions": {
        "ruleset": "rs-e9df9e58be2a",
        "model": "german_champion-fe9cb5b91217",
        "service": "0.1.0"
    },
    "experiment": {
        "arm": "champion"
    },
    "submitted_at": "2026-11-23T09:30:00+08:00",
    "decided_at": "2026-11-23T01:30:00.012000+00:00",
    "disburse_by": "2026-11-23T09:40:00+08:00",
    "elapsed_ms": 3.1
}


class Documented(BaseModel):
    # Each field's docstring is its description in the OpenAPI document.
    model_config = ConfigDict(use_attribute_docstrings=True)


class Strict(Documented):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True,
                              use_attribute_docstrings=True)


class Applicant(Strict):
    name: Name
    """Full name as on the resident identity card."""
    id_number: IdNumber
    """18-character PRC resident identity number; the last character may be X."""
    phone: Phone
    """Mainland mobile number, 11 digits, verified by the SMS code."""
    occupation: Occupation
    """What the applicant does for a living; each product accepts some."""
    monthly_income: Money
    """Stated monthly income, CNY."""
    employment_years: Years
    """Years in the current work."""
    residence_years: Years
    """Years at the current address."""
    housing: Housing
    """Whether the applicant owns, rents or lives with family."""
    dependents: Annotated[int, Field(ge=0, le=100)]
    """People the applicant supports."""


class Loan(Strict):
    amount: Annotated[float, Field(gt=0, le=MONEY_MAX)]
    """Amount requested, CNY."""
    term_months: Annotated[int, Field(gt=0, le=600)]
    """Term requested, in months; each product offers some terms."""
    purpose: Purpose
    """What the money is for."""


class Gps(Strict):
    lat: Annotated[float, Field(ge=-90, le=90)]
    """Latitude, degrees."""
    lon: Annotated[float, Field(ge=-180, le=180)]
    """Longitude, degrees."""


class Device(Strict):
    device_id: Annotated[str, Field(min_length=1, max_length=128)]
    """The mobile app's stable device identifier."""
    ip: IpAddress
    """The device's public IP address, v4 or v6."""
    os: DeviceOs
    """Operating system of the device."""
    is_emulator: bool
    """The app detected an emulator."""
    is_rooted: bool
    """The app detected a rooted or jail-broken device."""
    gps: Gps | None = None
    """Where the device was when the customer applied, if the customer allowed it."""
    typing_ms_per_char: Annotated[float, Field(ge=0, le=1e6)] | None = None
    """Average milliseconds between key strokes while filling in the form."""
    form_fill_seconds: Annotated[float, Field(ge=0, le=1e7)] | None = None
    """Seconds from opening the form to submitting it."""


class SmsCode(Strict):
    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    """The SMS provider's id of the code sent."""
    code: Annotated[str, Field(min_length=1, max_length=16)]
    """The code the customer typed."""


class FaceToken(Strict):
    liveness_token: Annotated[str, Field(min_length=1, max_length=4096)]
    """Token from the mobile liveness SDK; the face provider compares it with the ID photo."""


class Verification(Strict):
    sms: SmsCode
    """The SMS one-time code to verify."""
    face: FaceToken
    """The liveness result to compare."""


class ESignature(Strict):
    signed_at: AwareDatetime
    """When the customer signed the loan contract."""
    document_sha256: Sha256Hex
    """SHA-256 of the signed document, hex."""


class Consents(Strict):
    credit_inquiry: bool
    """The customer consents to a credit-bureau inquiry."""
    data_processing: bool
    """The customer consents to the processing of personal data (PIPL)."""
    e_signature: ESignature | None = None
    """The electronic signature of the contract, if signed at application."""
    automated_decision: bool | None = None
    """False: the customer refuses a decision made by automation alone (PIPL art. 24). Every
    check still runs and the application is referred to a person. Absent or true: decided
    automatically."""


class Bank(Strict):
    deposit_balance: Money | None = None
    """Current deposit balance with the bank, CNY."""
    avg_balance_6m: Money | None = None
    """Average balance over six months, CNY."""
    savings_balance: Money | None = None
    """Savings balance, CNY."""
    relationship_years: Years | None = None
    """Years as the bank's customer."""
    payroll: bool | None = None
    """Salary is paid into an account at the bank."""


class Bureau(Strict):
    credit_history: CreditHistory | None = None
    """Credit-bureau summary of repayment history."""
    open_loans: Count | None = None
    """Loans open now."""
    overdue_count_24m: Count | None = None
    """Overdue payments in the last 24 months."""
    max_overdue_days: Count | None = None
    """Longest overdue period, days."""
    queries_3m: Count | None = None
    """Credit inquiries by lenders in the last three months."""
    multi_lender_count: Count | None = None
    """Lenders the applicant has borrowed from."""
    total_debt: Money | None = None
    """Outstanding debt, CNY."""


class Collateral(Strict):
    type: CollateralType
    """What secures the loan, if anything."""
    value: Money | None = None
    """Its value, CNY."""


class Business(Strict):
    uscc: Annotated[str, Field(min_length=18, max_length=18)]
    """Unified social credit code (GB 32100-2015), 18 characters; checked with the business registry."""
    name: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """Registered name of the business."""
    years_operating: Years | None = None
    """Years of operation as stated; rules use the registry's date instead."""
    annual_revenue: Money | None = None
    """Stated annual revenue, CNY."""


class RelatedParty(Strict):
    relation: Relation
    """How the party relates to the applicant."""
    name: Name
    """Full name."""
    id_number: IdNumber | None = None
    """Resident identity number, if known."""
    phone: Phone | None = None
    """Mainland mobile number, if known."""


def _not_an_id_number(value: str) -> str:
    # The id is the idempotency key: stored, echoed in every answer and callback. An ID number
    # there would keep personal data raw where nothing can mask it (PIPL minimisation).
    if id_number_valid(value):
        raise ValueError("is a resident ID number; send the bank's own application id, not personal data")
    return value


ApplicationId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$"), AfterValidator(_not_an_id_number)]


class Attachment(Strict):
    type: AttachmentType
    """What the document is."""
    sha256: Sha256Hex
    """SHA-256 of the document, hex (the document stays with the bank)."""


class DecisionRequest(Strict):
    """POST /v1/decisions body."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True,
                              use_attribute_docstrings=True, json_schema_extra={"examples": [EXAMPLE_REQUEST]})

    application_id: ApplicationId
    """The bank's id of this application; also the idempotency key. A resident ID number is
    refused: the id is stored, echoed and logged, so it must not be personal data."""
    product: Annotated[str, Field(min_length=1, max_length=64)]
    """A product code from rules/products.yaml."""
    channel: Channel
    """Where the customer applied."""
    submitted_at: AwareDatetime
    """When the customer pressed submit, with its UTC offset."""
    applicant: Applicant
    """Who applies."""
    loan: Loan
    """What is asked for."""
    device: Device
    """The device the customer applied from."""
    verification: Verification
    """What the app collected for the identity checks."""
    consents: Consents
    """The customer's consents."""
    bank: Bank | None = None
    """The bank's own data on the customer."""
    bureau: Bureau | None = None
    """Credit-bureau summary."""
    collateral: Collateral | None = None
    """Collateral, if any."""
    business: Business | None = None
    """The business, for merchant products."""
    related_parties: Annotated[list[RelatedParty], Field(max_length=20)] | None = None
    """Spouse, guarantors, partners and contacts."""
    attachments: Annotated[list[Attachment], Field(max_length=20)] | None = None
    """Documents the customer uploaded, by hash."""


# --- response -------------------------------------------------------------------------------


class Offer(Documented):
    amount: float
    """Amount offered, CNY."""
    limit: float
    """Credit limit, CNY."""
    term_months: int
    """Term, months."""
    annual_rate: float
    """Annual interest rate, e.g. 0.0435."""
    rate_tier: str
    """The product's rate tier."""


class Reason(Documented):
    code: str
    """Reason code: a rule id or a strategy reason (UPPER_SNAKE_CASE)."""
    stage: Stage
    """The stage that gave it."""
    message: str
    """What it means for the applicant."""


class Score(Documented):
    model: str
    """The model and its version."""
    pd: float
    """Probability of default."""
    points: float
    """Score points (higher is better)."""
    grade: str
    """Risk grade, A (best) to E."""


class Versions(Documented):
    ruleset: str
    """The ruleset version."""
    model: str | None
    """The scoring model version, null if unscored."""
    service: str
    """The service version."""


class Experiment(Documented):
    arm: str
    """The champion/challenger arm that decided."""


class TraceStage(Documented):
    stage: Stage
    """The stage."""
    ms: float = Field(description="wall time of the stage in milliseconds")
    reasons: list[str]
    """Reason codes it gave."""
    detail: dict = Field(default_factory=dict, description="rules evaluated, provider calls, …")


class ReviewReason(Documented):
    code: str
    """A reason code declared in products.yaml's review_reasons."""
    message: str
    """What it means for the applicant."""


class ReviewBlock(Documented):
    case_id: str
    """The review case: 'rev_' and a ULID."""
    state: Literal["open", "claimed", "awaiting_confirmation", "confirming", "decided"]
    """Where the case is; only 'decided' is final."""
    due_at: AwareDatetime
    """The review deadline (submitted_at + the product's review SLA)."""
    decided_by: str | None
    """The reviewer's key name that decided (proposed, under four eyes)."""
    confirmed_by: str | None
    """The second reviewer's key name, when the four-eyes rule applied."""
    decided_at: AwareDatetime | None
    """When the case was finally decided."""
    reason: ReviewReason | None
    """The reviewer's reason."""


class AutomaticOutcome(Documented):
    outcome: Outcome
    """What the service decided automatically ('refer')."""
    offer: Offer | None
    """Always null for a referral."""
    reasons: list[Reason]
    """Why it was referred."""
    decided_at: AwareDatetime
    """When the automatic decision was made."""


class DecisionResponse(Documented):
    model_config = ConfigDict(use_attribute_docstrings=True, json_schema_extra={"examples": [EXAMPLE_RESPONSE]})

    decision_id: str
    """This decision's id: 'dec_' and a ULID."""
    application_id: str
    """The application's id, as sent."""
    outcome: Outcome
    """approve, decline or refer."""
    offer: Offer | None
    """The offer when approved; null otherwise."""
    reasons: list[Reason]
    """Why, one entry per reason code."""
    score: Score | None
    """The credit score; null when scoring did not run."""
    versions: Versions
    """What decided: ruleset, model, service."""
    experiment: Experiment
    """The experiment arm."""
    submitted_at: AwareDatetime
    """When the customer pressed submit, as sent."""
    decided_at: AwareDatetime
    """When the decision was made (UTC)."""
    disburse_by: AwareDatetime = Field(description="submitted_at + 10 minutes: the SLA end")
    elapsed_ms: float
    """Time to decide inside the service, milliseconds."""
    trace: list[TraceStage] | None = Field(None, description="present with ?explain=true")
    automatic: AutomaticOutcome | None = None
    """For a referred application (GET only): the automatic outcome, kept beside the final one."""
    review: ReviewBlock | None = None
    """For a referred application (GET only): its review case; once decided, ``outcome``,
    ``offer``, ``reasons`` and ``decided_at`` are the review's."""


class FieldError(Documented):
    field: str = Field(description="JSON path of the bad field, e.g. applicant.id_number")
    pointer: str = Field(description="the same path as an RFC 6901 JSON pointer")
    message: str
    """What is wrong with it."""


class Problem(Documented):
    """RFC 9457 problem details (application/problem+json)."""

    type: str
    """A URI naming the kind of problem."""
    title: str
    """The status's name."""
    status: int
    """The HTTP status."""
    detail: str
    """What went wrong, for a person."""
    errors: list[FieldError] | None = None
    """Each bad field, for 422."""


# --- admin: lists ---------------------------------------------------------------------------


class ListChange(Strict):
    """POST/DELETE /admin/lists/{name}/entries body: who changes what, and why (audited)."""

    values: Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]],
                      Field(min_length=1, max_length=10_000)]
    """The entries to add or remove (checked for the list's kind)."""
    actor: Annotated[str, Field(min_length=1, max_length=64, description="the person making the change")]
    reason: Annotated[str, Field(min_length=1, max_length=500, description="why: ticket, case number")]


# --- the manual-review channel ---------------------------------------------------------------

ReviewState = Literal["open", "claimed", "awaiting_confirmation", "confirming", "decided"]
Note = Annotated[str, Field(min_length=1, max_length=2000)]


class ReviewOffer(Strict):
    amount: Annotated[float, Field(gt=0, le=MONEY_MAX)]
    """Amount offered, CNY: within the product's limits and the whitelist limit."""
    term_months: Annotated[int, Field(gt=0, le=600)]
    """One of the product's terms."""
    rate_tier: Annotated[str, Field(min_length=1, max_length=16)]
    """One of the product's rate tiers; the rate is the tier's."""


class ReviewVerdict(Strict):
    """POST /v1/reviews/{case_id}/decide body."""

    outcome: Literal["approve", "decline"]
    """The reviewer's decision."""
    reason: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")]
    """A reason code declared for that outcome in products.yaml's review_reasons."""
    note: Note
    """What the reviewer checked (kept in the case's audit, with ID numbers and phones masked)."""
    offer: ReviewOffer | None = None
    """Required to approve; absent to decline."""


class ReviewNote(Strict):
    """POST /v1/reviews/{case_id}/release, /confirm body (optional)."""

    note: Note | None = None
    """Why (kept in the case's audit, masked)."""


class ReviewRejection(Strict):
    """POST /v1/reviews/{case_id}/reject body."""

    note: Note
    """Why the proposed approval is rejected (kept in the case's audit, masked)."""


class ReviewCase(Documented):
    case_id: str
    """The case: 'rev_' and a ULID."""
    decision_id: str
    """The automatic decision that referred it."""
    application_id: str
    """The bank's application id."""
    product: str
    """The product applied for."""
    state: ReviewState
    """open, claimed, awaiting_confirmation (four eyes), confirming, decided."""
    amount: float
    """The amount applied for, CNY."""
    priority: Literal["normal", "high", "urgent"] | None
    """normal; high from half the SLA; urgent from the deadline. Null once decided."""
    opened_at: AwareDatetime
    """When the case was opened (the automatic decision's time)."""
    due_at: AwareDatetime
    """The deadline: submitted_at + the product's review SLA."""
    seconds_left: float
    """Until the deadline (negative: breached)."""
    holder: str | None
    """The reviewer key holding the claim."""
    lease_until: AwareDatetime | None
    """When the claim lapses unless renewed by claiming again."""
    breached: bool
    """Still undecided at its deadline (counted once)."""
    proposal: dict[str, Any] | None
    """An approval waiting for a second reviewer: outcome, offer, reason, note, by, at."""


class ReviewQueue(Documented):
    cases: list[ReviewCase]
    """Earliest deadline first."""
    next_cursor: str | None
    """Pass as ?cursor= for the next page; null on the last."""


class ReviewEvent(Documented):
    at: AwareDatetime
    """When it happened."""
    key: str
    """The API key's name, or 'system' (lease expiry, deadline)."""
    action: Literal["opened", "claimed", "renewed", "released", "expired", "proposed", "decided", "confirmed",
                    "rejected", "breached"]
    """What happened."""
    from_: str | None = Field(alias="from", description="the state before (null when opened)")
    to: str
    """The state after."""
    note: str | None
    """The reviewer's note, masked; or what the system did."""


class ReviewCaseDetail(ReviewCase):
    origin: Literal["referral", "applicant_request", "no_automated_decision"]
    """Why a person reviews it: automation referred it; the applicant asked for a review of an
    automatic decision; or the applicant refused an automated decision."""
    request_reason: str | None
    """The applicant's reason, when they asked for the review (masked)."""
    application: dict[str, Any]
    """The application, personal data masked (name, ID number, phone)."""
    whitelist: dict[str, Any]
    """The pre-approval: listed, limit, segment, rate_tier, expired."""
    checks: dict[str, Any]
    """Verification results by check."""
    reasons: list[Reason]
    """Why it was referred."""
    flags: list[str]
    """Fraud rules that flagged without deciding."""
    score: Score | None
    """The credit score, if scoring ran."""
    verdict: dict[str, Any] | None
    """The final verdict, once decided."""
    automatic: dict[str, Any]
    """The automatic decision: outcome (what automation said or, for an applicant who refused
    automation, would have said), offer, decided_at, versions."""
    trace: list[TraceStage] | None
    """The decision's trace: every rule and the values it read, provider calls."""
    history: list[ReviewEvent]
    """Every transition, oldest first."""


# --- admin: labels --------------------------------------------------------------------------


class LabelRow(Strict):
    application_id: ApplicationId
    """The application the loan came from."""
    status: Literal["good", "bad"]
    """How the loan performed, by the bank's definition of bad."""
    days_past_due: Annotated[int, Field(ge=0, le=10_000)]
    """Days past due when observed."""
    observed_on: dt.date
    """When it was observed; a later observation replaces an earlier one."""


class LabelBatch(Strict):
    """POST /admin/labels body."""

    labels: Annotated[list[LabelRow], Field(min_length=1, max_length=10_000)]
    """Up to 10,000 outcomes, each application once."""


# --- the applicant's rights (PIPL art. 24) ----------------------------------------------------


class ReviewRequest(Strict):
    """POST /v1/decisions/{decision_id}/review-request body."""

    reason: Annotated[str, Field(min_length=1, max_length=1000)]
    """Why the applicant asks for a person to decide, in their words (kept masked)."""


class ExplanationReason(Documented):
    code: str
    """Reason code."""
    stage: Stage
    """The stage that gave it."""
    message: str
    """What it means, in the response's language."""


class ExplanationFactor(Documented):
    input: str
    """The model input (the features reading one value count as one input)."""
    label: str
    """Its name in the response's language."""
    value: Any
    """The applicant's value."""
    best: Any
    """Its best attribute: the value that would have given the most points."""
    points: float
    """Points this input contributed against its best attribute (negative: it lowered the score)."""
    text: str | None = None
    """The factor in plain language, for an input that lowered the score."""


class ExplanationFactors(Documented):
    available: bool
    """False when the model version cannot be loaded any more (``why`` says why)."""
    why: str | None = None
    """Why there are no factors."""
    method: Literal["exact", "shapley-sampled"] | None = None
    """exact: a scorecard's points per attribute; shapley-sampled: Shapley values against the
    reference applicant over sampled orders of the inputs (docs/API.md)."""
    points: float | None = None
    """The applicant's points, unrounded."""
    reference_points: float | None = None
    """The reference applicant's points (every input at its best attribute); the factors'
    points add up to ``points - reference_points``."""
    top: list[ExplanationFactor] = []
    """The inputs that lowered the score most (up to four)."""
    all: list[ExplanationFactor] = []
    """Every input, the most points lost first."""


class FiredRule(Documented):
    stage: Stage
    """The stage of the rule."""
    id: str
    """The rule id."""
    action: str | None
    """decline, refer or flag."""
    read: dict[str, Any]
    """The facts the rule read and their values when it fired (personal data masked)."""


class HumanReview(Documented):
    case_id: str | None
    """The review case, if a person reviews or reviewed the decision."""
    state: ReviewState | None
    """Its state."""
    may_request_until: AwareDatetime | None
    """Until when the applicant may ask for a person to review this automatic decision."""


class Explanation(Documented):
    """GET /v1/decisions/{decision_id}/explanation."""

    decision_id: str
    """The decision."""
    application_id: str
    """The bank's application id."""
    language: Literal["zh", "en"]
    """The language of the texts (from Accept-Language; Chinese by default)."""
    outcome: Outcome
    """The final outcome."""
    decided_by: Literal["automation", "person"]
    """Whether a person made the final decision."""
    decided_at: AwareDatetime
    """When the final decision was made."""
    reasons: list[ExplanationReason]
    """Why, in plain language."""
    score: Score | None
    """The score, if the application was scored."""
    factors: ExplanationFactors | None
    """What lowered the score, if it was scored."""
    rules: list[FiredRule]
    """The rules that fired and the values they read."""
    versions: dict[str, str | None]
    """ruleset, model, feature_spec and service versions the decision was made on."""
    human_review: HumanReview
    """The applicant's right to a human decision."""
