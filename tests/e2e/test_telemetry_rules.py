"""The shipped Prometheus files load: promtool accepts the alerting rules and the
example configuration; the Grafana dashboard is valid JSON over Istio's series."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

DEPLOY = Path(__file__).parents[2] / "deploy"


def _promtool() -> str:
    return shutil.which("promtool") or "/usr/bin/promtool"


def test_promtool_accepts_the_alerting_rules() -> None:
    proc = subprocess.run([_promtool(), "check", "rules", str(DEPLOY / "prometheus/alerts.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 3 rules found" in proc.stdout + proc.stderr


def test_promtool_accepts_the_example_config() -> None:
    proc = subprocess.run([_promtool(), "check", "config",
                           str(DEPLOY / "prometheus/prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_dashboard_queries_istio_series() -> None:
    doc = json.loads((DEPLOY / "grafana/meshpilot-istio.json").read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    assert exprs and all("istio_" in e for e in exprs)
    assert doc["templating"]["list"]
