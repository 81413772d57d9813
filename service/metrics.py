"""Every Prometheus metric of the service, defined once.

Names follow Prometheus conventions (base units, ``_seconds``, ``_total``). Labels are bounded
sets (route templates, outcomes, product codes, rule ids): never an id number, phone or any
per-application value.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram, Info

# Latency buckets placed at the objectives the alerts use (ops/prometheus/alerts.yml): 10 ms (the
# service's own budget, single-digit ms), 15 ms (p99 at 500 decisions/s), 3 s (the verification
# deadline), with enough in between for useful quantiles.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 3.0, 5.0)
# The SLA clock runs from the customer's submission (``submitted_at``) to the decision; the whole
# application-to-disbursement path has 10 minutes.
SLA_SECONDS = 600
SLA_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

HTTP_REQUESTS = Counter(
    "loan_http_requests_total", "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
)
DECISION_SECONDS = Histogram(
    "loan_decision_duration_seconds", "Time to answer POST /v1/decisions, inside the service.",
    buckets=LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "loan_stage_duration_seconds", "Time spent in each pipeline stage.", ["stage"],
    buckets=LATENCY_BUCKETS,
)
DECISIONS = Counter(
    "loan_decisions_total", "Decisions made, by outcome, product and experiment arm.",
    ["outcome", "product", "arm"],
)
SHADOW_DECISIONS = Counter(
    "loan_shadow_decisions_total",
    "Shadow-arm evaluations (recorded, never answered), by arm, its outcome, product and whether "
    "it agrees with the live outcome.",
    ["arm", "outcome", "product", "agrees"],
)
RULE_HITS = Counter(
    "loan_rule_hits_total",
    "Rules that fired (validation, fraud: action decline/refer/flag/error) and strategy rows that "
    "matched (action: their outcome), by rule id.",
    ["rule", "action", "stage"],
)
SLA_ELAPSED = Histogram(
    "loan_sla_elapsed_seconds", "From the application's submitted_at to its final decision (the SLA "
    "clock; a referral's stops when its review decides).",
    ["product"], buckets=SLA_BUCKETS,
)
SLA_BREACHES = Counter(
    "loan_sla_breaches_total", "Decisions made when submitted_at + 10 minutes had already passed.",
    ["product"],
)
REASON_CODES = Counter(
    "loan_reason_codes_total", "Reason codes given in decisions.", ["code", "stage"],
)
IDEMPOTENT_REPLAYS = Counter(
    "loan_idempotent_replays_total", "Requests answered from a stored decision, by result.",
    ["result"],  # replayed | conflict
)
STORE_COMMIT_SECONDS = Histogram(
    "loan_store_commit_duration_seconds", "Decision-store group commit latency (incl. fsync).",
    buckets=LATENCY_BUCKETS,
)
STORE_BATCH_SIZE = Histogram(
    "loan_store_commit_batch_size", "Decisions per group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
# The manual-review channel. Gauges are read from the shared store by every replica: aggregate
# them with max(), not sum(). Counters count each event once, fleet-wide.
REVIEW_CASES = Gauge(
    "loan_review_cases", "Undecided review cases, by product and state (the queue).", ["product", "state"],
)
REVIEW_OLDEST_SECONDS = Gauge(
    "loan_review_oldest_case_age_seconds", "Age of the oldest undecided review case, by product.", ["product"],
)
REVIEW_BREACHES = Counter(
    "loan_review_breaches_total", "Review cases still undecided at their deadline, by product.", ["product"],
)
REVIEW_DECISIONS = Counter(
    "loan_review_decisions_total", "Review cases finished, by final outcome and product.", ["outcome", "product"],
)
REVIEW_SECONDS = Histogram(
    "loan_review_duration_seconds", "From a case's opening to its final decision.", ["product"],
    buckets=SLA_BUCKETS,
)
REVIEW_TRANSITIONS = Counter(
    "loan_review_transitions_total", "Review case transitions, by action.", ["action"],
)
CALLBACK_DELIVERIES = Counter(
    "loan_callback_deliveries_total", "Attempts to deliver a final decision to the bank's backend, by result.",
    ["result"],  # delivered | http_error | timeout | unreachable
)
CALLBACK_PENDING = Gauge("loan_callback_pending", "Final-decision events not yet delivered.")
CALLBACK_OLDEST_SECONDS = Gauge(
    "loan_callback_oldest_pending_seconds", "Age of the oldest undelivered final-decision event (0: none).",
)
RULE_RELOADS = Counter("loan_rule_reloads_total", "Ruleset reloads, by result.", ["result"])
RULESET_INFO = Info("loan_ruleset", "The active ruleset version.")
READY = Gauge("loan_ready", "1 when rules, models and stores are loaded and usable.")
BUILD_INFO = Info("loan_build", "Service version.")
MODEL_POINTS = Histogram(
    "loan_model_score_points", "Scorecard points of scored applications, by model name.", ["model"],
    buckets=tuple(range(450, 776, 25)),
)
MODEL_REFUSED = Counter(
    "loan_model_refused_total", "Applications left unscored because a feature was missing.", ["model"],
)
MODEL_INFO = Gauge("loan_model_info", "Loaded credit models (value 1), by name and version.",
                   ["model", "version"])
PROVIDER_CALLS = Counter(
    "loan_provider_calls_total", "Verification provider calls, by provider and result.",
    ["provider", "result"],  # ok | timeout | unavailable | bad_response | circuit_open | …
)
PROVIDER_SECONDS = Histogram(
    "loan_provider_call_duration_seconds", "Verification provider call latency (each attempt).",
    ["provider"], buckets=LATENCY_BUCKETS,
)
BREAKER_STATE = Gauge(
    "loan_provider_breaker_state", "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
    ["provider"],
)
BREAKER_TRANSITIONS = Counter(
    "loan_provider_breaker_transitions_total", "Circuit breaker transitions, by provider and new state.",
    ["provider", "state"],
)


_CHILDREN: dict[tuple[Any, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once per label set: the hot path counts a decision
    in a dozen series. Label values are bounded sets (never a client's free text), so is this."""
    key = (metric, labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found
