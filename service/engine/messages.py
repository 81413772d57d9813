"""What a reason says to the applicant, in the languages the service answers in.

Every rule, strategy row and review reason carries its message in Chinese (``zh``, the default
for this market) and English (``en``); lint refuses a message without both. A stored decision
keeps both (``messages`` beside each reason), so a retry or a later read can be answered in
another language than the first request's, even after the rules have changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

LANGUAGES = ("zh", "en")
DEFAULT = "zh"


@dataclass(frozen=True, slots=True)
class Message:
    zh: str
    en: str

    def text(self, language: str) -> str:
        return self.en if language == "en" else self.zh

    def as_dict(self) -> dict[str, str]:
        return {"zh": self.zh, "en": self.en}


def negotiate(accept_language: str | None) -> str:
    """The language to answer in from an ``Accept-Language`` header (RFC 9110 §12.5.4): the
    supported one with the highest weight; Chinese when none is acceptable or none is asked for."""
    if not accept_language:
        return DEFAULT
    best, best_q = DEFAULT, -1.0
    for item in accept_language.split(",")[:20]:
        tag, _, params = item.strip().partition(";")
        weight = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                weight = float(params[2:])
            except ValueError:
                continue
        primary = tag.strip().split("-", 1)[0].lower()
        language = DEFAULT if primary == "*" else primary
        # Earlier items win ties: the header's order is the client's order of preference.
        if language in LANGUAGES and weight > 0 and weight > best_q:
            best, best_q = language, weight
    return best


def localise_reasons(reasons: list[dict[str, Any]], language: str) -> None:
    """Set each reason's ``message`` to its text in ``language`` (in place)."""
    for reason in reasons:
        texts = reason.get("messages")
        if texts and language in texts:
            reason["message"] = texts[language]


def localise(body: bytes, language: str) -> bytes:
    """A stored decision (stored in the default language) answered in ``language``."""
    if language == DEFAULT:
        return body
    decision = orjson.loads(body)
    localise_reasons(decision.get("reasons") or [], language)
    automatic = decision.get("automatic")
    if automatic:
        localise_reasons(automatic.get("reasons") or [], language)
    return orjson.dumps(decision)
