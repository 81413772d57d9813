"""RFC 9457 problem details: every error the API returns, in one shape."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

PROBLEM_TYPE = "https://loan-decision.dev/problems/"
MEDIA_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal error",
    503: "Service unavailable",
}


class ProblemError(Exception):
    """Raised by request handling code; mapped to a problem+json response at the edge."""

    def __init__(self, status: int, slug: str, detail: str, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> bytes:
        doc: dict[str, Any] = {
            "type": PROBLEM_TYPE + self.slug,
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            doc["errors"] = self.errors
        return orjson.dumps(doc)


def json_path(loc: tuple[int | str, ...]) -> str:
    """('applicant', 'id_number') → 'applicant.id_number'; list items as 'related_parties[0].name'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "$"


def json_pointer(loc: tuple[int | str, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def from_validation_error(exc: ValidationError) -> ProblemError:
    errors = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        errors.append({"field": json_path(loc), "pointer": json_pointer(loc), "message": message})
    if len(errors) == 1 and errors[0]["field"] == "$" and exc.errors()[0]["type"] == "json_invalid":
        detail = "the body is not valid JSON: " + errors[0]["message"].removeprefix("Invalid JSON: ")
    else:
        detail = f"{len(errors)} field(s) failed validation"
    return ProblemError(422, "validation", detail, errors)
