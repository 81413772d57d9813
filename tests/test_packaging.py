"""The Dockerfile lints clean, and bad configuration stops start-up with a clear message."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from service.config import REPO_ROOT


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(REPO_ROOT / ".venv" / "bin" / "hadolint")
    result = subprocess.run([hadolint, str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_one_worker_as_non_root_with_a_healthcheck():
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2
    assert "\nUSER 10001:10001\n" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert '"--workers"' not in text


@pytest.mark.parametrize(("env", "needle"), [
    ({"LOAN_PORT": "99999"}, "LOAN_PORT"),
    ({"LOAN_API_KEYS": "client:abc"}, "LOAN_API_KEYS"),
    ({"LOAN_API_KEYS": "root:" + "a" * 64}, "LOAN_API_KEYS"),
    ({"LOAN_DEADLINE_MS": "-1"}, "LOAN_DEADLINE_MS"),
])
def test_bad_configuration_stops_start_up_naming_the_variable(env, needle):
    result = subprocess.run([sys.executable, "-m", "service.cli", "serve"], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", **env}, timeout=30, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_the_image_builds_every_package_the_project_installs():
    """pyproject.toml installs service and offline (the CLI's backtest and reports): the image's
    build stage must copy both, or `loan-decision backtest` fails only inside the container."""
    import tomllib

    include = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for pattern in include:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in dockerfile, package


def test_the_simulator_on_a_taken_port_says_so_in_one_line():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "service.cli", "providers", "simulate", "--port", str(port)],
                                capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and f"127.0.0.1:{port}" in result.stderr
    assert "SIMULATOR_PORT" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _pins(path) -> dict[str, tuple[str, int]]:
    """{package: (version, how many hashes)} from a pip-compile lock file."""
    import re

    pins: dict[str, tuple[str, int]] = {}
    name = None
    for line in (REPO_ROOT / path).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^ ]+)", line)
        if match:
            name = match.group(1).lower().replace("_", "-")
            pins[name] = (match.group(2), 0)
        elif name and "--hash=sha256:" in line:
            pins[name] = (pins[name][0], pins[name][1] + 1)
    return pins


def test_dependencies_are_locked_with_hashes_and_tests_run_what_production_runs():
    import re
    import tomllib

    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert runtime and all(count > 0 for _, count in runtime.values()), "every runtime pin needs its hashes"
    assert all(count > 0 for _, count in dev.values())
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group().lower().replace("_", "-")
        assert name in runtime, f"{name} is a runtime dependency but not in requirements.lock (make lock)"
    different = {name: (version, dev.get(name, ("missing",))[0]) for name, (version, _) in runtime.items()
                 if dev.get(name, (None,))[0] != version}
    assert not different, f"the test set runs other versions than production: {different} (make lock)"


def test_the_image_installs_the_hashed_lock_into_a_venv_on_a_pinned_base():
    import re

    text = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}\n", text)
    assert text.count("FROM ${PYTHON_IMAGE}") == 2
    assert "--require-hashes -r requirements.lock" in text and "/wheels" not in text
    assert "COPY --from=build /opt/venv /opt/venv" in text
    for label in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
