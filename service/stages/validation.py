"""Stage 1, validation: the risk team's field-level rules (``rules/validation.yaml``).

Business-rule failures (a wrong check digit, an applicant under age, an amount outside the
product's range) are decisions — a decline with one reason code per failed rule — not 422s.
"""

from __future__ import annotations

from typing import Any

from service.engine.ruleset import Ruleset
from service.stages.decision import NO_LISTS, Decision, evaluate_rules

NAME = "validation"


def skip(d: Decision) -> str | None:
    return None


def run(d: Decision) -> dict[str, Any]:
    return evaluate_rules(d, d.ruleset.validation)


def declines(facts: dict[str, Any], ruleset: Ruleset) -> bool:
    """Would validation decline these facts? Gathering asks before it calls any paid provider.
    Validation rules read only the application's own fields (no lists: checked at lint)."""
    rules = ruleset.validation
    errors_decline = rules.on_error == "decline"
    for rule in rules.rules:
        if rule.action != "decline" and not errors_decline:
            continue
        try:
            hit = rule.when.fn(facts, NO_LISTS)
        except Exception:  # noqa: BLE001 - counted as the file's on_error says, as in run()
            if errors_decline:
                return True
            continue
        if hit and rule.action == "decline":
            return True
    return False
