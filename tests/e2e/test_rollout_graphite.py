"""A Canary judged by a graphite MetricTemplate, end to end: the control plane reads the
template and its ``secretRef`` Secret from its own store, asks a real Graphite
(carbon-cache and graphite-web, behind basic auth) every interval, and promotes or rolls
back on the answer while the mesh carries live traffic.

The template follows Flagger's graphite docs (``usage/metrics.md``, "Graphite" and
"Graphite authentication"): an ``asPercent`` of two ``sumSeries`` over
``{{ target }}``'s counters, written over several lines, with a Secret of ``username``
and ``password``. The application's own counters are what Graphite would hold; the test
writes them, as the application's statsd client would. A Flux template (Flagger's
InfluxDB 2 example) is refused over the same API, and nothing of it is stored.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.e2e.mesh import API, Mesh
from tests.e2e.rollouts import FINISHED, canary
from tests.e2e.scenario import Given, Then, When
from tests.metric_backends import GRAPHITE_PASSWORD, GRAPHITE_USER, Graphite, now

CHECK = [{"name": "error-rate", "templateRef": {"name": "graphite-errors"},
          "thresholdRange": {"max": 1}, "interval": "10s"}]
COUNTERS = "stats.myapp.{{ target }}"


def template_and_secret(address: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: graphite-basic-auth, namespace: default}}
        stringData: {{username: {GRAPHITE_USER}, password: "{GRAPHITE_PASSWORD}"}}
        ---
        apiVersion: flagger.app/v1beta1
        kind: MetricTemplate
        metadata: {{name: graphite-errors, namespace: default}}
        spec:
          provider:
            type: graphite
            address: {address}
            secretRef: {{name: graphite-basic-auth}}
          query: |
            target=asPercent(
              sumSeries({COUNTERS}.errors),
              sumSeries({COUNTERS}.requests)
            )&from=-5min
        """)


FLUX = textwrap.dedent("""\
    apiVersion: flagger.app/v1beta1
    kind: MetricTemplate
    metadata: {name: not-found, namespace: default}
    spec:
      provider: {type: influxdb, address: "http://127.0.0.1:8086"}
      query: |
        from(bucket: "default")
        |> range(start: -2h)
        |> count()
    """)


def counters(graphite: Graphite, errors: int, requests: int) -> None:
    t = now()
    graphite.feed([("stats.myapp.myapp.errors", errors, t),
                   ("stats.myapp.myapp.requests", requests, t)])


def test_graphite_metric_template_promotes_and_rolls_back(
    mesh: Mesh, given: Given, when: When, then: Then, tmp_path: Path
) -> None:
    r = mesh.api.post(f"{API}/apply", json={"sources": [{"file": "flux.yaml", "text": FLUX}]})
    assert r.status_code == 422, r.text
    assert [d["code"] for d in r.json()["diagnostics"]] == ["MP0074"]
    stored = mesh.api.get("/apis/flagger.app/v1beta1/namespaces/default/metrictemplates/"
                          "not-found")
    assert stored.status_code == 404, stored.text
    with Graphite(tmp_path / "graphite") as graphite:
        given.applied(template_and_secret(graphite.auth_url))
        assert mesh.api.get("/apis/flagger.app/v1beta1/namespaces/default/metrictemplates/"
                            "graphite-errors").status_code == 200
        given.rollout(canary(interval="2s", max_weight=20, metrics=CHECK))
        with when.traffic(rate=40, max_seconds=120):
            counters(graphite, errors=1, requests=400)  # 0.25 %
            when.release("v2")
            good = then.rollout_phase("Succeeded")
            assert [(c["name"], c["verdict"], c["value"]) for c in good["checks"]] == [
                ("error-rate", "pass", 0.25)]
            counters(graphite, errors=20, requests=400)  # 5 %
            when.release("v3")
            bad = when.rollout_reaches(
                lambda b: b["phase"] in FINISHED and b["revision"] != good["revision"],
                "the v3 rollout to finish", timeout=60)
        assert bad["phase"] == "Failed"
        assert "error-rate" in bad["history"][-1]["reason"], bad["history"][-1]
        failed = [(c["name"], c["value"]) for c in bad["checks"] if c["verdict"] == "fail"]
        assert failed == [("error-rate", 5.0)]
