"""The Prometheus alert rules (deploy/monitoring/alerts.yml): valid, each one firing on
the series it is about and not on others (promtool's own rule tests,
deploy/monitoring/alerts_test.yml), and naming only metrics storemon serves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from storemon.observability import metric_names

MONITORING = Path(__file__).resolve().parents[3] / "deploy" / "monitoring"
RULES = MONITORING / "alerts.yml"
#: Series Prometheus adds itself.
PROMETHEUS_OWN = {"up"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: deploy/test-tools.sh installs it (Debian's prometheus)",
                    pytrace=False)
    return found


def test_the_rules_are_valid():
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_fires_on_its_series_and_only_there():
    done = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], cwd=MONITORING,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", (MONITORING / "alerts_test.yml").read_text()))
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
              for rule in group["rules"]}
    assert tested == alerts


def test_the_rules_name_only_metrics_storemon_serves():
    served = {
        getattr(metric_names, name) for name in dir(metric_names)
        if name.isupper() and isinstance(getattr(metric_names, name), str)
    }
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            named = set(re.findall(r"\bstoremon_\w+", rule["expr"]))
            named |= {name for name in PROMETHEUS_OWN if re.search(rf"\b{name}\{{", rule["expr"])}
            assert named, rule["alert"]
            assert named <= served | PROMETHEUS_OWN, (rule["alert"], named - served)


def test_prometheus_loads_the_rules_with_its_scrape_config():
    config = MONITORING / "prometheus.yml"
    assert yaml.safe_load(config.read_text())["rule_files"] == ["alerts.yml"]
    done = subprocess.run([promtool(), "check", "config", str(config)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
