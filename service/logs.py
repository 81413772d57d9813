"""Structured JSON logs, one object per line, with personal data masked."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

_ID_NUMBER = re.compile(r"(?<![0-9])([1-9][0-9]{2})[0-9]{13}([0-9][0-9Xx])(?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<![0-9])(1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9])")


def mask_id_number(value: str) -> str:
    """'11010519491231002X' → '110*************2X'."""
    return value[:3] + "*" * (len(value) - 5) + value[-2:] if len(value) > 5 else "*" * len(value)


def mask_phone(value: str) -> str:
    """'13800138000' → '138****8000'."""
    return value[:3] + "****" + value[-4:] if len(value) == 11 else "*" * len(value)


def mask_name(name: str) -> str:
    """'王小明' → '王**': the family name, enough to greet the applicant."""
    return name[:1] + "*" * (len(name) - 1)


def _mask_many(mask: Any) -> Any:
    return lambda values: [mask(v) for v in values] if isinstance(values, list) else values


def _mask_items(masks: dict[str, Any]) -> Any:
    """A list of parties or attachments as plain, masked mappings: the request's objects are not
    JSON, and their fields hold ID numbers and phones."""
    def mask(items: Any) -> Any:
        return [{name: (masks[name](value) if name in masks and value is not None else value)
                 for name, value in (item.model_dump() if hasattr(item, "model_dump") else dict(item)).items()}
                for item in items]
    return mask


# Facts that are personal data, and how a stored trace or a page shows them.
PERSONAL_FACTS = {
    "applicant.name": mask_name, "applicant.id_number": mask_id_number, "applicant.phone": mask_phone,
    "related.id_numbers": _mask_many(mask_id_number), "related.phones": _mask_many(mask_phone),
    "device.device_id": lambda v: "*" * len(v), "device.ip": lambda v: "*" * len(v),
    "device.gps.lat": lambda v: round(v), "device.gps.lon": lambda v: round(v),
    "related_parties": _mask_items({"name": mask_name, "id_number": mask_id_number, "phone": mask_phone}),
    "attachments": _mask_items({}),
}


def mask_fact(path: str, value: Any) -> Any:
    """A fact's value as it may be stored in a trace: personal data masked."""
    mask = PERSONAL_FACTS.get(path)
    return mask(value) if mask is not None and value is not None else value


def mask_text(text: str) -> str:
    """Mask anything shaped like an ID number or a mainland mobile number in free text."""
    text = _ID_NUMBER.sub(lambda m: m.group(1) + "*" * 13 + m.group(2), text)
    return _PHONE.sub(lambda m: m.group(1) + "****" + m.group(2), text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # Masked as a whole line: any field, at any depth, may carry what a client typed (an
        # application id that is an ID number, an actor's free text).
        return mask_text(orjson.dumps(entry, default=str).decode())


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
