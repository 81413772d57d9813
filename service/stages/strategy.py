"""Stage 6, strategy: the first matching row of the arm's decision table gives outcome and offer.

Runs only when nothing has declined or referred the application: a table row can only approve
what the earlier stages let through, or decline or refer it for its own reason.
"""

from __future__ import annotations

from typing import Any

from service.engine.ruleset import StrategyRow
from service.outcome import Outcome
from service.stages.decision import REVIEW_MESSAGE, Decision, read_values

NAME = "strategy"
STRATEGY_ERROR = "STRATEGY_ERROR"


def skip(d: Decision) -> str | None:
    if d.declined:
        return "already declined"
    return "already referred" if d.referred else None


def run(d: Decision) -> dict[str, Any]:
    facts, lists = d.facts, d.lists
    strategy = d.arm.strategy
    tried: list[str] = []
    for row in strategy.rows:
        tried.append(row.id)
        try:
            matched = row.when.fn(facts, lists)
            if matched:
                return _apply(d, row, tried)
        except Exception as exc:  # noqa: BLE001 - a broken row refers/declines, never 500s
            d.add_reason(STRATEGY_ERROR, NAME, REVIEW_MESSAGE, strategy.on_error)
            return {"rows": tried, "error": f"{row.id}: {type(exc).__name__}"}
    d.add_reason(STRATEGY_ERROR, NAME, REVIEW_MESSAGE, strategy.on_error)
    return {"rows": tried, "error": "no row matched"}


def _apply(d: Decision, row: StrategyRow, tried: list[str]) -> dict[str, Any]:
    if row.outcome != "approve":
        d.add_reason(row.reason_code or row.id, NAME, row.message or REVIEW_MESSAGE, row.outcome)
        return {"rows": tried, "matched": row.id, "read": read_values(row.when.fields, d.facts)}
    offer = row.offer
    assert offer is not None and d.product is not None
    facts, lists = d.facts, d.lists
    amount = offer.amount.fn(facts, lists)
    limit = offer.limit.fn(facts, lists)
    term = offer.term_months.fn(facts, lists)
    tier = offer.rate_tier.fn(facts, lists)
    rate = d.product.rate_tiers.get(tier)
    if amount is None or limit is None or term is None or rate is None or amount <= 0 \
            or limit < amount or term not in d.product.terms:
        d.add_reason(STRATEGY_ERROR, NAME, REVIEW_MESSAGE, d.arm.strategy.on_error)
        return {"rows": tried, "matched": row.id, "read": read_values(row.when.fields, d.facts),
                "error": f"invalid offer (amount={amount}, limit={limit}, term={term}, tier={tier})"}
    d.say(Outcome.APPROVE)
    d.offer = {"amount": float(amount), "limit": float(limit), "term_months": int(term),
               "annual_rate": rate, "rate_tier": tier}
    return {"rows": tried, "matched": row.id, "read": read_values(row.when.fields, d.facts)}
