"""``meshpilot analyze`` (offline, the real CLI) says what apply would about Graphite and
InfluxDB MetricTemplates: Flagger's Flux template is an error at its file and line
(MP0074), a Secret without the keys the provider reads a warning (MP2049)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli
from tests.unit.test_validation_metric_providers import FLAGGER_FLUX, FLAGGER_GRAPHITE


def test_analyze_refuses_flux_and_warns_of_secret_keys(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-control-plane"
    flux = tmp_path / "flux.yaml"
    flux.write_text(FLAGGER_FLUX)
    result = run_cli("analyze", "-f", str(flux), state_dir=nowhere)
    assert result.returncode == 1
    assert f"error {flux}:12:" in result.stderr and "MP0074" in result.stderr
    assert "it is Flux" in result.stderr

    graphite = tmp_path / "graphite.yaml"
    graphite.write_text(FLAGGER_GRAPHITE.replace(
        "    address: http://graphite.monitoring\n",
        "    address: http://graphite.monitoring\n    secretRef: {name: graphite-auth}\n")
        + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: graphite-auth}\n"
          "stringData: {token: t0ken}\n")
    result = run_cli("analyze", "-f", str(graphite), state_dir=nowhere)
    assert result.returncode == 0, result.stderr  # a warning does not fail analyze
    assert f"warning {graphite}:9:" in result.stderr and "MP2049" in result.stderr
    assert "reads username and password" in result.stderr
    assert not nowhere.exists()
