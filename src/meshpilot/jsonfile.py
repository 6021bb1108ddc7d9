"""Write a JSON file atomically: readers (the CLI, a restarted control plane) never see half
a file, and a crash mid-write leaves the previous version in place."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o644, indent: int | None = 2,
                      sort_keys: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # exactly ``mode``: a file left by a crash may have had others
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(data, indent=indent, sort_keys=sort_keys))  # one C-encoded string
        fh.write("\n")
    os.replace(tmp, path)
