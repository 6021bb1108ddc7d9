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
