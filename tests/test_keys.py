"""API keys: several per role, named (the name is what audit trails and logs record), with an
optional expiry; `loan-decision keys new` makes one."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import subprocess
import sys

import httpx
import pytest

from service.api.app import create_app
from service.api.auth import KeyRing
from service.api.problems import ProblemError
from service.config import REPO_ROOT, Settings, parse_api_keys
from service.runtime import Runtime

from .factories import application


def entry(role: str, name: str, key: str, expires: str = "") -> str:
    return f"{role}:{name}:{hashlib.sha256(key.encode()).hexdigest()}" + (f":{expires}" if expires else "")


def test_entries_are_named_may_expire_and_old_ones_still_read():
    old = f"client:{hashlib.sha256(b'k0').hexdigest()}"
    keys = parse_api_keys(",".join([old, entry("client", "bank-backend", "k1"), entry("admin", "ops-wang", "k2", "2027-03-31")]))
    assert [(k.role, k.name, k.expires) for k in keys] == [
        ("client", f"key-{hashlib.sha256(b'k0').hexdigest()[:12]}", None), ("client", "bank-backend", None),
        ("admin", "ops-wang", dt.date(2027, 3, 31))]


@pytest.mark.parametrize(("value", "message"), [
    ("root:x:" + "a" * 64, "entry 1: expected 'role:name:<sha256>"),
    ("client:x:abc", "entry 1: the hash must be 64 hex digits"),
    ("client:Bad Name:" + "a" * 64, "entry 1: a key name is lower-case"),
    ("client:x:" + "a" * 64 + ":31/03/2027", "entry 1: the expiry must be a date"),
    ("client:x:" + "a" * 64 + ",admin:y:" + "a" * 64, "entry 2: the same key twice"),
])
def test_a_bad_entry_is_named(value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("*", r"\*")):
        parse_api_keys(value)


def test_an_expired_key_is_refused_and_logged_by_name_never_by_value(caplog):
    ring = KeyRing(parse_api_keys(",".join([entry("client", "old-backend", "old-key", "2026-11-28"),
                                            entry("client", "new-backend", "new-key")])),
                   today=lambda: dt.date(2026, 11, 29))
    assert ring.require("Bearer new-key", "client") == "new-backend"  # rotation: both configured
    with caplog.at_level(logging.WARNING), pytest.raises(ProblemError) as refused:
        ring.require("Bearer old-key", "client")
    assert refused.value.status == 401 and "expired on 2026-11-28" in refused.value.detail
    (record,) = [r for r in caplog.records if r.name == "service.api.auth"]
    assert record.fields == {"key": "old-backend", "expired": "2026-11-28"} and "old-key" not in caplog.text
    on_its_last_day = KeyRing(parse_api_keys(entry("client", "c", "k", "2026-11-29")), today=lambda: dt.date(2026, 11, 29))
    assert on_its_last_day.require("Bearer k", "client") == "c"
    with pytest.raises(ProblemError) as wrong_role:
        ring.require("Bearer new-key", "admin")
    assert wrong_role.value.status == 403


async def test_the_audit_trail_names_the_key_that_changed_a_list(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", api_keys=",".join([
        entry("client", "bank-backend", "ck"), entry("admin", "ops-wang", "ak1"), entry("admin", "ops-li", "ak2")]))
    runtime = Runtime.from_settings(settings)
    runtime.start()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for key, phone in (("ak1", "13900001111"), ("ak2", "13900002222")):
                resp = await client.post("/admin/lists/black_phones/entries", headers={"Authorization": f"Bearer {key}"},
                                         json={"values": [phone], "actor": "analyst", "reason": "case 7"})
                assert resp.status_code == 200
            decided = await client.post("/v1/decisions", json=application("k-1"), headers={"Authorization": "Bearer ck"})
            assert decided.status_code == 200
        assert [e["key_id"] for e in runtime.lists.audit("black_phones")] == ["ops-li", "ops-wang"]
    finally:
        runtime.stop()


def test_keys_new_prints_a_key_and_the_entry_that_holds_only_its_hash():
    done = subprocess.run([sys.executable, "-m", "service.cli", "keys", "new", "--role", "client",
                           "--name", "bank-backend", "--expires", "2099-12-31"],
                          capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    key = done.stdout.splitlines()[0].rsplit(" ", 1)[1]
    line = done.stdout.splitlines()[1].rsplit(" ", 1)[1]
    (parsed,) = parse_api_keys(line)
    assert parsed.name == "bank-backend" and parsed.digest == hashlib.sha256(key.encode()).digest()
    assert key not in line and len(key) >= 40
    refused = subprocess.run([sys.executable, "-m", "service.cli", "keys", "new", "--role", "admin", "--name", "x",
                              "--expires", "2001-01-01"], capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    assert refused.returncode == 2 and "passed" in refused.stderr
