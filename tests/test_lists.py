"""Black and grey lists: declared in rules/lists.yaml, changed through the audited admin API or
the CLI, read by the fraud rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from service.config import REPO_ROOT
from service.engine.ruleset import RulesetError, load_ruleset
from service.store.keys import KeyedHash
from service.store.lists import Change, EntryError, MemoryLists, SqliteLists
from service.store.postgres import Database
from service.store.postgres.lists import PostgresLists

from .factories import ADMIN, CLIENT, application, id_number

KEYED = KeyedHash("test-pii-key-0123456789abcdef0123456789")


DECLARED = {"ids": "id_number", "phones": "phone", "ips": "ip", "devices": "device", "usccs": "uscc"}


def open_lists(url: str, path):
    store = PostgresLists(Database(url), KEYED) if url else SqliteLists(path, KEYED)
    store.open()
    store.declare(DECLARED)
    return store


@pytest.fixture
def lists(tmp_path, backend_url):
    """The list store, on SQLite and on PostgreSQL: one suite for both."""
    store = open_lists(backend_url, tmp_path / "lists.sqlite3")
    yield store
    store.close()


def add(store: SqliteLists, name: str, *values: str) -> int:
    return store.change(Change(name, "add", "risk analyst", "cli", "case 1"), list(values))


def test_exact_entries_are_matched_through_keyed_hashes(lists, tmp_path):
    number = id_number(seq="901")
    assert add(lists, "ids", number) == 1
    assert lists.contains("ids", number) and not lists.contains("ids", id_number(seq="902"))
    assert add(lists, "phones", "13912345678") == 1 and lists.contains("phones", "13912345678")
    assert add(lists, "devices", "dev-evil") == 1 and lists.contains("devices", "dev-evil")
    assert not lists.contains("phones", number)  # another list, another namespace
    assert lists.memberships({"ids": [id_number(seq="903"), number]}) == {("ids", number)}
    assert not lists.contains("undeclared", number)
    assert lists.memberships_many([{"ids": [number]}, {"phones": ["13912345678", "13900000000"]}, {}]) == [
        {("ids", number)}, {("phones", "13912345678")}, frozenset()]
    if isinstance(lists, SqliteLists):
        raw = (tmp_path / "lists.sqlite3").read_bytes() + (tmp_path / "lists.sqlite3-wal").read_bytes()
    else:
        import psycopg

        with psycopg.connect(lists.db.url) as conn:
            raw = b"".join(str(row).encode() for table in ("list_entries", "list_audit")
                           for row in conn.execute(f"SELECT * FROM {table}"))
    assert number.encode() not in raw and b"13912345678" not in raw


def test_ip_entries_match_addresses_and_cidr_blocks_v4_and_v6(lists):
    add(lists, "ips", "198.51.100.0/24", "203.0.113.9", "2001:db8:abcd::/48")
    assert lists.contains("ips", "198.51.100.77") and lists.contains("ips", "203.0.113.9")
    assert not lists.contains("ips", "203.0.113.10") and not lists.contains("ips", "198.51.101.1")
    assert lists.contains("ips", "2001:db8:abcd:12::1") and not lists.contains("ips", "2001:db8:abce::1")
    assert not lists.contains("ips", "not an ip")


def test_bad_entries_change_nothing(lists):
    with pytest.raises(EntryError) as error:
        add(lists, "ids", id_number(seq="904"), "110105199003071230", "")
    assert [i for i, _ in error.value.errors] == [1, 2]
    with pytest.raises(EntryError, match="host bits set"):
        add(lists, "ips", "10.0.0.1/8")
    assert lists.sizes()["ids"] == 0 and lists.audit("ids") == []


def test_every_change_is_audited_with_a_masked_entry(lists):
    number = id_number(seq="905")
    add(lists, "ids", number)
    add(lists, "ids", number)  # already there: nothing changes, nothing audited
    lists.change(Change("ids", "remove", "second analyst", "abc123", "appeal 7"), [number])
    trail = lists.audit("ids")
    assert [(c["action"], c["actor"], c["key_id"], c["reason"]) for c in trail] == [
        ("remove", "second analyst", "abc123", "appeal 7"), ("add", "risk analyst", "cli", "case 1")]
    assert trail[0]["entry"] == number[:3] + "*" * 13 + number[-2:]
    assert not lists.contains("ids", number)


def test_lint_refuses_a_rule_reading_an_undeclared_list(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    fraud = rules / "fraud.yaml"
    fraud.write_text(fraud.read_text().replace("in_list('black_phones', applicant.phone)",
                                               "in_list('black_phone', applicant.phone)"))
    with pytest.raises(RulesetError) as error:
        load_ruleset(rules)
    message = str(error.value.errors[0])
    assert "fraud.yaml:" in message and "[BLACKLIST_PHONE]" in message and "'black_phone'" in message


@pytest.mark.parametrize(("file", "old", "new", "message"), [
    ("fraud.yaml", "in_list('black_phones', applicant.phone)", "in_list('black_phones', applicant.name)",
     "holds phone entries: it can be asked about applicant.phone or related.phones"),
    ("fraud.yaml", "in_list('black_phones', applicant.phone)", "in_list('black_phones', related.phones)",
     "related.phones holds several values: use any_in_list('black_phones', related.phones)"),
    ("validation.yaml", "when: not phone_valid(applicant.phone)",
     "when: not phone_valid(applicant.phone) or in_list('black_phones', applicant.phone)",
     "validation rules check the application's own fields; read lists in fraud rules"),
])
def test_lint_refuses_list_reads_gathering_cannot_answer(tmp_path, file, old, new, message):
    """Gathering looks up the application's own identifiers on each list, by the list's kind; a
    rule asking about anything else, or a validation rule (screened before the lists are read),
    would get a wrong answer, so it does not load."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    path = rules / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(RulesetError) as error:
        load_ruleset(rules)
    assert any(message in str(e) and f"{file}:" in str(e) for e in error.value.errors), error.value.errors


