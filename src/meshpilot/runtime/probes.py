"""Readiness probes, run by the runtime against the app directly (not through the sidecar).

Kubernetes semantics with one deliberate difference: ``periodSeconds`` defaults to **1 s**
here, not Kubernetes' 10 s, because local pods start in well under a second and a
rollout should not spend 10 s per pod waiting for the next probe. The other defaults are
Kubernetes': ``initialDelaySeconds`` 0, ``timeoutSeconds`` 1, ``successThreshold`` 1,
``failureThreshold`` 3.

Ports in a probe (a number or a container port name) mean the *container* port; the app
really listens on the app port the runtime assigned to it, so that is what is probed, at
``POD_IP``. A container without a readiness probe is ready as soon as its first port
accepts connections (or, with no ports, as soon as its process runs).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from meshpilot.api.kubernetes import Probe

__all__ = ["DEFAULT_PERIOD_SECONDS", "ProbeSpec", "ReadinessTracker", "probe_spec", "run_probe"]

DEFAULT_PERIOD_SECONDS = 1.0
"""Probe period when the manifest sets none (Kubernetes: 10 s; here 1 s, see above)."""


@dataclass(frozen=True)
class ProbeSpec:
    """A probe resolved against one pod: concrete address, port and timings."""

    kind: Literal["http", "tcp", "exec", "running"]
    host: str = ""
    port: int = 0
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = DEFAULT_PERIOD_SECONDS
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    implicit: bool = False  # no readinessProbe in the manifest


def _port(value: int | str, ports_by_name: Mapping[str, int],
          app_ports: Mapping[int, int]) -> int:
    if isinstance(value, str):
        if value not in ports_by_name:
            raise ValueError(f"probe port {value!r} is not a named container port")
        value = ports_by_name[value]
    return app_ports.get(value, value)


def probe_spec(
    probe: Probe | None, *, ip: str, ports_by_name: Mapping[str, int],
    app_ports: Mapping[int, int], first_app_port: int | None,
) -> ProbeSpec:
    """Resolve ``probe`` for a pod at ``ip``.

    ``ports_by_name``: container port name → container port; ``app_ports``: container
    port → app port. Raises ValueError for a probe naming an unknown port or using gRPC.
    """
    if probe is None:
        if first_app_port is None:
            return ProbeSpec(kind="running", period=0.2, failure_threshold=1, implicit=True)
        return ProbeSpec(kind="tcp", host=ip, port=first_app_port, period=0.2, timeout=0.5,
                         failure_threshold=1, implicit=True)
    timings = {
        "initial_delay": float(probe.initial_delay_seconds or 0),
        "period": float(probe.period_seconds or DEFAULT_PERIOD_SECONDS),
        "timeout": float(probe.timeout_seconds or 1),
        "success_threshold": probe.success_threshold or 1,
        "failure_threshold": probe.failure_threshold or 3,
    }
    if probe.http_get is not None:
        get = probe.http_get
        return ProbeSpec(
            kind="http", host=get.host or ip, port=_port(get.port, ports_by_name, app_ports),
            path=get.path or "/", scheme=get.scheme or "HTTP",
            headers=tuple((h.name, h.value) for h in get.http_headers or ()), **timings,
        )
    if probe.tcp_socket is not None:
        tcp = probe.tcp_socket
        return ProbeSpec(kind="tcp", host=tcp.host or ip,
                         port=_port(tcp.port, ports_by_name, app_ports), **timings)
    if probe.exec is not None:
        if not probe.exec.command:
            raise ValueError("exec probe has no command")
        return ProbeSpec(kind="exec", command=tuple(probe.exec.command), **timings)
    raise ValueError("gRPC readiness probes are not supported by the local runtime; "
                     "use httpGet, tcpSocket or exec")


def run_probe(spec: ProbeSpec, *, env: Mapping[str, str] | None = None,
              cwd: str | None = None) -> tuple[bool, str]:
    """Run one probe; (success, message on failure)."""
    try:
        if spec.kind == "running":
            return True, ""
        if spec.kind == "tcp":
            with socket.create_connection((spec.host, spec.port), timeout=spec.timeout):
                return True, ""
        if spec.kind == "http":
            conn: http.client.HTTPConnection
            if spec.scheme == "HTTPS":
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                conn = http.client.HTTPSConnection(spec.host, spec.port, timeout=spec.timeout,
                                                   context=ctx)
            else:
                conn = http.client.HTTPConnection(spec.host, spec.port, timeout=spec.timeout)
            try:
                headers = {"User-Agent": "meshpilot-probe/1.0", **dict(spec.headers)}
                conn.request("GET", spec.path, headers=headers)
                resp = conn.getresponse()
                resp.read()
            finally:
                conn.close()
            if 200 <= resp.status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {resp.status}"
        proc = subprocess.run(
            list(spec.command), env=dict(env) if env is not None else None, cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=spec.timeout, check=False,
        )
        if proc.returncode == 0:
            return True, ""
        out = proc.stdout.decode(errors="replace").strip()[-200:]
        return False, f"exec probe exited with {proc.returncode}: {out}"
    except subprocess.TimeoutExpired:
        return False, f"probe timed out after {spec.timeout:g}s"
    except (OSError, http.client.HTTPException) as exc:
        where = f"{spec.host}:{spec.port}" if spec.kind != "exec" else " ".join(spec.command)
        return False, f"{spec.kind} probe {where} failed: {exc or type(exc).__name__}"


@dataclass
class ReadinessTracker:
    """Probe scheduling and the success/failure thresholds for one container."""

    spec: ProbeSpec
    ready: bool = False
    message: str = "waiting for the readiness probe"
    next_at: float = 0.0
    _successes: int = 0
    _failures: int = 0

    def reset(self, now: float) -> None:
        """A (re)started process: not ready until the probe passes again."""
        self.ready = False
        self.message = "waiting for the readiness probe"
        self._successes = self._failures = 0
        self.next_at = now + self.spec.initial_delay

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, message: str, now: float) -> bool:
        """Count one result; True if ``ready`` changed."""
        self.next_at = now + self.spec.period
        before = self.ready
        if ok:
            self._failures = 0
            self._successes += 1
            if self._successes >= self.spec.success_threshold:
                self.ready = True
                self.message = ""
        else:
            self._successes = 0
            self._failures += 1
            self.message = message
            if self._failures >= self.spec.failure_threshold:
                self.ready = False
        return self.ready != before
