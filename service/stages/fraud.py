"""Stage 4, fraud: the anti-fraud rules (``rules/fraud.yaml``) over the application and what was
gathered for it: verification results, lists, whitelist and velocity facts."""

from __future__ import annotations

from typing import Any

from service.stages.decision import Decision, evaluate_rules

NAME = "fraud"


def skip(d: Decision) -> str | None:
    return None


def run(d: Decision) -> dict[str, Any]:
    return evaluate_rules(d, d.ruleset.fraud)
