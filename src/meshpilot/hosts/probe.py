"""The WorkloadGroup's readiness probe, run by the agent on its host (as the kubelet runs
a pod's): ``httpGet`` (2xx/3xx ready; HTTPS not verified, as Kubernetes does),
``tcpSocket`` (a connection opens), ``exec`` (exit status 0), each bounded by
``timeoutSeconds``; ``successThreshold`` and ``failureThreshold`` consecutive results
flip the state. No probe: ready while the sidecar runs (Istio's default for a group
without one)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx


def _http(check: Mapping[str, Any], host: str, timeout: float) -> bool:
    scheme = str(check.get("scheme") or "HTTP").lower()
    target = str(check.get("host") or host)
    target = f"[{target}]" if ":" in target else target
    url = f"{scheme}://{target}:{int(check['port'])}{check.get('path') or '/'}"
    headers = {str(h["name"]): str(h.get("value", "")) for h in check.get("httpHeaders") or []}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout, verify=False,
                             follow_redirects=False, trust_env=False)
    except httpx.HTTPError:
        return False
    return 200 <= response.status_code < 400


def _tcp(check: Mapping[str, Any], host: str, timeout: float) -> bool:
    try:
        with socket.create_connection((str(check.get("host") or host), int(check["port"])),
                                      timeout=timeout):
            return True
    except OSError:
        return False


def _exec(check: Mapping[str, Any], timeout: float) -> bool:
    try:
        done = subprocess.run([str(c) for c in check["command"]], timeout=timeout,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def run_check(probe: Mapping[str, Any], host: str) -> bool:
    """One run of ``probe`` (the group's ``probe``, wire names) against ``host``."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    if probe.get("httpGet"):
        return _http(probe["httpGet"], host, timeout)
    if probe.get("tcpSocket"):
        return _tcp(probe["tcpSocket"], host, timeout)
    if probe.get("exec"):
        return _exec(probe["exec"], timeout)
    return False  # grpc is refused at apply; anything else is not a check


@dataclass
class Readiness:
    """The probe's state across runs, with Kubernetes' thresholds."""

    probe: Mapping[str, Any] | None
    host: str
    ready: bool = False
    _streak: int = field(default=0, repr=False)

    @property
    def period(self) -> float:
        return float((self.probe or {}).get("periodSeconds") or 10)

    @property
    def initial_delay(self) -> float:
        return float((self.probe or {}).get("initialDelaySeconds") or 0)

    def step(self) -> bool:
        """Run the probe once; returns the (possibly new) state."""
        if self.probe is None:
            self.ready = True
            return True
        ok = run_check(self.probe, self.host)
        if ok == self.ready:
            self._streak = 0
            return self.ready
        self._streak += 1
        needed = int(self.probe.get("successThreshold" if ok else "failureThreshold")
                     or (1 if ok else 3))
        if self._streak >= needed:
            self.ready, self._streak = ok, 0
        return self.ready
