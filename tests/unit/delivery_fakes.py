"""In-memory stand-ins for the controller's interfaces, for stepping it in tests.

They fake only our own ports (not Envoy, not Prometheus), so a test can drive a whole
rollout tick by tick with a fake clock, as Flagger's scheduler tests do, and the same
fakes serve the control plane's own tests. The "runtime" here makes every Deployment's
pods ready at once unless a test holds a template back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpilot.api.credentials import Secret
from meshpilot.api.flagger import Canary, CanaryWebhook, MetricTemplate
from meshpilot.api.flagger_alerts import AlertProvider
from meshpilot.delivery.notifiers import AlertPostError
from meshpilot.delivery.ports import WorkloadStatus, WriteError
from meshpilot.delivery.providers import Sample
from meshpilot.delivery.state import spec_hash
from meshpilot.delivery.webhooks import WebhookResult


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InMemoryCluster:
    """A ClusterReader and ObjectWriter over a dict, with an instant runtime."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.unready_templates: set[str] = set()
        """Template hashes whose pods never become ready (a crashing revision)."""
        self.writes: list[list[dict[str, Any]]] = []
        self.fail_writes = False
        self.combined: list[tuple[int, dict[str, Any]]] = []
        """(index into ``writes``, status) of each write committed with a status."""
        self._rv = 0

    # --- writer -------------------------------------------------------------------

    def apply(self, objects: Sequence[dict[str, Any]]) -> None:
        if self.fail_writes:
            raise WriteError("store unavailable")
        for obj in objects:
            key = (obj["kind"], obj["metadata"].get("namespace", "default"),
                   obj["metadata"]["name"])
            current = self.objects.get(key)
            expected = obj["metadata"].get("resourceVersion")
            if expected is not None and current is not None and str(
                current["metadata"].get("resourceVersion")
            ) != str(expected):
                raise WriteError(f"conflict on {key}")
        self.writes.append(copy.deepcopy(list(objects)))
        for obj in objects:
            self.put(obj)

    def put(self, obj: dict[str, Any]) -> None:
        """Store ``obj`` as a user apply would (keeps the status of a Canary)."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        key = (obj["kind"], meta["namespace"], meta["name"])
        current = self.objects.get(key)
        if current is not None and "status" in current:
            obj["status"] = current["status"]
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self.objects[key] = obj

    def delete(self, namespace: str, refs: Sequence[tuple[str, str]]) -> None:
        for kind, name in refs:
            self.objects.pop((kind, namespace, name), None)

    def put_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.objects[("Canary", namespace, name)]["status"] = copy.deepcopy(status)

    def apply_with_status(self, objects: Sequence[dict[str, Any]], namespace: str, name: str,
                          status: dict[str, Any]) -> None:
        """Both or neither, as one store commit; recorded in ``combined``."""
        self.apply(objects)
        self.put_status(namespace, name, status)
        self.combined.append((len(self.writes) - 1, copy.deepcopy(status)))

    # --- reader -------------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def canary(self, namespace: str, name: str) -> Canary | None:
        body = self.get("Canary", name, namespace)
        return Canary.model_validate(body) if body else None

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.get("Deployment", name, namespace)
        return copy.deepcopy(body) if body else None

    def workload(self, namespace: str, name: str) -> WorkloadStatus:
        body = self.get("Deployment", name, namespace)
        if body is None:
            return WorkloadStatus()
        template_hash = spec_hash(body["spec"].get("template"))
        desired = int(body["spec"].get("replicas", 1))
        ready = 0 if template_hash in self.unready_templates else desired
        return WorkloadStatus(True, template_hash, desired, ready)

    def metric_template(self, namespace: str, name: str) -> MetricTemplate | None:
        body = self.get("MetricTemplate", name, namespace)
        return MetricTemplate.model_validate(body) if body else None

    def config(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        return self.get(kind, name, namespace)

    def alert_provider(self, namespace: str, name: str) -> AlertProvider | None:
        body = self.get("AlertProvider", name, namespace)
        return AlertProvider.model_validate(body) if body else None

    def autoscaler(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.get("HorizontalPodAutoscaler", name, namespace)
        return copy.deepcopy(body) if body else None

    def secret_data(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        body = self.get("Secret", name, namespace)
        return Secret.model_validate(body).decoded() if body else None

    # --- views for assertions -----------------------------------------------------

    def status(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return (self.get("Canary", name, namespace) or {}).get("status") or {}

    def weights(self, vs_name: str, namespace: str = "default") -> list[dict[str, int]]:
        """Per http rule of the VirtualService: {destination host: weight}."""
        vs = self.get("VirtualService", vs_name, namespace)
        if vs is None:
            return []
        return [
            {r["destination"]["host"]: r.get("weight", 0) for r in rule["route"]}
            for rule in vs["spec"]["http"]
        ]


@dataclass
class FakeMetrics:
    """Per-workload samples; unknown workloads answer healthy with plenty of requests."""

    success: dict[str, Sample] = field(default_factory=dict)
    latency: dict[str, Sample] = field(default_factory=dict)
    calls: list[tuple[str, str, float]] = field(default_factory=list)

    def success_rate(self, namespace: str, workload: str, window_s: float) -> Sample:
        self.calls.append(("success_rate", workload, window_s))
        return self.success.get(workload, Sample(100.0, 500))

    def latency_quantile(self, namespace: str, workload: str, window_s: float,
                         q: float) -> Sample:
        self.calls.append(("latency", workload, window_s))
        return self.latency.get(workload, Sample(50.0, 500))


@dataclass
class FakeWebhooks:
    """Answers by URL: a status code (200 when not set); records every call."""

    statuses: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def call(self, hook: CanaryWebhook, payload: dict[str, Any]) -> WebhookResult:
        self.calls.append((hook.type, hook.url, copy.deepcopy(payload)))
        status = self.statuses.get(hook.url, 200)
        if status == 0:
            return WebhookResult(False, None, f"{hook.url} timed out")
        return WebhookResult(200 <= status <= 202, status, f"{hook.url} answered {status}")

    def called(self, kind: str) -> list[dict[str, Any]]:
        return [p for t, _, p in self.calls if t == kind]


@dataclass(frozen=True)
class Post:
    """One alert message as it would have gone over the wire."""

    url: str
    body: dict[str, Any]
    token: str | None
    proxy: str | None
    seen: Any = None
    """What ``FakeAlertPoster.observe`` returned at the moment of posting."""

    @property
    def text(self) -> str:
        """The message, for the Slack-shaped providers (slack, discord, rocket)."""
        return str(self.body["attachments"][0]["text"])


@dataclass
class FakeAlertPoster:
    """Records every alert post; ``failing`` receivers answer as a 500 would."""

    posts: list[Post] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    observe: Callable[[], Any] | None = None

    def post(self, url: str, body: dict[str, Any], *, token: str | None = None,
             proxy: str | None = None) -> None:
        seen = self.observe() if self.observe else None
        self.posts.append(Post(url, copy.deepcopy(body), token, proxy, seen))
        if url in self.failing:
            raise AlertPostError(f"answered 500: token {token} refused")

    def texts(self, url: str) -> list[str]:
        return [p.text for p in self.posts if p.url == url]
