"""Requests through the mesh while it changes: background load that records every outcome,
and bursts of concurrent requests.

``Traffic`` sends requests to one URL through one or more proxies from background threads
until stopped (bounded by a deadline, and optionally a request count, so a hung mesh
cannot hang a test), paced to a request rate or back to back. Every answer is kept as an
``Outcome``, so a test can ask afterwards which versions answered, when, through which
proxy, and whether any request failed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from tests.conftest import wait_for
from tests.e2e.mesh import URL, Mesh, pod_of


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent (wall clock), through which proxy, and its answer:
    the status (or the transport error's name), the version and pod that answered a 200,
    and for a failure what Envoy said (response flags, body) or the error's text."""

    at: float
    via: str
    status: str
    version: str = ""
    pod: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "200"


class Traffic:
    """Requests to ``url`` from ``workers`` threads per proxy in ``via`` (the mesh proxy by
    default), about ``rate`` requests a second in all (back to back when None), for at most
    ``max_seconds`` and ``max_requests``. Use as a context manager: it runs inside."""

    def __init__(
        self, mesh: Mesh, url: str = URL, *, via: Sequence[str] = (), workers: int = 3,
        rate: float | None = 60.0, max_seconds: float = 90.0, max_requests: int | None = None,
        headers: dict[str, str] | None = None, timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.headers = headers or {}
        self.timeout = timeout
        proxies = list(via) or [mesh.mesh_proxy]
        threads = workers * len(proxies)
        self._pause = threads / rate if rate else 0.0
        self._max_seconds = max_seconds
        self._max_requests = max_requests
        self._outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(proxy,), daemon=True,
                             name=f"traffic-{i}-{proxy}")
            for proxy in proxies for i in range(workers)
        ]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    # --- what happened -------------------------------------------------------------------
    @property
    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    @property
    def sent(self) -> int:
        with self._lock:
            return len(self._outcomes)

    @property
    def failures(self) -> list[Outcome]:
        """Every request not answered with a 200."""
        return [o for o in self.outcomes if not o.ok]

    @property
    def answered(self) -> list[Outcome]:
        """Every request answered with a 200, in the order the answers came."""
        return [o for o in self.outcomes if o.ok]

    @property
    def versions(self) -> Counter[str]:
        """The 200s by the version that answered."""
        return Counter(o.version for o in self.answered)

    @property
    def pods(self) -> Counter[str]:
        """The 200s by the pod that answered."""
        return Counter(o.pod for o in self.answered)

    def last_versions(self, n: int) -> Counter[str]:
        """The versions of the last ``n`` 200s."""
        return Counter(o.version for o in self.answered[-n:])

    def versions_between(self, start: float, end: float = float("inf")) -> list[str]:
        """Versions of the 200s sent strictly between ``start`` and ``end`` (wall clock)."""
        return [o.version for o in self.answered if start < o.at < end]

    def since(self, start: float) -> Counter[str]:
        """The 200s sent at or after ``start`` (wall clock), by version."""
        return Counter(o.version for o in self.answered if o.at >= start)

    def answered_via(self, start: float, end: float) -> Counter[str]:
        """The 200s sent from ``start`` to ``end`` (wall clock), by proxy."""
        return Counter(o.via for o in self.answered if start <= o.at <= end)

    def wait_for_requests(self, n: int, timeout: float = 30.0) -> None:
        """Until ``n`` more requests were answered (or the traffic stopped)."""
        start = self.sent
        wait_for(lambda: self.sent >= start + n or self._stop.is_set(), timeout,
                 interval=0.1, message=f"{n} more requests")

    # --- the workers ---------------------------------------------------------------------
    def _run(self, proxy: str) -> None:
        deadline = time.monotonic() + self._max_seconds
        with httpx.Client(proxy=proxy, trust_env=False, timeout=self.timeout) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self._max_requests is not None and self.sent >= self._max_requests:
                    return
                started = time.monotonic()
                outcome = self._request(client, proxy)
                with self._lock:
                    self._outcomes.append(outcome)
                self._stop.wait(max(0.0, self._pause - (time.monotonic() - started)))

    def _request(self, client: httpx.Client, proxy: str) -> Outcome:
        now = time.time()
        try:
            r = client.get(self.url, headers=self.headers)
        except httpx.HTTPError as exc:
            return Outcome(now, proxy, type(exc).__name__, detail=str(exc))
        if r.status_code != 200:
            flags = r.headers.get("x-envoy-response-flags", "")
            return Outcome(now, proxy, str(r.status_code), detail=f"{flags} {r.text[:200]}")
        return Outcome(now, proxy, "200", version=r.headers.get("x-version", "?"),
                       pod=pod_of(r))


def concurrent_get(mesh: Mesh, url: str, n: int) -> list[httpx.Response]:
    """``n`` requests through the mesh proxy released together (one client per thread)."""
    barrier = threading.Barrier(n)

    def one(_: int) -> httpx.Response:
        with mesh.client() as client:
            barrier.wait(timeout=10)
            return client.get(url)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))
