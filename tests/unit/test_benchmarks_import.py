"""Every benchmark script still loads against the package as it is now.

Benchmarks are run by hand, not in CI, so a renamed module or constant would break one
unnoticed until the next measurement (``push_size.py`` once lost ``ORDER`` that way).
Loading each script without running it executes its imports and module-level code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


def test_there_are_benchmarks_to_load() -> None:
    assert {"convergence.py", "push_size.py", "stream_work.py"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_loads(script: Path) -> None:
    loader = ("import runpy, sys; sys.path.insert(0, sys.argv[1]); "
              "runpy.run_path(sys.argv[2], run_name='loaded_by_test')")
    done = subprocess.run([sys.executable, "-c", loader, str(BENCHMARKS), str(script)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
