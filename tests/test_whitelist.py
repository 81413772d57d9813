"""The pre-approved whitelist: import, validation, atomic versions, lookups and the facts."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import REPO_ROOT
from service.store.keys import KeyedHash
from service.store.whitelist import SqliteWhitelist, WhitelistImportError, active_version, import_whitelist

from .factories import CLIENT, application, id_number, many_id_numbers

KEYED = KeyedHash("test-pii-key-0123456789abcdef0123456789")
HEADER = "id_number,segment,limit,rate_tier,valid_until\n"


def write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def test_import_then_lookup(tmp_path):
    ids = [id_number(seq=f"{i:03d}") for i in range(3)]
    source = write(tmp_path / "wl.csv", [f"{ids[0]},consumer,50000,T1,2027-06-30",
                                         f"{ids[1]},farmer,120000.5,T2,2026-01-31"])
    report = import_whitelist(tmp_path / "wl", source, KEYED)
    assert (report.version, report.rows, report.previous) == ("v1.sqlite3", 2, None)
    whitelist = SqliteWhitelist(tmp_path / "wl", KEYED)
    entry = whitelist.lookup(ids[0])
    assert (entry.segment, entry.limit, entry.rate_tier, entry.valid_until) == \
        ("consumer", 50000, "T1", dt.date(2027, 6, 30))
    assert whitelist.lookup(ids[1]).limit == 120000.5
    assert whitelist.lookup(ids[2]) is None
    raw = (tmp_path / "wl" / "v1.sqlite3").read_bytes()
    assert ids[0].encode() not in raw and ids[1][:17].encode() not in raw  # keyed hashes only


def test_an_x_check_digit_matches_in_either_case(tmp_path):
    number = next(n for n in (id_number(seq=f"{i:03d}") for i in range(100)) if n.endswith("X"))
    import_whitelist(tmp_path / "wl", write(tmp_path / "wl.csv", [f"{number.lower()},c,1000,T1,2027-01-01"]), KEYED)
    assert SqliteWhitelist(tmp_path / "wl", KEYED).lookup(number) is not None


def test_precomputed_keyed_hashes_are_accepted(tmp_path):
    number = id_number(seq="777")
    digest = KEYED("id_number", number).hex()
    source = write(tmp_path / "wl.csv", [f"{digest},merchant,80000,T3,2027-01-01"],
                   header="id_hash,segment,limit,rate_tier,valid_until\n")
    import_whitelist(tmp_path / "wl", source, KEYED)
    assert SqliteWhitelist(tmp_path / "wl", KEYED).lookup(number).segment == "merchant"


def test_bad_rows_are_reported_by_line_and_nothing_is_loaded(tmp_path):
    good = id_number(seq="001")
    import_whitelist(tmp_path / "wl", write(tmp_path / "first.csv", [f"{good},consumer,1000,T1,2027-01-01"]), KEYED)
    bad = write(tmp_path / "bad.csv", [
        f"{id_number(seq='002')},consumer,1000,T1,2027-01-01",
        f"{good[:-1]}{'0' if good[-1] != '0' else '1'},consumer,1000,T1,2027-01-01",  # check digit
        f"{id_number(seq='003')},Consumer!,1000,T1,2027-01-01",
        f"{id_number(seq='004')},consumer,-5,T1,2027-01-01",
        f"{id_number(seq='005')},consumer,1000,T1,2027-02-30",
        f"{id_number(seq='006')},consumer,1000",
    ])
    with pytest.raises(WhitelistImportError) as error:
        import_whitelist(tmp_path / "wl", bad, KEYED)
    lines = error.value.errors
    assert [line.split(":")[0] for line in lines] == ["line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "valid resident identity number" in lines[0] and "limit must be above 0" in lines[2]
    assert active_version(tmp_path / "wl") == "v1.sqlite3"
    assert sorted(p.name for p in (tmp_path / "wl").iterdir()) == ["ACTIVE", "import.lock", "v1.sqlite3"]


def test_duplicate_customers_are_refused(tmp_path):
    number = id_number(seq="010")
    source = write(tmp_path / "dup.csv", [f"{number},consumer,1000,T1,2027-01-01",
                                          f"{id_number(seq='011')},consumer,1000,T1,2027-01-01",
                                          f"{number},farmer,2000,T2,2027-01-01"])
    with pytest.raises(WhitelistImportError, match="lines 2, 4: the same customer 2 times"):
        import_whitelist(tmp_path / "wl", source, KEYED)
    assert active_version(tmp_path / "wl") is None


def test_a_new_version_swaps_in_and_old_ones_are_pruned(tmp_path):
    first, second = id_number(seq="020"), id_number(seq="021")
    whitelist = SqliteWhitelist(tmp_path / "wl", KEYED, poll_s=0)
    for version, number in enumerate((first, second, first), 1):
        import_whitelist(tmp_path / "wl", write(tmp_path / f"{version}.csv",
                                                [f"{number},consumer,{version}000,T1,2027-01-01"]), KEYED)
        assert whitelist.lookup(number).limit == version * 1000
        assert whitelist.version == f"v{version}.sqlite3"
    assert whitelist.lookup(second) is None  # version 3 holds only the first customer
    files = sorted(p.name for p in (tmp_path / "wl").glob("v*.sqlite3"))
    assert files == ["v2.sqlite3", "v3.sqlite3"]  # the active one and the one before


def test_an_interrupted_import_leaves_the_previous_version_serving(tmp_path):
    directory = tmp_path / "whitelist"  # where the CLI puts it under LOAN_DATA_DIR
    kept = id_number(seq="030")
    import_whitelist(directory, write(tmp_path / "v1.csv", [f"{kept},consumer,1000,T1,2027-01-01"]), KEYED)
    big = tmp_path / "big.csv"
    with big.open("w") as handle:
        handle.write(HEADER)
        handle.writelines(f"{n},consumer,1000,T1,2027-01-01\n" for n in many_id_numbers(200_000))
    env = {**os.environ, "LOAN_DATA_DIR": str(tmp_path), "LOAN_PII_KEY": "test-pii-key-0123456789abcdef0123456789"}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "whitelist", "import", "-v", str(big)],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = proc.stderr.readline()  # the first 50,000 rows are in: well inside the import
    assert "50,000 rows" in progress, progress + proc.stderr.read()
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(directory.glob("*.partial"))  # it died midway
    assert active_version(directory) == "v1.sqlite3"
    assert SqliteWhitelist(directory, KEYED).lookup(kept).limit == 1000
    # the next import cleans up and publishes
    import_whitelist(directory, write(tmp_path / "v3.csv", [f"{kept},consumer,3000,T1,2027-01-01"]), KEYED)
    assert not list(directory.glob("*.partial"))
    assert SqliteWhitelist(directory, KEYED).lookup(kept).limit == 3000


def test_cli_import_reports_errors_and_exit_code(tmp_path):
    env = {**os.environ, "LOAN_DATA_DIR": str(tmp_path)}
    bad = write(tmp_path / "bad.csv", ["12345,consumer,1000,T1,2027-01-01"])
    proc = subprocess.run([sys.executable, "-m", "service.cli", "whitelist", "import", str(bad)],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "line 2: id_number is not a valid" in proc.stderr
    good = write(tmp_path / "good.csv", [f"{id_number()},consumer,50000,T2,2027-01-01"])
    proc = subprocess.run([sys.executable, "-m", "service.cli", "whitelist", "import", str(good)],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "1 customers" in proc.stdout


async def test_rules_see_the_whitelist(client, runtime, tmp_path):
    listed, expired = id_number(seq="040"), id_number(seq="041")
    source = write(tmp_path / "wl.csv", [f"{listed},consumer,50000,T2,2027-06-30",
                                         f"{expired},consumer,50000,T2,2026-11-22"])
    import_whitelist(runtime.settings.whitelist_dir, source, runtime.whitelist.keyed)
    runtime.whitelist.poll_s = 0

    async def enrichment(app_id: str, number: str) -> dict:
        body = application(app_id, applicant={"id_number": number})
        resp = await client.post("/v1/decisions?explain=true", json=body, headers=CLIENT)
        trace = resp.json()["trace"]
        return next(s for s in trace if s["stage"] == "enrichment")["detail"]["sources"]["whitelist"]

    assert await enrichment("wl-1", listed) == {"version": "v2.sqlite3", "listed": True,
                                                "segment": "consumer", "expired": False}
    # submitted 2026-11-23 09:30 Beijing time: a pre-approval valid until the 22nd has expired
    assert (await enrichment("wl-2", expired))["expired"] is True
    assert await enrichment("wl-3", id_number(seq="042")) == {"version": "v2.sqlite3", "listed": False}
