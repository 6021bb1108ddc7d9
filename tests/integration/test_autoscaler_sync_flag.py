"""``meshpilot up --hpa-sync-period`` is handed to the control plane (as Kubernetes'
``--horizontal-pod-autoscaler-sync-period``); the control plane parses it as it parses
``--cert-ttl``."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import read_endpoints, run_cli


def test_the_sync_period_reaches_the_control_plane(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    try:
        up = run_cli("up", "--no-mesh", "--hpa-sync-period", "2s", state_dir=state_dir)
        assert up.returncode == 0, up.stderr
        endpoints = read_endpoints(state_dir)
        assert endpoints is not None
        args = Path(f"/proc/{endpoints['pid']}/cmdline").read_bytes().split(b"\0")
        assert args[args.index(b"--hpa-sync-period") + 1] == b"2s"
    finally:
        run_cli("down", state_dir=state_dir)
