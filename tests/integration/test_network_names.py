"""A WorkloadEntry or WorkloadGroup naming a network the running control plane's
``meshNetworks`` does not list is applied with a warning (MP2032) at its file and line,
and the same finding is in the control plane's diagnostics (describe, the API), with
the real CLI and server. Istio takes any network name; one that no network lists gets no
gateway, so its endpoints are out of reach from every other network (Istio's split
horizon), which is what the warning says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import ControlPlane, run_cli

MESH = """\
dnsResolvers: ["{dns}"]
meshNetworks:
  networks:
    network-a:
      endpoints: [{{fromCidr: 10.3.0.0/16}}]
      gateways: [{{address: 10.3.0.1, port: 15443}}]
"""
ENTRY = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: default}
spec:
  address: 10.3.0.2
  network: netwrok-a
"""


def test_an_unlisted_network_is_warned_at_apply_and_in_diagnostics(
        control_plane_factory: Callable[..., ControlPlane], tmp_path: Path) -> None:
    cp = control_plane_factory("cp", start=False)
    cp.state_dir.mkdir(parents=True, exist_ok=True)
    (cp.state_dir / "mesh.yaml").write_text(MESH.format(dns=cp.dns))
    cp.start()
    entry = tmp_path / "vm.yaml"
    entry.write_text(ENTRY)
    applied = run_cli("apply", "-f", str(entry), state_dir=cp.state_dir)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    said = applied.stdout + applied.stderr
    assert f"{entry}:6:" in said and "MP2032" in said, said
    assert "did you mean 'network-a'?" in said, said
    assert cp.client is not None
    stored = cp.client.get("/apis/networking.istio.io/v1/namespaces/default/workloadentries/vm-1")
    assert stored.status_code == 200  # applied: a warning, not a refusal
    every = cp.client.get("/apis/meshpilot.io/v1/diagnostics").json()["diagnostics"]
    assert [d["code"] for d in every if d["code"] == "MP2032"] == ["MP2032"], every
    one = cp.client.get("/apis/meshpilot.io/v1/diagnostics", params={
        "kind": "WorkloadEntry", "namespace": "default", "name": "vm-1"}).json()
    assert any(d["code"] == "MP2032" for d in one["diagnostics"]), one

    fixed = run_cli("apply", "-f", "-", state_dir=cp.state_dir,
                    input=ENTRY.replace("netwrok-a", "network-a"))
    assert fixed.returncode == 0 and "MP2032" not in fixed.stdout + fixed.stderr, fixed.stderr