def test_rule_tests_and_backtests_match_list_entries_as_the_store_does(lists):
    """One matching rule: an ID number entered with a lower-case x, a phone with spaces, an
    address in a CIDR block are found alike in memory (rule tests, backtests) and in the store."""
    number = id_number(seq="902")
    assert number.endswith("X")
    entries = {"ids": [number.lower()], "phones": [" 13912345678 "], "ips": ["203.0.113.0/24"]}
    for name, values in entries.items():
        for value in values:
            add(lists, name, value)
    memory = MemoryLists(lists.kinds, entries)
    asked = {"ids": [number, id_number(seq="910")], "phones": ["13912345678", "13912345679"],
             "ips": ["203.0.113.9", "198.51.100.1"]}
    expected = {("ids", number), ("phones", "13912345678"), ("ips", "203.0.113.9")}
    assert memory.memberships(asked) == lists.memberships(asked) == expected


@pytest.mark.parametrize(("name", "entry"), [
    ("phones", "12345"), ("ids", "110105199003071238"), ("ips", "203.0.113.7/24"), ("usccs", "9111")])
def test_lists_in_memory_refuse_what_the_store_refuses(lists, name, entry):
    """The rule tests' and backtests' lists are parsed by the store's own rule, so an entry no
    store would hold (a short phone, a bad check digit, a block with host bits) cannot match
    there either: it is an error, as it is for the store."""
    with pytest.raises(EntryError):
        add(lists, name, entry)
    with pytest.raises(EntryError):
        MemoryLists(lists.kinds, {name: [entry]})
    with pytest.raises(KeyError):
        MemoryLists(lists.kinds, {"undeclared": ["13912345678"]})


async def test_admin_api_adds_audits_and_the_rules_decline(client):
    number = "110105199003071239"  # the factory applicant
    body = {"values": [number], "actor": "Wang Fang", "reason": "fraud case 2026-114"}
    resp = await client.post("/admin/lists/black_id_numbers/entries", json=body, headers=ADMIN)
    assert resp.status_code == 200 and resp.json()["changed"] == 1
    decision = (await client.post("/v1/decisions", json=application("bl-1"), headers=CLIENT)).json()
    assert decision["outcome"] == "decline"
    assert "BLACKLIST_ID_NUMBER" in [r["code"] for r in decision["reasons"]]
    audit = (await client.get("/admin/lists/black_id_numbers/audit", headers=ADMIN)).json()["changes"]
    assert audit[0]["actor"] == "Wang Fang" and audit[0]["entry"] == "110*************39"
    assert audit[0]["key_id"] == "dev-admin"  # the key's name, not what the caller typed as actor
    sizes = {entry["name"]: entry["entries"] for entry in (await client.get("/admin/lists", headers=ADMIN)).json()["lists"]}
    assert sizes["black_id_numbers"] == 1 and sizes["black_phones"] == 0
    resp = await client.request("DELETE", "/admin/lists/black_id_numbers/entries", json=body, headers=ADMIN)
    assert resp.json()["changed"] == 1
    decision = (await client.post("/v1/decisions", json=application("bl-2"), headers=CLIENT)).json()
    assert "BLACKLIST_ID_NUMBER" not in [r["code"] for r in decision["reasons"]]


async def test_a_black_listed_related_party_is_caught(client):
    spouse_phone = "13600002222"
    await client.post("/admin/lists/black_phones/entries", headers=ADMIN,
                      json={"values": [spouse_phone], "actor": "a", "reason": "r"})
    body = application("bl-3", related_parties=[{"relation": "spouse", "name": "Chen Jie", "phone": spouse_phone}])
    decision = (await client.post("/v1/decisions", json=body, headers=CLIENT)).json()
    assert "RELATED_PARTY_BLACKLISTED" in [r["code"] for r in decision["reasons"]]


async def test_admin_list_errors(client, runtime):
    body = {"values": ["not-an-id"], "actor": "a", "reason": "r"}
    bad = await client.post("/admin/lists/black_id_numbers/entries", json=body, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/values/0"
    assert (await client.post("/admin/lists/nope/entries", json=body, headers=ADMIN)).status_code == 404
    assert (await client.post("/admin/lists/black_id_numbers/entries", json=body, headers=CLIENT)).status_code == 403
    missing_reason = await client.post("/admin/lists/black_phones/entries", headers=ADMIN,
                                       json={"values": ["13600002222"], "actor": "a"})
    assert missing_reason.status_code == 422
    assert runtime.lists.sizes() == dict.fromkeys(runtime.lists.kinds, 0)


def test_cli_import(tmp_path):
    env = {**os.environ, "LOAN_DATA_DIR": str(tmp_path)}
    source = tmp_path / "ips.csv"
    source.write_text("value\n198.51.100.0/24\n203.0.113.5\n")
    run = [sys.executable, "-m", "service.cli", "lists", "import", "black_ips", str(source),
           "--actor", "ops", "--reason", "ticket 9"]
    proc = subprocess.run(run, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "2 changed" in proc.stdout
    source.write_text("value\n198.51.100.0/33\n")
    proc = subprocess.run(run, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "entry 1:" in proc.stderr


def test_a_change_by_another_process_is_seen_within_a_moment(lists, tmp_path, backend_url):
    number = id_number(seq="906")
    assert not lists.contains("ids", number)  # empty: answered without a query (SQLite)
    other = open_lists(backend_url, tmp_path / "lists.sqlite3")  # the CLI or another replica, say
    add(other, "ids", number)
    other.close()
    time.sleep(0.15)
    assert lists.contains("ids", number)
