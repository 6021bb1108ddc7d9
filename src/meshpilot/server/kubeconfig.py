"""The kubeconfig the control plane writes beside endpoints.json, so ``kubectl`` reaches
it with ``KUBECONFIG=<state dir>/kubeconfig`` and nothing else.

It holds the API's bearer token, so it is written owner-only (0600) like the token file,
atomically, and anew at every start: the port (and with ``--tls`` the roots) can change
from one start to the next.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

CONTEXT = "meshpilot"


def kubeconfig(api_url: str, token: str, ca_file: Path | None = None) -> dict[str, Any]:
    """A kubeconfig with one cluster, user and context, all named ``meshpilot``, the
    context current and on namespace ``default`` (where meshpilot stores objects that
    name none)."""
    cluster: dict[str, Any] = {"server": api_url}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": cluster}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {
            "cluster": CONTEXT, "user": CONTEXT, "namespace": "default"}}],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> None:
    """Write ``config`` to ``path`` readable by its owner only, via a temporary file and
    ``os.replace`` so kubectl never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # exactly 0600, whatever a file left by a crash had
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    os.replace(tmp, path)
