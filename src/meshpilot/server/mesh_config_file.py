"""Which mesh config file a control plane runs with, read before anything starts.

``up --mesh-config FILE`` (the server's ``--mesh-config``) names it; without the flag, the
state directory's ``mesh.yaml`` is read when it is there, so a mesh config set once stays
set across restarts. A file with errors stops the start: a control plane does not run on
a mesh config it would have to guess at (the errors name file, line and field).
"""

from __future__ import annotations

import sys
from pathlib import Path

from meshpilot.api.mesh_config import MESH_CONFIG_FILE, MeshConfig
from meshpilot.statedir import StateDir
from meshpilot.validation.mesh_config import read_mesh_config

FLAG_HELP = ("meshConfig YAML: outboundTrafficPolicy.mode (ALLOW_ANY, the default, or "
             "REGISTRY_ONLY) and dnsResolvers; default: mesh.yaml in the state directory, "
             "when there")


def mesh_config_path(state: StateDir, given: str | None) -> Path | None:
    """The file to read, or None for Istio's defaults."""
    if given:
        return Path(given)
    path = state.root / MESH_CONFIG_FILE
    return path if path.is_file() else None


def load_mesh_config(state: StateDir, given: str | None, network: str = "") -> MeshConfig:
    """The mesh config to run with, the control-plane host on ``network`` (``up
    --network``) when given; its warnings go to stderr (the control plane's log).
    Raises :class:`~meshpilot.validation.mesh_config.MeshConfigError` on errors."""
    path = mesh_config_path(state, given)
    if path is None:
        return MeshConfig()
    config, warnings = read_mesh_config(path, network)
    for warning in warnings:
        print(f"meshpilot: {warning.format()}", file=sys.stderr)
    return config


def own_network(config: MeshConfig | None, network: str) -> str:
    """The control-plane host's network: the one listing ``fromRegistry: Kubernetes``
    (``up --network`` made it so when given), else the flag's name alone (no
    ``meshNetworks``: one network, the name routes nothing), else ""."""
    listed = config.networks.registry_network() if config is not None else ""
    return listed or network
