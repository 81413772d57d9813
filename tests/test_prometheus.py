"""A real Prometheus (Debian's ``prometheus``, installed by ``make test``) scrapes a live service
with the bundled alert rules; a provider's breaker opens; the alert fires.

The rules are the bundled ones with one change: ``for:`` hold times become 2 s, so the test does
not wait the minutes production waits."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import httpx
import orjson
import pytest

from service.config import REPO_ROOT
from tests.conftest import LiveServer, free_port

from .factories import CLIENT, application

PROMETHEUS = shutil.which("prometheus")


def wait_until(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {seconds:g} s")


@pytest.mark.skipif(PROMETHEUS is None, reason="*** PROMETHEUS NOT INSTALLED: `make test` installs the Debian package "
                                               "'prometheus'; the live alert test is SKIPPED ***")
def test_prometheus_fires_the_breaker_alert_from_a_live_service(tmp_path):
    sim_port = free_port()
    simulator = subprocess.Popen([sys.executable, "-m", "service.cli", "providers", "simulate", "--port", str(sim_port),
                                  "--failure", "5xx", "--failure-rate", "1.0"], cwd=REPO_ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = LiveServer(tmp_path / "data", env={"LOAN_PROVIDERS_URL": f"http://127.0.0.1:{sim_port}",
                                                "LOAN_PROVIDER_KEY": "k", "LOAN_BREAKER_OPEN_S": "300"}).start()
    rules = re.sub(r"\bfor: \d+[smh]", "for: 2s", (REPO_ROOT / "ops/prometheus/alerts.yml").read_text())
    (tmp_path / "alerts.yml").write_text(rules)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        f"scrape_configs:\n  - job_name: loan-decision\n    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n")
    web = free_port()
    prometheus = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
                                  cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        api = f"http://127.0.0.1:{web}/api/v1"
        wait_until(lambda: _get(api + "/targets", "activeTargets", lambda t: t and t[0]["health"] == "up"), 30,
                   "Prometheus scraping the service")
        with httpx.Client(base_url=server.url, headers=CLIENT, timeout=10) as client:
            for n in range(6):  # every check answers 503: the breakers open
                resp = client.post("/v1/decisions", content=orjson.dumps(application(f"prom-{n}")),
                                   headers={"Content-Type": "application/json"})
                assert resp.status_code == 200
        firing = wait_until(lambda: _get(api + "/alerts", "alerts", lambda alerts: [
            a for a in alerts if a["labels"]["alertname"] == "LoanProviderCircuitOpen" and a["state"] == "firing"]),
            45, "LoanProviderCircuitOpen firing")
        assert {a["labels"]["provider"] for a in firing} >= {"identity"}
        assert firing[0]["annotations"]["runbook_url"] == "docs/RUNBOOK.md#loanprovidercircuitopen"
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        server.stop()
        simulator.terminate()
        simulator.wait(10)


def _get(url: str, key: str, accept):
    try:
        data = httpx.get(url, timeout=2).json()["data"][key]
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    return accept(data)
