"""RFC 9457 problem details: every error the API returns, in one shape."""

from __future__ import annotations

import json
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
    429: "Too many requests",
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


class _Duplicated(dict):  # type: ignore[type-arg]
    """An object in which a key appeared more than once (the keys in ``duplicates``)."""

    duplicates: list[str]


def _where(value: Any, loc: tuple[int | str, ...]) -> list[tuple[int | str, ...]]:
    found = [loc + (key,) for key in value.duplicates] if isinstance(value, _Duplicated) else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _where(item, loc + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _where(item, loc + (index,))
    return found


def reject_duplicate_keys(body: bytes) -> None:
    """ProblemError 422 naming every key that appears twice in one object, at any depth: a
    gateway that reads the first of two keys and a service that reads the last would decide on
    different applications. Not JSON at all is left to the schema's own error."""
    marked = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal marked
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        seen: set[str] = set()
        duplicated = _Duplicated(obj)
        duplicated.duplicates = sorted({k for k, _ in items if k in seen or seen.add(k)})  # type: ignore[func-returns-value]
        marked = True
        return duplicated

    try:
        doc = json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return
    if marked:
        where = _where(doc, ())
        raise ProblemError(422, "duplicate-keys", f"{len(where)} key(s) appear more than once in one object",
                           [{"field": json_path(loc), "pointer": json_pointer(loc),
                             "message": "duplicate key: each key may appear once"} for loc in where])
