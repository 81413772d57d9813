"""Fixtures: an in-process app with its own data folder (or its own PostgreSQL database), and a
real server in a subprocess.

Every runtime starts with a whitelist active (tests/whitelist-one.csv: one customer no test
uses): without an active version a worker is not ready and refers everything. Applicants not on
it are declined NOT_PREAPPROVED, as they would be in production.

PostgreSQL: one throw-away cluster per test session (tests/pgcluster.py); each test that asks
for ``database_url`` gets a fresh database copied from a migrated template."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from service.api.app import create_app
from service.config import REPO_ROOT, Settings
from service.runtime import Runtime
from service.store.keys import KeyedHash
from tests.pgcluster import Cluster, server_bin

ONE_CUSTOMER = REPO_ROOT / "tests" / "whitelist-one.csv"
BACKENDS = ("sqlite", "postgresql")


def import_whitelist(settings: Settings, source: Path = ONE_CUSTOMER) -> None:
    """Make ``source`` the active whitelist of the settings' store."""
    url = settings.database_url.get_secret_value()
    if url:
        from service.store.postgres.whitelist import import_whitelist as shared

        shared(url, source, KeyedHash(settings.pii_key))
    else:
        from service.store.whitelist import import_whitelist as embedded

        embedded(settings.whitelist_dir, source, KeyedHash(settings.pii_key))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    if server_bin() is None:
        pytest.skip("*** PostgreSQL is not installed (make tools installs it): PostgreSQL tests SKIPPED ***")
    cluster = Cluster(fsync=False).init().start()
    import psycopg

    from service.store.postgres import migrate

    template = cluster.create_database("loan_template")
    migrate(template)
    with psycopg.connect(template, autocommit=True) as conn:
        conn.execute("SELECT 1")
    yield cluster
    cluster.remove()


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def database_url(pg_cluster: Cluster) -> str:
    """A fresh, migrated database of its own."""
    import psycopg

    name = f"test_{next(_databases)}"
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE loan_template')
    return pg_cluster.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend: ``sqlite``, or ``postgresql`` on a fresh database."""
    return request.param


@pytest.fixture
def backend_url(backend: str, request: pytest.FixtureRequest) -> str:
    """The database URL of ``backend``: empty for SQLite."""
    return request.getfixturevalue("database_url") if backend == "postgresql" else ""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@asynccontextmanager
async def serving(settings: Settings, whitelist: bool = True) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """A started runtime on ``settings`` (the test whitelist imported) and a client of its app
    over ASGI; stopped on leaving."""
    if whitelist:
        import_whitelist(settings)
    runtime = Runtime.from_settings(settings)
    runtime.start()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, runtime), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, runtime
    finally:
        runtime.stop()


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    import_whitelist(settings)
    rt = Runtime.from_settings(settings)
    rt.start()
    yield rt
    rt.stop()


@pytest.fixture
async def client(settings: Settings, runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI, no sockets; its runtime started like the lifespan would."""
    app = create_app(settings, runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``loan-decision serve`` in a subprocess on loopback, as an operator would run it."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, whitelist: bool = True) -> None:
        self.data_dir = data_dir
        self.whitelist = whitelist
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "LOAN_DATA_DIR": str(data_dir), "LOAN_PORT": str(self.port),
                    "LOAN_LOG_LEVEL": "WARNING", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> LiveServer:
        if self.whitelist and not (self.data_dir / "whitelist" / "ACTIVE").exists():
            database = self.env.get("LOAN_DATABASE_URL", "")
            import_whitelist(Settings(data_dir=self.data_dir, database_url=database,
                                      pii_key=self.env.get("LOAN_PII_KEY") or Settings().pii_key))
            self.whitelist = False  # once: a restart keeps what is there
        self.proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=self.env,
                                     cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "live").start()
    yield server
    server.stop()
