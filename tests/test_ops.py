"""What SREs get with the project: Prometheus rules that pass promtool and their unit tests, and a
Grafana dashboard whose every query reads a metric the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import REGISTRY

import service.metrics  # noqa: F401 - registers every family
from service.config import REPO_ROOT

OPS = REPO_ROOT / "ops"
PROMTOOL = shutil.which("promtool")
ROWS = ["Traffic", "Latency", "Outcomes", "Rules", "Providers", "Model", "Store", "Manual review"]
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_info")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="PROMTOOL NOT FOUND: `make test` installs it (Debian package 'prometheus'); "
                             "without it the alert rules are NOT checked")


def exported_names() -> set[str]:
    names = {"process_resident_memory_bytes"}
    for collector in list(REGISTRY._collector_to_names):  # every registered family, used or not
        for family in collector.describe() if hasattr(collector, "describe") else collector.collect():
            names.update(family.name + suffix for suffix in SUFFIXES)
    return names


def recorded_names() -> set[str]:
    doc = yaml.safe_load((OPS / "prometheus/alerts.yml").read_text())
    return {rule["record"] for group in doc["groups"] for rule in group["rules"] if "record" in rule}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(loan[a-z0-9_:]*|process_[a-z_]+)\b", expr))


@needs_promtool
def test_alert_rules_pass_promtool_check_and_unit_tests():
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        done = subprocess.run([PROMTOOL, *args], cwd=OPS / "prometheus", capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout


def test_alert_rules_cover_the_slos_and_the_operational_risks():
    doc = yaml.safe_load((OPS / "prometheus/alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule}
    for name in ("LoanDecisionErrorBudgetBurnFast", "LoanDecisionLatencyBudgetBurnFast", "LoanProviderCircuitOpen",
                 "LoanRulesetReloadFailed", "LoanSlaBreached", "LoanApproveRateShift"):
        assert name in alerts
        assert alerts[name]["labels"]["severity"] in ("page", "ticket")
    # multi-window: each burn alert reads a long and a short window
    fast = alerts["LoanDecisionErrorBudgetBurnFast"]["expr"]
    assert "ratio_rate1h" in fast and "ratio_rate5m" in fast
    tests = yaml.safe_load((OPS / "prometheus/alerts.test.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    assert set(alerts) - tested <= {"LoanDecisionErrorBudgetBurnSlow", "LoanDecisionLatencyBudgetBurnSlow"}
    known = exported_names() | recorded_names()
    for group in doc["groups"]:
        for rule in group["rules"]:
            assert metric_names(rule["expr"]) <= known, (rule.get("alert") or rule.get("record"), metric_names(rule["expr"]) - known)


def test_every_alert_links_its_runbook_section():
    """Each alert's runbook_url names a section of docs/RUNBOOK.md that says what it means, how
    to confirm it and what to do."""
    import re

    doc = yaml.safe_load((OPS / "prometheus/alerts.yml").read_text())
    alerts = [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]
    runbook = (REPO_ROOT / "docs" / "RUNBOOK.md").read_text()
    sections = {title.lower(): body for title, body in re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", runbook, re.S | re.M)}
    for alert in alerts:
        url = alert["annotations"].get("runbook_url", "")
        assert url == f"docs/RUNBOOK.md#{alert['alert'].lower()}", alert["alert"]
        body = sections.get(alert["alert"].lower())
        assert body and all(part in body for part in ("**Means:**", "**Confirm:**", "**Do:**")), alert["alert"]


def test_dashboard_has_every_row_and_reads_only_exported_metrics():
    dashboard = json.loads((OPS / "grafana/loan-decision.json").read_text())
    assert [p["title"] for p in dashboard["panels"] if p["type"] == "row"] == ROWS
    known = exported_names() | recorded_names()
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 30
    for expr in queries:
        names = metric_names(expr)
        assert names, expr
        assert names <= known, (expr, names - known)
    # every metric family the service defines is on the dashboard somewhere
    shown = set().union(*(metric_names(q) for q in queries))
    families = {f.name for c in list(REGISTRY._collector_to_names) if hasattr(c, "describe")
                for f in c.describe() if f.name.startswith("loan_")}
    unshown = {f for f in families if not any(s.startswith(f) for s in shown)}
    assert not unshown, unshown
