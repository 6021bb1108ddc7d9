"""A real control plane for benchmarks: ``python -m meshpilot.server`` driven by its API.

Shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, so this module
is importable as ``harness``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

API = "/apis/meshpilot.io/v1"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0,
                 sig: int = signal.SIGTERM) -> None:
    """Ask ``proc`` to exit with ``sig``, then kill it after ``grace`` seconds: a benchmark
    must not leave a server or a Prometheus behind when it stops, even a wedged one."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def keep_or_remove(tmp: Path, keep: bool) -> None:
    """End of a run: remove its scratch directory, or say where it is when ``--keep``
    asked to look at its logs afterwards."""
    if keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def clean_env() -> dict[str, str]:
    """The environment without proxy settings, so loopback calls go direct."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ControlPlane:
    """``python -m meshpilot.server --state-dir DIR`` as a subprocess, driven by its API."""

    def __init__(self, state_dir: Path, envoy_concurrency: int | None = None,
                 server_args: Sequence[str] = ()) -> None:
        """With ``--no-mesh`` among ``server_args`` only the API and store run (no
        proxies): what API and store benchmarks measure."""
        self.state_dir = state_dir
        self.log_path = state_dir.parent / "server.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        extra = [] if envoy_concurrency is None else [
            "--envoy-concurrency", str(envoy_concurrency)]
        extra += server_args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshpilot.server", "--state-dir", str(state_dir), *extra],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=clean_env(), start_new_session=True)
        self.endpoints = self._wait_endpoints(timeout=30.0)
        token = (state_dir / "token").read_text().strip()
        self.api = httpx.Client(base_url=self.endpoints["api"], trust_env=False, timeout=30.0,
                                headers={"Authorization": f"Bearer {token}"})

    def _wait_endpoints(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"control plane exited at start; see {self.log_path}")
            try:
                endpoints = json.loads((self.state_dir / "endpoints.json").read_text())
                meshless = "--no-mesh" in self.proc.args
                if endpoints.get("pid") == self.proc.pid and (
                        meshless or endpoints.get("mesh_proxy")):
                    return endpoints
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"control plane did not start in {timeout:g} s; see {self.log_path}")

    def apply(self, text: str) -> None:
        r = self.api.post(f"{API}/apply", json={"sources": [{"file": "bench.yaml", "text": text}]})
        if r.status_code != 200:
            raise RuntimeError(f"apply failed: {r.status_code} {r.text}")

    def converge(self, timeout: float = 90.0) -> None:
        """Until every Deployment is ready and every proxy has ACKed the latest mesh."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api.get(f"{API}/readiness").json().get("ready"):
                time.sleep(0.2)
                if self.api.get(f"{API}/readiness").json().get("ready"):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"mesh not ready within {timeout}s; see {self.log_path}")

    def pods(self, namespace: str = "default") -> list[dict[str, Any]]:
        return self.api.get(f"/api/v1/namespaces/{namespace}/pods").json()["items"]

    def rollout(self, ns: str, name: str) -> dict[str, Any]:
        r = self.api.get(f"{API}/namespaces/{ns}/rollouts/{name}")
        if r.status_code != 200:
            raise RuntimeError(f"rollout {ns}/{name}: {r.status_code} {r.text[:300]}")
        return r.json()

    def stop(self) -> None:
        self.api.close()
        stop_process(self.proc, grace=20.0)
        self._log.close()


def issue_credentials(nodes: Any) -> Any:
    """Workload credentials for the benchmark's proxies, from a CA made in a temporary
    directory (removed once the CA is loaded: its key stays in memory only), as the
    control plane gives its own: node id -> Credential."""
    import tempfile

    from meshpilot.security import load_or_create_self_signed_ca
    from meshpilot.security.workload_certs import CredentialSubject, WorkloadCertificates

    with tempfile.TemporaryDirectory(prefix="meshpilot-bench-ca-") as directory:
        ca = load_or_create_self_signed_ca(Path(directory))
    return WorkloadCertificates(ca).current(
        CredentialSubject(n.id, n.namespace, n.service_account) for n in nodes)
