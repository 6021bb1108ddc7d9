"""``meshpilot host``: token creation through the real CLI and control plane, and the
join command's refusals before anything is sent (kubeadm-style join tokens; Istio's
WorkloadGroup as what they are bound to)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ControlPlane, run_cli

GROUP = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadGroup",
         "metadata": {"name": "reviews", "namespace": "default"},
         "spec": {"template": {"labels": {"app": "reviews"}, "ports": {"http": 8080}}}}


def test_token_create_for_a_group(control_plane: ControlPlane, tmp_path: Path) -> None:
    missing = run_cli("host", "token", "create", "--group", "default/reviews",
                      state_dir=control_plane.state_dir)
    assert missing.returncode == 1
    assert "WorkloadGroup default/reviews not found" in missing.stderr

    (tmp_path / "wg.json").write_text(json.dumps(GROUP))
    assert run_cli("apply", "-f", str(tmp_path / "wg.json"),
                   state_dir=control_plane.state_dir).returncode == 0
    made = run_cli("host", "token", "create", "--group", "default/reviews", "--ttl", "2m",
                   state_dir=control_plane.state_dir)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) >= 40 and " " not in token
    assert "for WorkloadGroup default/reviews, single use" in made.stderr

    too_long = run_cli("host", "token", "create", "--group", "default/reviews", "--ttl",
                       "48h", state_dir=control_plane.state_dir)
    assert too_long.returncode == 1 and "at most" in too_long.stderr


def test_join_refuses_a_plaintext_server(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("")
    refused = run_cli("host", "join", "--server", "http://10.0.0.1:8080", "--token", "t",
                      "--group", "default/reviews", "--address", "10.0.0.2",
                      "--ca-file", str(tmp_path / "ca.pem"),
                      "--state-dir", str(tmp_path / "host"), state_dir=tmp_path / "state")
    assert refused.returncode == 2
    assert "not https://" in refused.stderr
    assert not (tmp_path / "host").exists()


def test_join_takes_a_node_name_and_pod_addresses_and_refuses_a_bad_name(
        tmp_path: Path) -> None:
    """The options reach the agent (which then refuses the plaintext server, as above);
    a node name that is no DNS label, or the control plane's own, is refused first."""
    (tmp_path / "ca.pem").write_text("")
    common = ["host", "join", "--server", "http://10.0.0.1:8080", "--token", "t",
              "--group", "default/reviews", "--address", "10.0.0.2",
              "--ca-file", str(tmp_path / "ca.pem"), "--state-dir", str(tmp_path / "host")]
    taken = run_cli(*common, "--node-name", "node-b", "--pod-addresses", "10.0.0.16/29",
                    state_dir=tmp_path / "state")
    assert taken.returncode == 2 and "not https://" in taken.stderr, taken.stderr
    for gateway in ("--east-west-gateway", "--network-gateway"):  # Istio's name, and ours
        taken = run_cli(*common, gateway, state_dir=tmp_path / "state")
        assert taken.returncode == 2 and "not https://" in taken.stderr, taken.stderr
    for bad in ("Node_B", "localhost"):
        refused = run_cli(*common, "--node-name", bad, state_dir=tmp_path / "state")
        assert refused.returncode == 2 and f"--node-name '{bad}'" in refused.stderr
    assert not (tmp_path / "host").exists()


def test_up_refuses_host_and_listen_that_disagree(tmp_path: Path) -> None:
    refused = run_cli("up", "--host", "127.0.0.2", "--listen", "10.0.0.1",
                      state_dir=tmp_path / "state")
    assert refused.returncode == 1
    assert "--host 127.0.0.2 and --listen 10.0.0.1" in refused.stderr
    assert not (tmp_path / "state" / "endpoints.json").exists()
