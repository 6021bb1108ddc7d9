"""The CLI's only way to the control plane: its HTTP API, found through the state dir."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import KindInfo, by_kind
from meshpilot.statedir import StateDir


class NotRunning(RuntimeError):
    """No control plane answers for this state directory."""


class Refused(RuntimeError):
    """A streamed request was answered with an error status (``response`` says why)."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


@dataclass
class Response:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _pid(endpoints: dict[str, Any]) -> int:
    """The pid endpoints.json names; 0 when it names none readable."""
    try:
        return int(endpoints.get("pid", 0))
    except (TypeError, ValueError):
        return 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped: common in containers whose PID 1 reaps late or
    # never) still answers kill(0); without this, `down` waited for it until its timeout.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _verification(state: StateDir, api: str) -> ssl.SSLContext | bool:
    """How the API's certificate is checked when it is served over HTTPS (``up --tls``):
    against the mesh CA's roots in the state directory, and for the address connected to;
    never against the system's CAs, which did not issue it."""
    if not api.startswith("https://"):
        return True  # plain HTTP on loopback: nothing to verify
    try:
        return ssl.create_default_context(cafile=state.api_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise NotRunning(f"the API at {api} is served over TLS, but the roots to verify it "
                         f"against ({state.api_ca_file}) cannot be read: {exc}") from None


class ControlPlaneClient:
    def __init__(self, state: StateDir, timeout: float = 30.0) -> None:
        endpoints = state.read_endpoints()
        token = state.read_token()
        if endpoints is None or token is None or not pid_alive(_pid(endpoints)):
            holder = state.lock_holder()
            if holder is not None:
                raise NotRunning(
                    f"a control plane{f' (pid {holder})' if holder else ''} holds "
                    f"{state.root}, but its endpoints.json is missing or unreadable, so "
                    f"it cannot be reached; stop it with `meshpilot down --state-dir "
                    f"{state.root}`, then start it again with `meshpilot up`")
            raise NotRunning(
                f"no control plane is running for {state.root}; start one with "
                f"`meshpilot up --state-dir {state.root}`"
            )
        self.state = state
        self.endpoints = endpoints
        self._http = httpx.Client(
            base_url=endpoints["api"],
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            trust_env=False,
            verify=_verification(state, str(endpoints["api"])),
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise NotRunning(f"the control plane at {self.endpoints['api']} does not answer: "
                             f"{exc}") from None
        try:
            body = r.json()
        except ValueError:
            body = r.text
        return Response(r.status_code, body)

    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[str]:
        """The response body as text, chunk by chunk as it arrives (no read timeout: a
        followed log may be quiet for long); :class:`Refused` for an error status."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream(method, path, timeout=timeout, **kwargs) as r:
                if r.status_code >= 300:
                    r.read()
                    try:
                        body = r.json()
                    except ValueError:
                        body = r.text
                    raise Refused(Response(r.status_code, body))
                yield from r.iter_text()
        except httpx.TransportError as exc:
            raise NotRunning(f"the control plane at {self.endpoints['api']} does not answer: "
                             f"{exc}") from None

    def version(self) -> Response:
        return self.request("GET", "/version")

    def apply(self, sources: list[tuple[str, str]], dry_run: bool = False) -> Response:
        payload = {"sources": [{"file": f, "text": t} for f, t in sources], "dryRun": dry_run}
        return self.request("POST", "/apis/meshpilot.io/v1/apply", json=payload)

    def delete_sources(self, sources: list[tuple[str, str]], ignore_missing: bool) -> Response:
        payload = {"sources": [{"file": f, "text": t} for f, t in sources],
                   "ignoreNotFound": ignore_missing}
        return self.request("POST", "/apis/meshpilot.io/v1/delete", json=payload)

    def delete_keys(self, keys: list[ObjectKey], ignore_missing: bool) -> Response:
        payload = {"keys": [k._asdict() for k in keys], "ignoreNotFound": ignore_missing}
        return self.request("POST", "/apis/meshpilot.io/v1/delete", json=payload)

    def get(self, info: KindInfo, namespace: str, name: str) -> Response:
        return self.request("GET", info.object_path(namespace, name))

    def list(self, info: KindInfo, namespace: str | None) -> Response:
        return self.request("GET", info.collection_path(namespace))

    def diagnostics(self, key: ObjectKey) -> Response:
        params = {"group": key.group, "kind": key.kind, "namespace": key.namespace,
                  "name": key.name}
        return self.request("GET", "/apis/meshpilot.io/v1/diagnostics", params=params)

    def close(self) -> None:
        self._http.close()


def kind_label(result: dict[str, Any]) -> str:
    """``virtualservice.networking.istio.io/reviews``, as kubectl prints it."""
    info = by_kind(result["kind"])
    kind = info.kind.lower()
    return f"{kind}.{info.group}/{result['name']}" if info.group else f"{kind}/{result['name']}"
