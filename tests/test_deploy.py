"""deploy/: the Compose file and the Kubernetes manifests, checked statically (no Docker engine
or cluster here): every manifest valid against the Kubernetes schemas (kubernetes-validate,
strict), the pieces wired to each other, and the rules ConfigMap identical to rules/."""

from __future__ import annotations

import subprocess
import sys

import yaml

from service.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose"


def manifests() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(KUBE.glob("*.yaml")) if p.name != "kustomization.yaml"}


def test_every_manifest_is_valid_kubernetes_and_listed_in_the_kustomization():
    files = sorted(str(KUBE / name) for name in manifests())
    done = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *files],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(manifests())


def test_the_rules_config_map_is_the_bundled_ruleset():
    sys.path.insert(0, str(KUBE))
    try:
        from rules_configmap import manifest
    finally:
        sys.path.remove(str(KUBE))
    assert (KUBE / "rules-configmap.yaml").read_text() == manifest(), \
        "stale: run python deploy/kubernetes/rules_configmap.py"


def test_the_deployment_is_wired_to_its_config_map_secret_probes_and_budget():
    m = manifests()
    deployment, service, budget, job = (m["deployment.yaml"], m["service.yaml"], m["poddisruptionbudget.yaml"],
                                        m["migrate-job.yaml"])
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["replicas"] >= 2 and budget["spec"]["maxUnavailable"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    env = {e["name"]: e for e in container["env"]}
    for secret in ("LOAN_DATABASE_URL", "LOAN_PII_KEY", "LOAN_API_KEYS", "LOAN_PROVIDER_KEY"):
        assert "secretKeyRef" in env[secret]["valueFrom"], secret  # a reference, never a value
    (rules,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "rules"]
    config_map = m["rules-configmap.yaml"]
    assert rules["configMap"]["name"] == config_map["metadata"]["name"]
    items = {i["key"]: i["path"] for i in rules["configMap"]["items"]}
    assert set(items) == set(config_map["data"])
    for key, path in items.items():
        assert (REPO_ROOT / "rules" / path).read_text() == config_map["data"][key]
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["loan-decision", "db", "migrate"]
    assert migrate["image"] == container["image"]


def test_the_compose_file_runs_two_replicas_on_postgres_scraped_by_prometheus():
    compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "simulator", "replica-1", "replica-2", "prometheus", "grafana"} <= set(services)
    db = services["postgres"]["environment"]
    url = f"postgresql://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@postgres:5432/{db['POSTGRES_DB']}"
    replicas = [name for name in services if name.startswith("replica-")]
    for name in replicas + ["migrate"]:
        assert services[name]["environment"]["LOAN_DATABASE_URL"] == url, name
    for name in replicas:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["LOAN_PROVIDERS_URL"] == "http://simulator:8081"
    assert services["migrate"]["command"] == ["loan-decision", "db", "migrate"]
    assert "--port" in services["simulator"]["command"] and "8081" in services["simulator"]["command"]
    scrape = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert sorted(job["static_configs"][0]["targets"]) == sorted(f"{n}:8000" for n in replicas)
    for service in services.values():  # every file mounted from the repository exists
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).resolve().exists(), source
    assert (COMPOSE / services["replica-1"]["build"]["context"] / "Dockerfile").resolve().exists()


def test_prometheus_accepts_the_compose_scrape_config(tmp_path):
    import shutil

    import pytest

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("*** promtool missing (make tools installs it): compose prometheus.yml NOT CHECKED ***")
    config = (COMPOSE / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml",
                                                               str(REPO_ROOT / "ops/prometheus/alerts.yml"))
    (tmp_path / "prometheus.yml").write_text(config)
    done = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
