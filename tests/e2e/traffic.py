"""Helpers for the e2e tests that look at where requests land and whether any fail.

``by_pod`` counts responses by the demo app's ``X-Pod`` header; ``LoadLoop`` sends
requests through the mesh proxy on a background thread until stopped (bounded by a
request count and a deadline, so a hung mesh cannot hang the test).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import httpx

from tests.e2e.conftest import Mesh


def pod_of(response: httpx.Response) -> str:
    """The pod that answered (``status:NNN`` when no demo app answered)."""
    return response.headers.get("x-pod") or f"status:{response.status_code}"


def by_pod(mesh: Mesh, url: str, n: int, **kwargs: Any) -> Counter[str]:
    return Counter(pod_of(mesh.http.get(url, **kwargs)) for _ in range(n))


def mesh_client(mesh: Mesh, **kwargs: Any) -> httpx.Client:
    """A new client through the mesh proxy (one per thread or per source address)."""
    transport = kwargs.pop("transport", None)
    if transport is not None:
        return httpx.Client(transport=transport, trust_env=False, timeout=15.0, **kwargs)
    return httpx.Client(proxy=mesh.mesh_proxy, trust_env=False, timeout=15.0, **kwargs)


def pods_of(mesh: Mesh, deployment: str) -> list[dict[str, Any]]:
    return [p for p in mesh.pods() if p["metadata"]["ownerReferences"][0]["name"] == deployment]


def wait_until(predicate: Any, timeout: float, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {message or predicate}")
        time.sleep(0.1)


class LoadLoop:
    """Requests ``url`` back to back on a thread; records every outcome.

    ``failures`` holds (status or exception, detail) for every response that was not a
    200; ``versions`` counts the X-Version of the 200s, in order of arrival.
    """

    def __init__(
        self, mesh: Mesh, url: str, *, max_requests: int = 20000, max_seconds: float = 40.0
    ) -> None:
        self.mesh = mesh
        self.url = url
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.sent = 0
        self.failures: list[tuple[str, str]] = []
        self.versions: list[str] = []
        self.pods: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-loop", daemon=True)

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def ok(self) -> int:
        return len(self.versions)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> None:
        start = self.sent
        wait_until(
            lambda: self.sent >= start + n or self._stop.is_set(), timeout, f"{n} more requests"
        )

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with mesh_client(self.mesh) as client:
            while (
                not self._stop.is_set()
                and self.sent < self.max_requests
                and time.monotonic() < deadline
            ):
                self.sent += 1
                try:
                    r = client.get(self.url)
                except httpx.HTTPError as exc:
                    self.failures.append((type(exc).__name__, str(exc)))
                    continue
                if r.status_code != 200:
                    self.failures.append(
                        (
                            str(r.status_code),
                            r.headers.get("x-envoy-response-flags", "") + " " + r.text[:200],
                        )
                    )
                    continue
                self.versions.append(r.headers.get("x-version", "?"))
                self.pods[pod_of(r)] += 1


def tail_versions(versions: Iterable[str], n: int) -> Counter[str]:
    return Counter(list(versions)[-n:])


def destination_rule(
    host: str = "myapp",
    versions: tuple[str, ...] = ("v1", "v2"),
    traffic_policy: str = "",
    namespace: str = "default",
) -> str:
    """A DestinationRule with subsets by version and an optional top-level trafficPolicy.

    (conftest's ``subsets_rule`` indents ``traffic_policy`` one level too little, which
    puts its fields beside ``trafficPolicy`` instead of under it.)
    """
    import textwrap

    subsets = "\n".join(f"  - {{name: {v}, labels: {{version: {v}}}}}" for v in versions)
    policy = textwrap.indent(textwrap.dedent(traffic_policy), "    ") if traffic_policy else ""
    return (
        f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata: {{name: {host}, namespace: {namespace}}}\nspec:\n  host: {host}\n"
        + (f"  trafficPolicy:\n{policy}" if policy else "")
        + f"  subsets:\n{subsets}\n"
    )
