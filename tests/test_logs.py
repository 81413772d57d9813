"""Personal data never reaches the logs unmasked."""

from __future__ import annotations

import io
import logging
import re

import orjson
import pytest

from service.logs import JsonFormatter, mask_id_number, mask_phone, mask_text
from tests.factories import CLIENT, application, id_number

ID_SHAPE = re.compile(r"[1-9]\d{5}(19|20)\d{2}(0[1-9]|1[0-2])\d{2}\d{3}[\dXx]")
PHONE_SHAPE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def test_masks():
    assert mask_id_number("11010519491231002X") == "110*************2X"
    assert mask_phone("13800138000") == "138****8000"
    text = mask_text("id 11010519491231002X phone 13800138000 amount 30000 ts 1700000000000")
    assert "11010519491231002X" not in text and "13800138000" not in text
    assert "30000" in text and "1700000000000" in text


@pytest.fixture
def log_lines():
    """The JSON log lines written while the test runs (all levels), as the service writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    yield lambda: stream.getvalue().splitlines()
    root.removeHandler(handler)
    root.setLevel(old)


async def test_decision_logs_hold_no_unmasked_id_or_phone(client, log_lines):
    ident = id_number("19850101", "440301", "555")
    body = application("app-log", applicant={"id_number": ident, "phone": "13912345678"},
                       related_parties=[{"relation": "spouse", "name": "Li", "id_number": id_number("19860101"),
                                         "phone": "13700001111"}])
    await client.post("/v1/decisions", content=orjson.dumps(body), headers=CLIENT)
    logging.getLogger("service.test").warning("customer %s called from %s", ident, "13912345678")
    lines = log_lines()
    (decision,) = [orjson.loads(line) for line in lines if '"msg":"decision"' in line]
    assert decision["application_id"] == "app-log" and decision["decision_id"].startswith("dec_")
    assert decision["outcome"] in ("approve", "decline", "refer") and decision["reasons"]
    assert set(decision["versions"]) == {"ruleset", "model", "service"}
    assert set(decision["stages_ms"]) == {"validation", "verification", "enrichment", "fraud", "scoring", "strategy"}
    assert decision["elapsed_ms"] > 0
    for line in lines:
        orjson.loads(line)
        assert not ID_SHAPE.search(line), line
        assert not PHONE_SHAPE.search(line), line


async def test_an_id_number_as_application_id_is_refused_and_kept_nowhere(client, runtime, log_lines):
    """The application id is stored and echoed in every answer: an ID number there would be kept
    raw. It is a 422 naming the field, nothing is stored, and the logs stay masked."""
    ident = id_number("19850101", "440301", "555")
    resp = await client.post("/v1/decisions", content=orjson.dumps(application(ident)), headers=CLIENT)
    assert resp.status_code == 422, resp.text
    assert "application_id" in resp.text and "resident ID number" in resp.text
    assert ident not in resp.text
    assert await runtime.store.find_by_application(ident) is None
    for line in log_lines():
        assert not ID_SHAPE.search(line), line
    wrong_check = ident[:-1] + ("1" if ident[-1] != "1" else "2")  # 18 digits, not an ID number
    ok = await client.post("/v1/decisions", content=orjson.dumps(application(wrong_check)), headers=CLIENT)
    assert ok.status_code == 200, ok.text


async def test_personal_data_typed_into_free_text_is_masked_in_logs_and_audit(client, runtime, log_lines):
    """A phone number sent as the application id, an ID number or phone in a list change's actor
    or reason: the log lines and the audit trail keep them masked."""
    from tests.factories import ADMIN

    ident = id_number("19850101", "440301", "555")
    await client.post("/v1/decisions", content=orjson.dumps(application("13912340000")), headers=CLIENT)
    change = {"values": ["13900001111"], "actor": f"desk {ident}", "reason": "caller 13912345678"}
    resp = await client.post("/admin/lists/black_phones/entries", json=change, headers=ADMIN)
    assert resp.status_code == 200
    lines = log_lines()
    assert any('"msg":"decision"' in line for line in lines) and any('"msg":"list changed"' in line for line in lines)
    for line in lines:
        assert not ID_SHAPE.search(line) and not PHONE_SHAPE.search(line), line
    (entry,) = runtime.lists.audit("black_phones")
    assert ident not in entry["actor"] and "13912345678" not in entry["reason"]
