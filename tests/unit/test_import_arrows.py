"""Arrows between packages point one way (DESIGN.md): checked on a fresh interpreter,
since a module already imported by another test would hide an import."""

from __future__ import annotations

import subprocess
import sys


def imported_by(module: str, prefix: str) -> list[str]:
    """The modules under ``prefix`` that importing ``module`` loads."""
    code = (f"import sys, {module}\n"
            f"print('\\n'.join(m for m in sys.modules if m.startswith({prefix!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.split()


def test_the_cli_reaches_the_control_plane_only_through_its_api() -> None:
    assert imported_by("meshpilot.cli.main", "meshpilot.server") == []


def test_the_mesh_and_the_rollouts_meet_only_in_the_composition_root() -> None:
    assert "meshpilot.server.controlplane" not in imported_by(
        "meshpilot.server.delivery_wiring", "meshpilot.server")
    assert "meshpilot.server.delivery_wiring" not in imported_by(
        "meshpilot.server.controlplane", "meshpilot.server")


def test_delivery_reaches_store_runtime_and_telemetry_only_through_its_ports() -> None:
    loaded = imported_by("meshpilot.delivery", "meshpilot.")
    assert {m.split(".")[1] for m in loaded} <= {"api", "delivery"}
