"""The load tests run: the Locust mix against a real server, and its pieces do what they say."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest
from pydantic import ValidationError

from service.config import REPO_ROOT
from service.schemas import DecisionRequest
from tests.pgcluster import server_bin

LOCUST = shutil.which("locust", path=str(REPO_ROOT / ".venv/bin")) or shutil.which("locust")


def test_the_mix_builds_the_applications_it_promises():
    sys.path.insert(0, str(REPO_ROOT))
    import random

    from loadtests import mix as locustfile

    rng = random.Random(1)
    good = [locustfile.good() for _ in range(50)]
    for body in good:
        DecisionRequest.model_validate(body, strict=False)
    assert len({b["applicant"]["id_number"] for b in good}) == 50  # distinct customers
    assert len({b["device"]["ip"] for b in good}) == 50
    for _ in range(20):
        with pytest.raises(ValidationError):
            DecisionRequest.model_validate_json(__import__("orjson").dumps(locustfile.contract_violation(rng)))
        DecisionRequest.model_validate(locustfile.fraud(rng), strict=False)


@pytest.mark.skipif(LOCUST is None, reason="LOCUST NOT INSTALLED: `make test` installs it with .[dev]")
def test_locust_mix_runs_against_a_live_server_without_failures(live_server, tmp_path):
    done = subprocess.run(
        [LOCUST, "-f", "loadtests/locustfile.py", "--host", live_server.url, "--headless", "-u", "4", "-r", "4",
         "-t", "4s", "--csv", str(tmp_path / "run"), "--only-summary"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env={"LOAD_CUSTOMERS": "1000", "PATH": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "run_stats.csv") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert int(rows["good"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0


POSTGRES = ["--database", "throwaway"]


@pytest.mark.parametrize("script", ["bench.py", "bench_pipeline.py", "bench_providers.py", "bench_reload.py",
                                    "bench_rules.py", "bench_scoring.py", "bench_whitelist.py", "bench_backtest.py",
                                    "bench_explain.py",
                                    ("bench.py", *POSTGRES, "--replicas", "2", "--targets", "service"),
                                    ("bench_whitelist.py", *POSTGRES), "bench_driver.py"])
def test_every_benchmark_runs_on_tiny_inputs(script):
    """A smoke run of each benchmark (seconds, nothing written), so that none can rot unnoticed."""
    script, *options = (script,) if isinstance(script, str) else script
    if ("throwaway" in options or script == "bench_driver.py") and server_bin() is None:
        pytest.skip("*** PostgreSQL is not installed (make tools installs it): benchmark smoke SKIPPED ***")
    done = subprocess.run([sys.executable, f"loadtests/{script}", "--smoke", *options], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
