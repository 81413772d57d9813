"""Velocity counters: exact counts per identifier and window, never the current application,
atomic across connections and processes — on SQLite and on PostgreSQL (one suite, both stores)."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from service.store.keys import KeyedHash
from service.store import velocity as velocity_module
from service.store.postgres import Database
from service.store.postgres.velocity import PostgresVelocity
from service.store.velocity import CAP, SqliteVelocity

from .factories import CLIENT, application

KEYED = KeyedHash("test-pii-key-0123456789abcdef0123456789")
HOUR = 3600


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def open_velocity(url: str, path, clock=None):
    if url:
        store = PostgresVelocity(Database(url), KEYED, clock)
    else:
        store = SqliteVelocity(path, KEYED, clock or time.time)
    store.open()
    return store


@pytest.fixture
def velocity(backend_url, tmp_path, clock):
    store = open_velocity(backend_url, tmp_path / "velocity.sqlite3", clock)
    yield store
    store.close()


def ids(device="dev-1", phone="13800138000", id_="110105199003071239", ip="203.0.113.7"):
    return {"device": device, "phone": phone, "id": id_, "ip": ip}


def test_counts_by_window_exclude_the_current_application(velocity, clock):
    assert velocity.count_and_record("a1", ids())["velocity.device_24h"] == 0
    clock.now += 2 * HOUR
    velocity.count_and_record("a2", ids(phone="13900000000"))
    clock.now += 3 * 86_400
    counts = velocity.count_and_record("a3", ids())
    assert (counts["velocity.device_1h"], counts["velocity.device_24h"], counts["velocity.device_7d"],
            counts["velocity.device_30d"]) == (0, 0, 2, 2)
    assert counts["velocity.phone_30d"] == 1  # a2 used another phone
    clock.now += 31 * 86_400
    assert velocity.count_and_record("a4", ids())["velocity.device_30d"] == 0  # all older than 30 days


def test_a_retry_does_not_count_itself_or_twice(velocity, clock):
    velocity.count_and_record("a1", ids())
    clock.now += 60
    again = velocity.count_and_record("a1", ids())
    assert again["velocity.device_1h"] == 0  # the same application, retried
    assert velocity.count_and_record("a2", ids())["velocity.device_1h"] == 1


def test_a_missing_identifier_gives_null_counts(velocity):
    counts = velocity.count_and_record("a1", ids(ip=None))
    assert counts["velocity.ip_24h"] is None and counts["velocity.device_24h"] == 0


def test_threads_sharing_one_store_each_see_a_distinct_count(velocity):
    seen: list[int] = []
    barrier = threading.Barrier(8)

    def apply(n: int) -> None:
        barrier.wait()
        seen.append(velocity.count_and_record(f"t{n}", ids())["velocity.device_24h"])

    threads = [threading.Thread(target=apply, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(8))


def _apply_in_process(url, path, number, barrier, results):
    store = open_velocity(url, path)
    barrier.wait()
    results.put(store.count_and_record(f"p{number}", ids())["velocity.device_24h"])
    store.close()


def test_processes_racing_on_one_store_never_both_see_zero(tmp_path, backend_url):
    """Twelve workers, each with its own connection, apply from one device at the same instant."""
    context = multiprocessing.get_context("fork")
    path = tmp_path / "velocity.sqlite3"
    open_velocity(backend_url, path).close()  # create the schema once
    barrier, results = context.Barrier(12), context.Queue()
    procs = [context.Process(target=_apply_in_process, args=(backend_url, path, n, barrier, results))
             for n in range(12)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sorted(results.get(timeout=5) for _ in procs) == list(range(12))


def test_a_hot_key_saturates_at_the_cap(velocity, clock):
    for n in range(CAP + 5):
        clock.now += 1
        velocity.count_and_record(f"h{n}", ids())
    counts = velocity.count_and_record("h-last", ids())
    assert counts["velocity.device_1h"] == CAP and counts["velocity.device_30d"] == CAP
    assert counts["velocity.phone_1h"] == CAP


def test_counts_survive_a_restart_and_old_events_are_swept(tmp_path, clock, monkeypatch):
    monkeypatch.setattr(velocity_module, "SWEEP_EVERY", 5)
    monkeypatch.setattr(velocity_module, "SLICES", 1)  # one slice: the whole key space
    store = SqliteVelocity(tmp_path / "v.sqlite3", KEYED, clock)
    store.open()
    for n in range(3):
        store.count_and_record(f"r{n}", ids())
    store.close()
    store.open()
    assert store.count_and_record("r3", ids())["velocity.device_24h"] == 3
    clock.now += 31 * 86_400
    assert store.count_and_record("r4", ids())["velocity.device_30d"] == 0  # the 5th call sweeps
    rows = store._conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert rows == 4  # only r4's four identifiers remain
    store.close()


def test_events_live_in_daily_partitions_and_old_days_are_dropped(database_url):
    import psycopg

    store = open_velocity(database_url, None)  # open() runs the maintenance
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            def partitions() -> set[str]:
                return {name for (name,) in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'velocity_events'::regclass")}
            today = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()[0]
            names = partitions()
            assert {f"velocity_events_{today:%Y%m%d}", "velocity_events_default"} <= names
            assert len(names) == 6  # yesterday to three days ahead, and the default
            store.count_and_record("p1", ids())
            assert conn.execute(f"SELECT count(*) FROM velocity_events_{today:%Y%m%d}").fetchone()[0] == 4
            conn.execute("CREATE TABLE velocity_events_20200101 PARTITION OF velocity_events "
                         "FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-01-02 00:00+00')")
            store.maintain()
            assert "velocity_events_20200101" not in partitions() and len(partitions()) == 6
    finally:
        store.close()


async def test_the_bundled_rules_decline_the_fourth_application_from_a_device(client):
    outcomes = []
    for n in range(4):
        body = application(f"vel-{n}", applicant={"phone": f"1380013800{n}"})
        outcomes.append((await client.post("/v1/decisions?explain=true", json=body, headers=CLIENT)).json())
    enrichment = [next(s for s in o["trace"] if s["stage"] == "enrichment")["detail"]["sources"]["velocity"]
                  for o in outcomes]
    assert [e["device_24h"] for e in enrichment] == [0, 1, 2, 3]
    assert [e["phone_24h"] for e in enrichment] == [0, 0, 0, 0]
    codes = [[r["code"] for r in o["reasons"]] for o in outcomes]
    assert "VELOCITY_DEVICE_24H" not in codes[2] and "VELOCITY_DEVICE_24H" in codes[3]
    assert outcomes[3]["outcome"] == "decline"
    # a replay of a stored decision is not a new application: it counts nothing
    await client.post("/v1/decisions", json=application("vel-0", applicant={"phone": "13800138000"}), headers=CLIENT)
    fifth = (await client.post("/v1/decisions?explain=true", json=application("vel-5"), headers=CLIENT)).json()
    assert next(s for s in fifth["trace"] if s["stage"] == "enrichment")["detail"]["sources"]["velocity"]["device_24h"] == 4


async def test_a_failing_store_refers_and_never_500s(client, runtime):
    runtime.velocity.close()  # the store is gone
    resp = await client.post("/v1/decisions?explain=true", json=application("vel-down"), headers=CLIENT)
    assert resp.status_code == 200
    body = resp.json()
    assert body["outcome"] == "refer" and "DATA_UNAVAILABLE" in [r["code"] for r in body["reasons"]]
    assert (await client.get("/readyz")).status_code == 503


async def test_a_store_slower_than_the_deadline_refers_within_it(tmp_path):
    """A velocity transaction waiting on another process's lock never holds a decision past its
    deadline (nor blocks the event loop): the decision refers in time."""
    import time

    import httpx

    from service.api.app import create_app
    from service.config import Settings
    from service.runtime import Runtime

    settings = Settings(data_dir=tmp_path / "data", deadline_ms=300)
    runtime = Runtime.from_settings(settings)
    runtime.start()
    slow = runtime.velocity.count_and_record_many

    def stuck(applications):
        time.sleep(1.0)
        return slow(applications)

    runtime.velocity.count_and_record_many = stuck  # type: ignore[method-assign]
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            started = time.monotonic()
            resp = await client.post("/v1/decisions?explain=true", json=application("vel-slow"), headers=CLIENT)
            elapsed = time.monotonic() - started
        assert resp.status_code == 200 and elapsed < 0.8, elapsed
        body = resp.json()
        assert body["outcome"] == "refer" and "DATA_UNAVAILABLE" in [r["code"] for r in body["reasons"]]
    finally:
        runtime.stop()
