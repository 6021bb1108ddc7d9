"""``meshpilot up --mesh-config FILE`` (and ``mesh.yaml`` in the state directory) with the
real CLI and server processes: a mesh config with an error stops ``up`` before anything
starts, saying file, line, field and the valid values; a good one with an Istio field
meshpilot does not act on starts, warning about it (Istio's meshConfig:
``outboundTrafficPolicy.mode``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import _env, run_cli


def test_up_refuses_a_bad_mesh_config_and_starts_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    bad = tmp_path / "mesh.yaml"
    bad.write_text("outboundTrafficPolicy:\n  mode: BLOCK\n")
    result = run_cli("up", "--mesh-config", str(bad), state_dir=state)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert f"error {bad}:2:3: MP0081 [meshConfig] outboundTrafficPolicy.mode" in text
    assert "ALLOW_ANY, REGISTRY_ONLY" in text and "not started" in text
    assert not (state / "endpoints.json").exists()
    # the same file in the state directory, no flag: refused the same way
    state.mkdir(parents=True, exist_ok=True)
    (state / "mesh.yaml").write_text(bad.read_text())
    again = run_cli("up", state_dir=state)
    assert again.returncode != 0 and "MP0081" in again.stdout + again.stderr
    assert not (state / "endpoints.json").exists()


def test_the_server_refuses_it_too(tmp_path: Path) -> None:
    """What a supervisor starting the server directly sees (exit 2, the findings)."""
    bad = tmp_path / "m.yaml"
    bad.write_text("outboundTrafficPolicy: {mode: ALLOW_ANY}\ndnsResolvers: [nameserver]\n")
    result = subprocess.run(
        [sys.executable, "-m", "meshpilot.server", "--state-dir", str(tmp_path / "s"),
         "--mesh-config", str(bad)], capture_output=True, text=True, env=_env(), timeout=60)
    assert result.returncode == 2
    assert f"{bad}:2:" in result.stderr and "dnsResolvers[0]" in result.stderr
