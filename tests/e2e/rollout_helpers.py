"""Helpers for the progressive-delivery end-to-end tests (Given / When / Then).

``target`` is the Deployment a Canary takes over (the demo app, selector ``app: myapp``
only, so the revision lives in the template); ``canary`` a Flagger Canary with short
intervals; ``Rollouts`` reads and drives them over the API and waits for phases; and
``Steady`` is a bounded background load through the mesh proxy that records every
failed request and every version that answered.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections import Counter
from typing import Any

import httpx

from tests.e2e.conftest import PYTHON, Mesh

NS = "default"
API = "/apis/meshpilot.io/v1"


def target(version: str = "v1", *, name: str = "myapp", replicas: int = 2,
           args: str = "", namespace: str = NS) -> str:
    """The Deployment under rollout: demo app ``version``; ``args`` e.g. --error-rate 0.3."""
    extra = "".join(f", {json.dumps(a)}" for a in args.split())
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}, version: {version}}}}}
            spec:
              containers:
              - name: app
                command: [{PYTHON}, -m, meshpilot.demoapp]
                args: [--version, {version}{extra}]
                ports: [{{name: http, containerPort: 8080}}]
                readinessProbe:
                  httpGet: {{path: /healthz, port: http}}
                  periodSeconds: 1
        """)


def canary(*, name: str = "myapp", interval: str = "1s", threshold: int = 2,
           max_weight: int = 30, step_weight: int = 10, window: str = "4s",
           min_requests: int = 10, analysis: str = "", metrics: str | None = None,
           namespace: str = NS, deadline: int = 60, strategy: str = "") -> str:
    """A Canary for ``name`` with both built-in metrics over ``window``.

    ``strategy`` replaces the weight fields (e.g. ``iterations: 3``); ``analysis`` adds
    lines to ``spec.analysis`` (indented by 4).
    """
    if metrics is None:
        metrics = textwrap.dedent(f"""\
            - name: request-success-rate
              thresholdRange: {{min: 99}}
              interval: {window}
            - name: request-duration
              thresholdRange: {{max: 500}}
              interval: {window}
            """)
    weights = strategy or f"maxWeight: {max_weight}\nstepWeight: {step_weight}"
    body = textwrap.dedent(f"""\
        apiVersion: flagger.app/v1beta1
        kind: Canary
        metadata:
          name: {name}
          namespace: {namespace}
          annotations: {{meshpilot.io/min-requests: "{min_requests}"}}
        spec:
          targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
          progressDeadlineSeconds: {deadline}
          service: {{port: 8080, targetPort: http}}
          analysis:
            interval: {interval}
            threshold: {threshold}
        """)
    body += textwrap.indent(weights.strip() + "\n", "    ")
    body += "    metrics:\n" + textwrap.indent(metrics, "    ")
    if analysis:
        body += textwrap.indent(textwrap.dedent(analysis).strip() + "\n", "    ")
    return body


class Rollouts:
    """The rollout API of one mesh."""

    def __init__(self, mesh: Mesh, name: str = "myapp", namespace: str = NS) -> None:
        self.mesh = mesh
        self.name = name
        self.namespace = namespace

    @property
    def path(self) -> str:
        return f"{API}/namespaces/{self.namespace}/rollouts/{self.name}"

    def get(self) -> dict[str, Any]:
        r = self.mesh.api.get(self.path)
        assert r.status_code == 200, r.text
        return r.json()

    def command(self, command: str, expect: int = 200) -> dict[str, Any]:
        r = self.mesh.api.post(f"{self.path}/{command}")
        assert r.status_code == expect, r.text
        return r.json()

    def wait_phase(self, *phases: str, timeout: float = 60.0,
                   fail_on: tuple[str, ...] = ()) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.get()
            if body["phase"] in phases:
                return body
            if body["phase"] in fail_on:
                break
            time.sleep(0.2)
        raise AssertionError(
            f"rollout {self.name} not in {phases} within {timeout}s: phase "
            f"{body.get('phase')}\nevents: "
            + "\n  ".join(f"{e['time']} {e['message']}" for e in body.get("events", []))
            + f"\nchecks: {body.get('checks')}\n--- server log tail:\n"
            + self.mesh.cp.log()[-3000:])

    def wait(self, predicate: Any, timeout: float = 60.0, what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.get()
            if predicate(body):
                return body
            time.sleep(0.1)
        raise AssertionError(f"not within {timeout}s: {what}; last: phase {body.get('phase')} "
                             f"weight {body.get('canaryWeight')} events "
                             f"{[e['message'] for e in body.get('events', [])][-8:]}")

    def events(self) -> list[str]:
        return [e["message"] for e in self.get()["events"]]


class Steady:
    """Steady load on ``url`` through the mesh proxy from ``workers`` threads, paced to
    about ``rate`` requests per second in all, bounded by ``max_seconds``.

    ``failures`` lists every non-200 or transport error with when it happened;
    ``versions`` counts X-Version of the 200s; ``timeline`` keeps (time, version).
    """

    def __init__(self, mesh: Mesh, url: str = "http://myapp:8080/", *, rate: float = 60.0,
                 workers: int = 3, max_seconds: float = 90.0,
                 headers: dict[str, str] | None = None) -> None:
        self.mesh = mesh
        self.url = url
        self.rate = rate
        self.workers = workers
        self.max_seconds = max_seconds
        self.headers = headers or {}
        self.failures: list[tuple[float, str, str]] = []
        self.versions: Counter[str] = Counter()
        self.timeline: list[tuple[float, str]] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"steady-{i}")
                         for i in range(workers)]

    def __enter__(self) -> Steady:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def since(self, t0: float) -> Counter[str]:
        with self._lock:
            return Counter(v for t, v in self.timeline if t >= t0)

    def failures_since(self, t0: float) -> list[tuple[float, str, str]]:
        with self._lock:
            return [f for f in self.failures if f[0] >= t0]

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        pause = self.workers / self.rate
        with httpx.Client(proxy=self.mesh.mesh_proxy, trust_env=False, timeout=10.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                now = time.time()
                try:
                    r = client.get(self.url, headers=self.headers)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.sent += 1
                        self.failures.append((now, type(exc).__name__, str(exc)))
                else:
                    with self._lock:
                        self.sent += 1
                        if r.status_code == 200:
                            version = r.headers.get("x-version", "?")
                            self.versions[version] += 1
                            self.timeline.append((now, version))
                        else:
                            flags = r.headers.get("x-envoy-response-flags", "")
                            self.failures.append((now, str(r.status_code),
                                                  f"{flags} {r.text[:120]}"))
                self._stop.wait(max(0.0, pause - (time.monotonic() - started)))


def versions(mesh: Mesh, n: int = 40, url: str = "http://myapp:8080/",
             **kwargs: Any) -> Counter[str]:
    out: Counter[str] = Counter()
    for _ in range(n):
        r = mesh.http.get(url, **kwargs)
        out[r.headers.get("x-version", f"status:{r.status_code}")] += 1
    return out


def pods_of(mesh: Mesh, deployment: str) -> list[dict[str, Any]]:
    return [p for p in mesh.pods()
            if p["metadata"]["ownerReferences"][0]["name"] == deployment
            and p["status"]["phase"] != "Terminating"]


def given_initialized(mesh: Mesh, canary_yaml: str, version: str = "v1") -> Rollouts:
    """Given the target at ``version`` taken over by a Canary, initialized and serving."""
    mesh.apply(target(version), canary_yaml)
    rollouts = Rollouts(mesh)
    rollouts.wait_phase("Initialized", timeout=60)
    mesh.converge(timeout=60)
    return rollouts
