"""Given / When / Then for the end-to-end tests, after Argo Rollouts' e2e fixture.

Each test takes the three fixtures and reads as its scenario::

    given.applied(myapp.version("v1"), myapp.version("v2"), myapp.service(), myapp.subsets())
    when.apply(myapp.split(v1=0, v2=100))
    then.split_is({"v2": 60})

``Given`` sets the mesh up and waits until it serves; ``When`` changes it (an apply that
converges, a new revision for a rollout, background traffic, waiting for a rollout to
move); ``Then`` checks what real requests and the rollout API say. All three act on the
same real mesh (control plane, Envoys, pods); steps that return nothing return their
facet, so steps chain.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tests.conftest import wait_for
from tests.e2e.mesh import URL, Mesh
from tests.e2e.rollouts import FINISHED, Rollout, target
from tests.e2e.traffic import Traffic

Body = dict[str, Any]
Doc = str | Mapping[str, Any]


class _Facet:
    """One of given / when / then: a view of the test's mesh."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh


class Given(_Facet):
    """The mesh as a test starts from."""

    def applied(self, *docs: Doc) -> Given:
        """``docs`` applied, every Deployment ready and every proxy in sync."""
        self.mesh.apply(*docs)
        self.mesh.converge()
        return self

    def rollout(self, canary: Body, version: str = "v1") -> Given:
        """The target at ``version`` taken over by ``canary``, initialized and serving."""
        self.mesh.apply(target(version), canary)
        Rollout(self.mesh).wait_phase("Initialized", timeout=60)
        self.mesh.converge(timeout=60)
        return self


class When(_Facet):
    """What happens to the mesh."""

    def apply(self, *docs: Doc) -> When:
        """``docs`` applied, and the mesh converged on them."""
        return self.apply_nowait(*docs).converges()

    def apply_nowait(self, *docs: Doc) -> When:
        """``docs`` applied; nothing waits (what they change rolls out from here)."""
        self.mesh.apply(*docs)
        return self

    def converges(self) -> When:
        """Until every Deployment is ready and every proxy has the latest config."""
        self.mesh.converge()
        return self

    def until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Until ``predicate`` holds (polled every 0.1 s); what it returned."""
        return wait_for(predicate, timeout, interval=0.1, message=what)

    def release(self, version: str, args: str = "") -> When:
        """The rollout's target gets a new revision: demo app ``version`` with ``args``.
        Nothing waits: the rollout starts from here."""
        return self.apply_nowait(target(version, args=args))

    def control_plane_killed(self) -> When:
        """The control plane dies by SIGKILL, as in a crash: its pods and proxies stay."""
        self.mesh.cp.kill()
        return self

    def control_plane_started(self) -> When:
        """The control plane starts again on its state directory (until it answers)."""
        self.mesh.cp.start()
        return self

    def traffic(
        self, url: str = URL, *, via: Sequence[str] = (), workers: int = 3,
        rate: float | None = 60.0, max_seconds: float = 90.0, max_requests: int | None = None,
        headers: dict[str, str] | None = None, timeout: float = 10.0,
    ) -> Traffic:
        """Background requests to ``url`` (see ``Traffic``); they run inside a ``with``
        block: ``with when.traffic() as load: ...``."""
        return Traffic(self.mesh, url, via=via, workers=workers, rate=rate,
                       max_seconds=max_seconds, max_requests=max_requests, headers=headers,
                       timeout=timeout)

    def rollout_reaches(self, predicate: Callable[[Body], Any], what: str,
                        timeout: float = 60.0) -> Body:
        """Until the rollout's status satisfies ``predicate``; that status."""
        return Rollout(self.mesh).wait(predicate, timeout=timeout, what=what)

    def rollout_runs_to_the_end(self, timeout: float = 80.0) -> list[Body]:
        """Until the rollout has finished; every status seen on the way, the last one
        finished."""
        seen: list[Body] = []

        def finished(body: Body) -> bool:
            seen.append(body)
            return body["phase"] in FINISHED

        Rollout(self.mesh).wait(finished, timeout=timeout, what="the rollout to finish")
        return seen

    def time_passes(self, seconds: float) -> When:
        """Nothing is done for ``seconds`` (traffic keeps running, routes reach proxies)."""
        time.sleep(seconds)
        return self


class Then(_Facet):
    """What real requests and the API say about the mesh."""

    def split_is(self, expected: Mapping[str, int], url: str = URL, **request: Any) -> Then:
        """Exactly ``expected`` (version → count) answer as many requests as it sums to."""
        counts = self.mesh.versions(url, sum(expected.values()), **request)
        assert counts == expected, counts
        return self

    def split_within(self, n: int, bands: Mapping[str, tuple[int, int] | None],
                     url: str = URL, **request: Any) -> Counter[str]:
        """Of ``n`` requests, exactly the versions in ``bands`` answer, each as many
        times as its (low, high) band says (None: any number); the counts."""
        counts = self.mesh.versions(url, n, **request)
        assert set(counts) == set(bands), counts
        for version, band in bands.items():
            if band is not None:
                low, high = band
                assert low <= counts[version] <= high, counts
        return counts

    def rollout(self) -> Body:
        """The rollout's status now."""
        return Rollout(self.mesh).get()

    def rollout_phase(self, phase: str, timeout: float = 60.0) -> Body:
        """The rollout reaches ``phase`` within ``timeout`` without finishing otherwise;
        its status then."""
        others = tuple(p for p in FINISHED if p != phase)
        return Rollout(self.mesh).wait_phase(phase, timeout=timeout, fail_on=others)

    def rollout_events(self) -> list[str]:
        return Rollout(self.mesh).events()

    def no_request_failed(self, *traffic: Traffic, more_than: int | None = None) -> Then:
        """Every request of ``traffic`` answered 200 (and, when ``more_than`` is given,
        more than that many were sent: the client did run)."""
        for load in traffic:
            if more_than is not None:
                assert load.sent > more_than, f"the client hardly ran: {load.sent} requests"
            failures = load.failures
            assert failures == [], (
                f"{len(failures)} of {load.sent} requests failed: "
                f"{Counter(f.status for f in failures)} {failures[:10]}")
        return self
