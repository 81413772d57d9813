"""Stage 6, strategy: the arm's decision table gives outcome and offer.

Runs only when nothing has declined or referred the application: a table row can only approve
what the earlier stages let through, or decline or refer it for its own reason. Hit policies:
``first`` — the first row that holds decides; ``priority`` — of the rows that hold, the one with
the strongest outcome (decline, then refer, then approve; the first among equals);
``collect`` — every row that holds declines or refers with its reason, and if none does, the
first approving row that holds gives the offer.
"""

from __future__ import annotations

from typing import Any

from service.engine.ruleset import Strategy, StrategyRow
from service.outcome import Outcome
from service.stages.decision import REVIEW_MESSAGE, Decision, read_values

NAME = "strategy"
STRATEGY_ERROR = "STRATEGY_ERROR"
_STRENGTH = {"decline": 2, "refer": 1, "approve": 0}


def skip(d: Decision) -> str | None:
    if d.declined:
        return "already declined"
    return "already referred" if d.referred else None


def run(d: Decision) -> dict[str, Any]:
    strategy = d.arm.strategy
    tried: list[str] = []
    hits: list[StrategyRow] = []
    for row in strategy.rows:
        tried.append(row.id)
        try:
            matched = row.when.fn(d.facts, d.lists)
        except Exception as exc:  # noqa: BLE001 - a broken row refers/declines, never 500s
            return _error(d, tried, f"{row.id}: {type(exc).__name__}")
        if matched:
            if strategy.hit == "first":
                return _apply(d, strategy, row, tried)
            hits.append(row)
    if not hits:
        return _error(d, tried, "no row matched")
    if strategy.hit == "priority":
        return _apply(d, strategy, max(hits, key=lambda r: _STRENGTH[r.outcome]), tried, hits)
    refusing = [row for row in hits if row.outcome != "approve"]
    if not refusing:
        return _apply(d, strategy, hits[0], tried, hits)
    for row in refusing:
        d.add_reason(row.reason_code or row.id, NAME, row.message or REVIEW_MESSAGE, row.outcome)
    deciding = max(refusing, key=lambda r: _STRENGTH[r.outcome])
    return {"rows": tried, "matched": deciding.id, "hits": [r.id for r in hits], "read": _read(d, hits)}


def _error(d: Decision, tried: list[str], why: str) -> dict[str, Any]:
    d.add_reason(STRATEGY_ERROR, NAME, REVIEW_MESSAGE, d.arm.strategy.on_error)
    return {"rows": tried, "error": why}


def _read(d: Decision, rows: list[StrategyRow]) -> dict[str, Any]:
    fields = frozenset().union(*(row.when.fields for row in rows))
    return read_values(fields, d.facts)


def _apply(d: Decision, strategy: Strategy, row: StrategyRow, tried: list[str],
           hits: list[StrategyRow] | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"rows": tried, "matched": row.id}
    if hits is not None:
        detail["hits"] = [r.id for r in hits]
    detail["read"] = read_values(row.when.fields, d.facts)
    facts, lists = d.facts, d.lists
    try:  # a column table's outputs, which its offer reads as table.NAME
        for name in strategy.outputs:
            cell = row.outputs.get(name)
            facts[f"table.{name}"] = cell.fn(facts, lists) if cell is not None else None
    except Exception as exc:  # noqa: BLE001 - as a broken row
        return _error(d, tried, f"{row.id}: {type(exc).__name__}")
    if strategy.outputs:
        detail["outputs"] = {name: facts[f"table.{name}"] for name in strategy.outputs}
    if row.outcome != "approve":
        d.add_reason(row.reason_code or row.id, NAME, row.message or REVIEW_MESSAGE, row.outcome)
        return detail
    offer = row.offer
    assert offer is not None and d.product is not None
    try:
        amount = offer.amount.fn(facts, lists)
        limit = offer.limit.fn(facts, lists)
        term = offer.term_months.fn(facts, lists)
        tier = offer.rate_tier.fn(facts, lists)
    except Exception as exc:  # noqa: BLE001 - as a broken row
        return _error(d, tried, f"{row.id} offer: {type(exc).__name__}")
    rate = d.product.rate_tiers.get(tier)
    if amount is None or limit is None or term is None or rate is None or amount <= 0 \
            or limit < amount or term not in d.product.terms:
        d.add_reason(STRATEGY_ERROR, NAME, REVIEW_MESSAGE, strategy.on_error)
        return {**detail, "error": f"invalid offer (amount={amount}, limit={limit}, term={term}, tier={tier})"}
    d.say(Outcome.APPROVE)
    d.offer = {"amount": float(amount), "limit": float(limit), "term_months": int(term),
               "annual_rate": rate, "rate_tier": tier}
    return detail
