"""Each Canary's ticks on its own worker: a webhook that takes its whole timeout for one
Canary delays no other (Flagger runs one goroutine per Canary: CanaryJob in
pkg/controller/job.go, started by scheduleCanaries), a Canary's own ticks never overlap,
and stopping is bounded. The webhook receiver is a real HTTP server on loopback."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Any

from tests.builders import builtin_checks, canary, deployment
from tests.unit.delivery_fakes import FakeMetrics, InMemoryCluster

from meshpilot.delivery import HttpWebhookCaller, RolloutController
from meshpilot.delivery.workers import CanaryWorkers

NS = "default"
KICK_EVERY_S = 0.05
"""How often the test asks for ticks, as the delivery loop's timer does."""


class SlowReceiver:
    """A webhook receiver that holds every request until ``release`` is set (at most
    ``hold_s``), and counts the requests it holds at once."""

    def __init__(self, hold_s: float) -> None:
        self.release = threading.Event()
        self.arrived = threading.Event()
        self.received = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.enter()
                try:
                    receiver.release.wait(hold_s)
                finally:
                    # left before answering: once answered, the caller may send its next
                    # request before this thread would get back to counting
                    receiver.leave()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def enter(self) -> None:
        with self._lock:
            self.received += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        self.arrived.set()

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class Recorded:
    """The controller's tick, recording when each tick of each Canary ran and how many
    ticks of one Canary ever ran at once."""

    def __init__(self, controller: RolloutController) -> None:
        self.controller = controller
        self.ticks: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.most_at_once: dict[str, int] = defaultdict(int)
        self._running: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def __call__(self, namespace: str, name: str) -> None:
        start = time.monotonic()
        with self._lock:
            self._running[name] += 1
            self.most_at_once[name] = max(self.most_at_once[name], self._running[name])
        try:
            self.controller.tick(namespace, name)
        finally:
            with self._lock:
                self._running[name] -= 1
                self.ticks[name].append((start, time.monotonic()))

    def count(self, name: str) -> int:
        with self._lock:
            return len(self.ticks[name])


def two_canaries(hook_url: str) -> InMemoryCluster:
    """``slow`` sends its events to ``hook_url``; ``fast`` has no hooks."""
    cluster = InMemoryCluster()
    for name in ("slow", "fast"):
        cluster.put(deployment(name, labels={"app": name}, replicas=1,
                               containers=[{"name": "app", "image": f"{name}:v1"}]))
    hooks = [{"name": "events", "type": "event", "url": hook_url, "timeout": "5s"}]
    analysis = {"interval": "1s", "threshold": 1, "maxWeight": 50, "stepWeight": 10,
                "metrics": builtin_checks("1m")}
    cluster.put(canary("slow", port=80, analysis={**analysis, "webhooks": hooks}))
    cluster.put(canary("fast", port=80, analysis=analysis))
    return cluster


def kick_until(workers: CanaryWorkers, done: Callable[[], bool], limit_s: float) -> bool:
    """Ask both Canaries for a tick every KICK_EVERY_S until ``done`` or ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if done():
            return True
        workers.kick(NS, "slow")
        workers.kick(NS, "fast")
        time.sleep(KICK_EVERY_S)
    return done()


def test_a_slow_webhook_holds_up_only_its_own_canary() -> None:
    receiver = SlowReceiver(hold_s=5.0)
    cluster = two_canaries(receiver.url)
    recorded = Recorded(RolloutController(time.time, cluster, cluster, FakeMetrics(),
                                          HttpWebhookCaller(retry_delay_s=0)))
    workers = CanaryWorkers(recorded)
    try:
        assert kick_until(workers, receiver.arrived.is_set, limit_s=5.0)
        held_since = time.monotonic()
        kick_until(workers, lambda: time.monotonic() - held_since >= 1.0, limit_s=2.0)
        # While slow's first tick waits on its webhook, fast keeps its cadence...
        during = [start for start, _ in recorded.ticks["fast"] if start >= held_since]
        assert len(during) >= 5, during
        assert max(b - a for a, b in pairwise(during)) < 0.8
        assert cluster.status("fast")["phase"] == "Initialized"
        # ... and slow has not started a second tick beside the one held
        assert recorded.count("slow") == 0 and receiver.received == 1
        receiver.release.set()
        assert kick_until(workers, lambda: recorded.count("slow") >= 3, limit_s=5.0)
    finally:
        stopped = workers.stop(timeout=5.0)
        receiver.close()
    assert stopped
    assert cluster.status("slow")["phase"] == "Initialized"
    assert recorded.most_at_once == {"slow": 1, "fast": 1}
    assert receiver.max_in_flight == 1
    slow = recorded.ticks["slow"]
    assert all(later[0] >= earlier[1] for earlier, later in pairwise(slow))


def test_stop_is_bounded_and_starts_nothing_after() -> None:
    receiver = SlowReceiver(hold_s=3.0)
    cluster = two_canaries(receiver.url)
    recorded = Recorded(RolloutController(time.time, cluster, cluster, FakeMetrics(),
                                          HttpWebhookCaller(retry_delay_s=0)))
    workers = CanaryWorkers(recorded)
    try:
        assert kick_until(workers, receiver.arrived.is_set, limit_s=5.0)
        began = time.monotonic()
        assert workers.stop(timeout=0.3) is False  # slow's tick is still in its webhook
        assert time.monotonic() - began < 2.0
        done = recorded.count("fast")
        receiver.release.set()
        kick_until(workers, lambda: False, limit_s=0.5)  # kicks after stop are ignored
        assert recorded.count("fast") == done
        assert workers.keys() == []
    finally:
        receiver.close()


def test_queued_work_runs_before_a_worker_is_retired() -> None:
    """A deleted Canary's clean-up is queued on its worker: the worker ends only when it
    has nothing left to do, and a new worker takes the name afterwards."""
    gate = threading.Event()
    ran: list[str] = []
    workers = CanaryWorkers(lambda ns, name: ran.append(f"tick {name}"))
    try:
        workers.submit(NS, "gone", lambda: gate.wait(5.0))
        workers.submit(NS, "gone", lambda: ran.append("clean-up"))
        workers.retire_others([])
        assert workers.keys() == [(NS, "gone")]  # still busy
        gate.set()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and workers.keys():
            workers.retire_others([])
            time.sleep(0.02)
        assert workers.keys() == [] and ran == ["clean-up"]
        workers.kick(NS, "gone")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and "tick gone" not in ran:
            time.sleep(0.02)
        assert ran == ["clean-up", "tick gone"]
    finally:
        assert workers.stop(timeout=5.0)
