"""The strategy stage: the first matching row of the arm's decision table gives outcome and offer."""

from __future__ import annotations

from typing import Any

from service.engine.ruleset import StrategyRow
from service.pipeline import DecisionContext

STRATEGY_ERROR = "STRATEGY_ERROR"
ERROR_MESSAGE = "Your application needs a manual review."


class StrategyStage:
    name = "strategy"

    def skip_reason(self, ctx: DecisionContext) -> str | None:
        if ctx.declined:
            return "already declined"
        return "already referred" if ctx.referred else None

    async def run(self, ctx: DecisionContext) -> dict[str, Any]:
        facts, lists = ctx.facts, ctx.lists
        strategy = ctx.arm.strategy
        tried: list[str] = []
        for row in strategy.rows:
            tried.append(row.id)
            try:
                matched = row.when.fn(facts, lists)
                if matched:
                    return self._apply(ctx, row, tried)
            except Exception as exc:  # noqa: BLE001 - a broken row refers/declines, never 500s
                ctx.add_reason(STRATEGY_ERROR, "strategy", ERROR_MESSAGE, strategy.on_error)
                return {"rows": tried, "error": f"{row.id}: {type(exc).__name__}"}
        ctx.add_reason(STRATEGY_ERROR, "strategy", ERROR_MESSAGE, strategy.on_error)
        return {"rows": tried, "error": "no row matched"}

    def _apply(self, ctx: DecisionContext, row: StrategyRow, tried: list[str]) -> dict[str, Any]:
        if row.outcome != "approve":
            ctx.add_reason(row.reason_code or row.id, "strategy", row.message, row.outcome)
            return {"rows": tried, "matched": row.id}
        offer = row.offer
        assert offer is not None and ctx.product is not None
        facts, lists = ctx.facts, ctx.lists
        amount = offer.amount.fn(facts, lists)
        limit = offer.limit.fn(facts, lists)
        term = offer.term_months.fn(facts, lists)
        tier = offer.rate_tier.fn(facts, lists)
        rate = ctx.product.rate_tiers.get(tier)
        if amount is None or limit is None or term is None or rate is None or amount <= 0 \
                or limit < amount or term not in ctx.product.terms:
            ctx.add_reason(STRATEGY_ERROR, "strategy", ERROR_MESSAGE, ctx.arm.strategy.on_error)
            return {"rows": tried, "matched": row.id,
                    "error": f"invalid offer (amount={amount}, limit={limit}, term={term}, tier={tier})"}
        ctx.strategy_outcome = "approve"
        ctx.offer = {"amount": float(amount), "limit": float(limit), "term_months": int(term),
                     "annual_rate": rate, "rate_tier": tier}
        return {"rows": tried, "matched": row.id}
