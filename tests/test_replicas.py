"""Several replicas on one PostgreSQL database: real ``loan-decision serve`` processes, the provider
simulator beside them, a throw-away cluster (tests/pgcluster.py). And what both backends share:
no active whitelist means not ready and DATA_UNAVAILABLE, never a decline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest

from service.api.app import create_app
from service.config import REPO_ROOT, Settings
from service.runtime import Runtime
from tests.conftest import LiveServer, import_whitelist
from tests.test_verification import simulator  # noqa: F401 - fixture

from .factories import ADMIN, CLIENT, application, as_answered, id_number


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env={**os.environ, **env},
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


# --- both backends ---------------------------------------------------------------------------

async def test_without_an_active_whitelist_a_worker_is_not_ready_and_refers(tmp_path, backend_url):
    settings = Settings(data_dir=tmp_path / "data", database_url=backend_url, whitelist_poll_s=0.1)
    runtime = Runtime.from_settings(settings)
    runtime.start()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/readyz")).status_code == 503
            body = (await client.post("/v1/decisions", json=application("no-wl"), headers=CLIENT)).json()
            assert body["outcome"] == "refer" and "DATA_UNAVAILABLE" in [r["code"] for r in body["reasons"]]
            import_whitelist(settings)  # the first import: ready within the poll interval
            await asyncio.sleep(0.8)
            assert (await client.get("/readyz")).status_code == 200
            body = (await client.post("/v1/decisions?explain=true", json=application("wl-now"),
                                      headers=CLIENT)).json()
            assert "DATA_UNAVAILABLE" not in [r["code"] for r in body["reasons"]]
            enrichment = next(s for s in body["trace"] if s["stage"] == "enrichment")["detail"]["sources"]
            assert enrichment["whitelist"]["listed"] is False
    finally:
        runtime.stop()


# --- PostgreSQL: one process -------------------------------------------------------------------

@pytest.fixture
async def pg_client(tmp_path, database_url) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    import_whitelist(settings)
    runtime = Runtime.from_settings(settings)
    runtime.start()
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, runtime
    runtime.stop()


async def test_decisions_lists_and_replays_on_postgres(pg_client, tmp_path):
    client, runtime = pg_client
    raw = orjson.dumps(application("pg-1"))
    first = await client.post("/v1/decisions", content=raw, headers=CLIENT)
    again = await client.post("/v1/decisions", content=raw, headers=CLIENT)
    assert first.status_code == again.status_code == 200 and first.content == again.content
    other = application("pg-1", loan={"amount": 25000})
    assert (await client.post("/v1/decisions", json=other, headers=CLIENT)).status_code == 409
    decision_id = first.json()["decision_id"]
    assert as_answered((await client.get(f"/v1/decisions/{decision_id}", headers=CLIENT)).content) == first.json()
    # a black-listed ID number is declined from the next decision on
    number = id_number(seq="777")
    change = {"values": [number], "actor": "analyst", "reason": "case 9"}
    assert (await client.post("/admin/lists/black_id_numbers/entries", json=change, headers=ADMIN)).json()["changed"] == 1
    body = (await client.post("/v1/decisions", json=application("pg-2", applicant={"id_number": number}),
                              headers=CLIENT)).json()
    assert "BLACKLIST_ID_NUMBER" in [r["code"] for r in body["reasons"]]
    audit = (await client.get("/admin/lists/black_id_numbers/audit", headers=ADMIN)).json()["changes"]
    assert [(a["action"], a["entry"], a["key_id"]) for a in audit] == [("add", number[:3] + "*" * 13 + number[-2:], "dev-admin")]


async def test_the_funnel_reads_decisions_from_postgres(pg_client, database_url, tmp_path):
    import datetime as dt

    from offline.funnel import funnel

    client, _ = pg_client
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for n in range(3):
        assert (await client.post("/v1/decisions", json=application(f"fun-{n}"), headers=CLIENT)).status_code == 200
    report = funnel(database_url, started, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert report["applications"] == 3 and report["paths"][0]["product"] == "consumer_quick"
    done = cli("report", "funnel", "--json", env={"LOAN_DATABASE_URL": database_url, "LOAN_DATA_DIR": str(tmp_path)})
    assert done.returncode == 0 and orjson.loads(done.stdout)["applications"] == 3


def test_a_killed_whitelist_import_leaves_the_previous_version_serving(database_url, tmp_path):
    """SIGKILL in the middle of COPY: the transaction dies with it; no table, no version."""
    import psycopg

    env = {"LOAN_DATABASE_URL": database_url, "LOAN_DATA_DIR": str(tmp_path)}
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    header = "id_number,segment,limit,rate_tier,valid_until\n"
    small.write_text(header + f"{id_number(seq='401')},consumer,5000,T1,2027-01-01\n")
    assert cli("whitelist", "import", str(small), env=env).returncode == 0
    from loadtests.bench_whitelist import id_number as nth

    big.write_text(header + "".join(f"{nth(i)},consumer,5000,T1,2027-01-01\n" for i in range(300_000)))
    importing = subprocess.Popen([sys.executable, "-m", "service.cli", "whitelist", "import", str(big)],
                                 env={**os.environ, **env}, cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    with psycopg.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%'").fetchone()[0]:
            assert time.monotonic() < deadline and importing.poll() is None, "the import never reached COPY"
            time.sleep(0.02)
        time.sleep(0.3)
        importing.kill()
        importing.wait()
        time.sleep(0.5)  # the server notices the lost connection and rolls back
        assert conn.execute("SELECT version FROM whitelist_active").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM whitelist_versions").fetchone() == (1,)
        assert conn.execute("SELECT to_regclass('whitelist_v2')").fetchone() == (None,)
    assert cli("whitelist", "import", str(small), env=env).returncode == 0  # and the next import works


async def test_database_down_is_503_and_not_ready_then_recovers(pg_client, pg_cluster):
    """PostgreSQL stops under a running worker: decisions answer 503 (never a 200 that was not
    stored), /readyz turns 503 within a second, and both come back without a restart."""
    client, runtime = pg_client
    assert (await client.get("/readyz")).status_code == 200
    pg_cluster.stop("immediate")
    try:
        started = time.monotonic()
        while (await client.get("/readyz")).status_code != 503:
            assert time.monotonic() - started < 1.0, "readyz still 200 a second after the database stopped"
            await asyncio.sleep(0.05)
        responses = await asyncio.gather(*(client.post("/v1/decisions", json=application(f"down-{n}"),
                                                       headers=CLIENT) for n in range(5)))
        assert {r.status_code for r in responses} == {503}
        assert all(r.headers["content-type"] == "application/problem+json" for r in responses)
    finally:
        pg_cluster.start()
    started = time.monotonic()
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() - started < 10, "not ready again after the database came back"
        await asyncio.sleep(0.1)
    up = await client.post("/v1/decisions", json=application("up-1"), headers=CLIENT)
    assert up.status_code == 200, up.text
    for n in range(5):  # what was refused was not stored
        assert await runtime.store.find_by_application(f"down-{n}") is None


# --- schema ------------------------------------------------------------------------------

def test_migrate_is_safe_twice_and_concurrently_and_serve_checks_the_schema(pg_cluster, tmp_path):
    url = pg_cluster.create_database("migrate_here")
    env = {"LOAN_DATABASE_URL": url, "LOAN_DATA_DIR": str(tmp_path)}
    serve = cli("serve", env=env)  # an empty database: refused with one line
    assert serve.returncode == 2 and serve.stderr.count("\n") == 1
    assert "schema is version 0" in serve.stderr and "db migrate" in serve.stderr
    racing = [subprocess.Popen([sys.executable, "-m", "service.cli", "db", "migrate"], env={**os.environ, **env},
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(3)]
    outputs = [p.communicate(timeout=60) for p in racing]
    assert [p.returncode for p in racing] == [0, 0, 0], outputs
    assert sum("applied 0001_stores" in out for out, _ in outputs) == 1
    assert "nothing to do" in cli("db", "migrate", env=env).stdout
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future')")
    serve = cli("serve", env=env)
    assert serve.returncode == 2 and "newer than this code" in serve.stderr
    assert cli("db", "migrate", env=env).returncode == 2


def test_whitelist_import_on_postgres_is_all_or_nothing(database_url, tmp_path):
    env = {"LOAN_DATABASE_URL": database_url, "LOAN_DATA_DIR": str(tmp_path)}
    good, duplicate = tmp_path / "good.csv", tmp_path / "dup.csv"
    header = "id_number,segment,limit,rate_tier,valid_until\n"
    good.write_text(header + f"{id_number(seq='301')},consumer,5000,T1,2027-01-01\n")
    duplicate.write_text(header + "".join(f"{id_number(seq='302')},consumer,5000,T1,2027-01-01\n" for _ in range(2)))
    assert cli("whitelist", "import", str(good), env=env).returncode == 0
    refused = cli("whitelist", "import", str(duplicate), env=env)
    assert refused.returncode == 1 and "lines 2, 3: the same customer 2 times" in refused.stderr
    from service.store.keys import KeyedHash
    from service.store.postgres import Database
    from service.store.postgres.whitelist import PostgresWhitelist

    database = Database(database_url)
    whitelist = PostgresWhitelist(database, KeyedHash(Settings().pii_key), poll_s=0)
    whitelist.open()
    try:
        assert whitelist.active() == "whitelist_v1"
        assert whitelist.lookup_many([id_number(seq="301"), id_number(seq="302")])[1] is None
        assert whitelist.lookup(id_number(seq="301")).limit == 5000
    finally:
        whitelist.close()


# --- several replicas --------------------------------------------------------------------------

@pytest.fixture
def replicas(database_url, tmp_path, simulator) -> Iterator[list[LiveServer]]:  # noqa: F811
    env = {"LOAN_DATABASE_URL": database_url, "LOAN_PROVIDERS_URL": simulator.url, "LOAN_PROVIDER_KEY": "k"}
    servers = [LiveServer(tmp_path / f"replica-{n}", env, whitelist=(n == 0)) for n in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


async def _post(client: httpx.AsyncClient, server: LiveServer, body: bytes, explain: bool = False) -> httpx.Response:
    return await client.post(f"{server.url}/v1/decisions" + ("?explain=true" if explain else ""), content=body,
                             headers={**CLIENT, "Content-Type": "application/json"})


@pytest.mark.slow
async def test_thirty_copies_over_three_replicas_make_one_decision(replicas, simulator):  # noqa: F811
    raw = orjson.dumps(application("rep-1"))
    async with httpx.AsyncClient(timeout=10) as client:
        answers = await asyncio.gather(*(_post(client, replicas[n % 3], raw) for n in range(30)))
        assert [a.status_code for a in answers] == [200] * 30
        assert len({a.content for a in answers}) == 1  # thirty identical answers, one decision
        assert sum(1 for provider, *_ in simulator.calls if provider == "sms") == 1  # the code checked once
        other = orjson.dumps(application("rep-1", loan={"amount": 25000}))
        assert [(await _post(client, server, other)).status_code for server in replicas] == [409] * 3


@pytest.mark.slow
async def test_sixty_applications_from_one_device_over_three_replicas_count_0_to_59(replicas):
    async with httpx.AsyncClient(timeout=10) as client:
        bodies = [orjson.dumps(application(f"dev-{n}", device={"device_id": "one-device"},
                                           applicant={"phone": f"139{n:08d}"})) for n in range(60)]
        answers = await asyncio.gather(*(_post(client, replicas[n % 3], body, explain=True)
                                         for n, body in enumerate(bodies)))
        counts = [next(s for s in a.json()["trace"] if s["stage"] == "enrichment")["detail"]["sources"]
                  ["velocity"]["device_24h"] for a in answers]
        assert sorted(counts) == list(range(60))
        retry = await _post(client, replicas[1], bodies[0], explain=True)  # a retry counts nothing
        assert retry.status_code == 200
        fresh = await _post(client, replicas[2], orjson.dumps(application(
            "dev-60", device={"device_id": "one-device"}, applicant={"phone": "13900000060"})), explain=True)
        assert next(s for s in fresh.json()["trace"] if s["stage"] == "enrichment")["detail"]["sources"][
            "velocity"]["device_24h"] == 60


@pytest.mark.slow
async def test_a_list_change_through_one_replica_is_seen_by_all_within_a_second(replicas):
    number = id_number(seq="778")
    async with httpx.AsyncClient(timeout=10) as client:
        change = {"values": [number], "actor": "analyst", "reason": "fraud ring"}
        added = await client.post(f"{replicas[0].url}/admin/lists/black_id_numbers/entries", json=change, headers=ADMIN)
        assert added.status_code == 200
        started = time.monotonic()
        for n, server in enumerate(replicas):
            body = orjson.dumps(application(f"bl-{n}", applicant={"id_number": number}))
            reasons = [r["code"] for r in (await _post(client, server, body)).json()["reasons"]]
            assert "BLACKLIST_ID_NUMBER" in reasons, (server.url, reasons)
        assert time.monotonic() - started < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["replica killed", "database restarted"])
async def test_under_load_no_acknowledged_decision_is_lost(replicas, pg_cluster, fault):
    """SIGKILL of a replica, or an immediate stop and start of PostgreSQL, under load: every
    decision that was answered 200 is found afterwards (through another replica). The load runs
    from before the fault to a second after it, and the database stays down longer than a
    request waits for a connection, so the outage is seen (a fixed number of requests could
    all be answered before the fault, or wait it out)."""
    acknowledged: dict[str, str] = {}
    refused = 0
    stop = asyncio.Event()

    async def load(client: httpx.AsyncClient, server: LiveServer, prefix: str) -> None:
        n = 0
        while not stop.is_set() and n < 20_000:
            n += 1
            try:
                answer = await _post(client, server, orjson.dumps(application(f"{prefix}-{n}")))
            except httpx.HTTPError:
                return
            if answer.status_code == 200:
                acknowledged[f"{prefix}-{n}"] = answer.json()["decision_id"]
            else:
                assert answer.status_code == 503, answer.text
                nonlocal refused
                refused += 1

    async with httpx.AsyncClient(timeout=10) as client:
        loads = [asyncio.ensure_future(load(client, server, f"k{i}")) for i, server in enumerate(replicas[:2])]
        await asyncio.sleep(1.0)
        if fault == "replica killed":
            replicas[0].kill()
        else:
            pg_cluster.stop("immediate")
            await asyncio.sleep(2.5)  # longer than the pool's 2 s wait for a connection
            pg_cluster.start()
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*loads)
        assert len(acknowledged) > 20
        assert fault == "replica killed" or refused > 0  # the outage was seen, and answered 503
        for application_id, decision_id in acknowledged.items():
            found = await client.get(f"{replicas[2].url}/v1/decisions", params={"application_id": application_id},
                                     headers=CLIENT)
            assert found.status_code == 200 and found.json()["decision_id"] == decision_id


def _fleet(server: LiveServer) -> dict:
    return httpx.get(f"{server.url}/admin/rules", headers=ADMIN, timeout=5).json()["fleet"]


def _converged(servers: list[LiveServer], version: str, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        replicas = _fleet(servers[0])["replicas"]
        if len(replicas) == len(servers) and {r["ruleset"] for r in replicas} == {version}:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_a_published_ruleset_reaches_every_replica_and_a_bad_one_none(replicas, tmp_path, database_url):
    import shutil

    draft = tmp_path / "draft"
    shutil.copytree(REPO_ROOT / "rules", draft)
    fraud = draft / "fraud.yaml"
    fraud.write_text(fraud.read_text().replace("# Lists are read", "# edited by the risk team\n# Lists are read", 1))
    published = cli("rules", "publish", str(draft), "--by", "analyst-li", env={"LOAN_DATABASE_URL": database_url})
    assert published.returncode == 0, published.stderr
    version = published.stdout.split()[0]
    started = time.monotonic()
    assert _converged(replicas, version, within_s=5.0), _fleet(replicas[0])
    assert time.monotonic() - started < 2.5  # within two seconds of the publication, and a poll
    # published without the CLI's checks: every replica refuses it, keeps serving, and says why
    from service.fleet import bundle
    from service.store.postgres import Database
    from service.store.postgres.rulesets import PublishedRulesets

    (draft / "strategy.yaml").write_text((draft / "strategy.yaml").read_text().replace("score.grade", "score.grde", 1))
    database = Database(database_url)
    database.open()
    try:
        PublishedRulesets(database).publish("rs-broken", bundle(draft), "someone")
    finally:
        database.close()
    time.sleep(2.5)
    fleet = _fleet(replicas[1])
    assert fleet["published"] == "rs-broken"
    assert {r["ruleset"] for r in fleet["replicas"]} == {version}
    assert all(any("score.grde" in e for e in r["errors"]) for r in fleet["replicas"])
    assert all(httpx.get(f"{s.url}/readyz").status_code == 200 for s in replicas)
