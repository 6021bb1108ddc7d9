"""EnvoyFilter end to end against real Envoy, after Istio's task "Enabling Rate Limits
using Envoy" (its local rate limit part) and the EnvoyFilter reference:

- the task's first filter (an HTTP_FILTER inserted before the router of the inbound
  connection manager, its config as a TypedStruct): the workload answers 429 with the
  configured ``x-local-rate-limit`` header beyond N requests per interval;
- the task's second form (the filter without a bucket, the bucket given per route by an
  HTTP_ROUTE MERGE of ``typed_per_filter_config`` on the inbound virtual host
  ``inbound|http|<port>``), and a CLUSTER MERGE (connect timeout, circuit breaker) that
  the client proxy's own config_dump shows;
- a patch Envoy refuses is refused at apply with Envoy's reason, and nothing changes.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx

from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given, When

LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
HCM = "envoy.filters.network.http_connection_manager"
TOKENS = 4
BUCKET = {"max_tokens": TOKENS, "tokens_per_fill": TOKENS, "fill_interval": "60s"}
ENFORCED = {
    "filter_enabled": {"runtime_key": "local_rate_limit_enabled",
                       "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
    "filter_enforced": {"runtime_key": "local_rate_limit_enforced",
                        "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
    "response_headers_to_add": [{"append": False, "header": {
        "key": "x-local-rate-limit", "value": "true"}}],
}
INSERT_RATE_LIMIT = {
    "applyTo": "HTTP_FILTER",
    "match": {"context": "SIDECAR_INBOUND",
              "listener": {"filterChain": {"filter": {"name": HCM}}}},
    "patch": {"operation": "INSERT_BEFORE", "value": {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {"@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                         "type_url": LRL,
                         "value": {"stat_prefix": "http_local_rate_limiter",
                                   "token_bucket": BUCKET, **ENFORCED}}}},
}


def envoy_filter(name: str, *patches: dict[str, Any], namespace: str = "istio-system",
                 selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"configPatches": list(patches)}
    if selector:
        spec["workloadSelector"] = {"labels": selector}
    return {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def statuses(mesh: Mesh, n: int) -> list[httpx.Response]:
    return [mesh.http.get(URL) for _ in range(n)]


def limited_after(mesh: Mesh, n: int) -> list[httpx.Response]:
    """``n`` requests; the limited ones, after checking that ``TOKENS`` passed and every
    later one was limited (the bucket refills only after a minute). One more may pass
    first: a request on a connection the client's proxy opened to the sidecar before the
    filter came goes through the listener's old filter chain, which Envoy lets finish
    that request (it drains the connection) without the new filter counting it."""
    answers = statuses(mesh, n)
    codes = [r.status_code for r in answers]
    passed = codes.index(429) if 429 in codes else n
    assert passed in (TOKENS, TOKENS + 1) and codes == [200] * passed + [429] * (n - passed), \
        codes
    return answers[passed:]


def test_local_rate_limit_answers_429_beyond_the_bucket(
        mesh: Mesh, given: Given, when: When) -> None:
    given.applied(myapp.version("v1"), myapp.service())
    assert all(r.status_code == 200 for r in statuses(mesh, TOKENS + 2))  # no limit yet

    when.apply(envoy_filter("filter-local-ratelimit-svc", INSERT_RATE_LIMIT,
                            selector={"app": "myapp"}))

    for response in limited_after(mesh, TOKENS + 3):
        assert response.headers["x-local-rate-limit"] == "true"
        assert response.text == "local_rate_limited"


def test_per_route_limit_cluster_merge_and_a_refused_patch(
        mesh: Mesh, given: Given, when: When) -> None:
    given.applied(myapp.version("v1"), myapp.service())
    per_route = {
        "applyTo": "HTTP_ROUTE",
        "match": {"context": "SIDECAR_INBOUND", "routeConfiguration": {
            "vhost": {"name": "inbound|http|8080", "route": {"action": "ANY"}}}},
        "patch": {"operation": "MERGE", "value": {"typed_per_filter_config": {
            "envoy.filters.http.local_ratelimit": {
                "@type": "type.googleapis.com/udpa.type.v1.TypedStruct", "type_url": LRL,
                "value": {"stat_prefix": "http_local_rate_limiter", "token_bucket": BUCKET,
                          **ENFORCED}}}}},
    }
    bare = copy.deepcopy(INSERT_RATE_LIMIT)
    bare["patch"]["value"]["typed_config"]["value"] = {"stat_prefix": "http_local_rate_limiter"}
    client_side = {
        "applyTo": "CLUSTER",
        "match": {"context": "SIDECAR_OUTBOUND",
                  "cluster": {"service": "myapp.default.svc.cluster.local"}},
        "patch": {"operation": "MERGE", "value": {
            "connect_timeout": "0.25s",
            "circuit_breakers": {"thresholds": [{"max_connections": 7}]}}},
    }
    when.apply(envoy_filter("filter-local-ratelimit-svc", bare, per_route,
                            selector={"app": "myapp"}),
               envoy_filter("myapp-client", client_side, namespace="default"))

    assert all(r.headers["x-local-rate-limit"] == "true" for r in limited_after(mesh, TOKENS + 3))
    cluster = mesh.clusters()["outbound|8080||myapp.default.svc.cluster.local"]
    assert cluster["connect_timeout"] == "0.250s"
    assert cluster["circuit_breakers"]["thresholds"][-1]["max_connections"] == 7

    # A filter placed after the terminal router: refused with Envoy's reason, not stored
    after_router = copy.deepcopy(INSERT_RATE_LIMIT)
    after_router["match"]["listener"]["filterChain"]["filter"]["subFilter"] = {
        "name": "envoy.filters.http.router"}
    after_router["patch"]["operation"] = "INSERT_AFTER"
    refused = mesh.apply(envoy_filter("bad", after_router, selector={"app": "myapp"}),
                         expect=422)
    [problem] = refused["diagnostics"]
    assert problem["code"] == "MP0088" and "router" in problem["message"], problem
    assert "Envoy refuses" in problem["message"]
    path = "/apis/networking.istio.io/v1alpha3/namespaces/istio-system/envoyfilters/bad"
    assert mesh.api.get(path).status_code == 404
    assert mesh.clusters()["outbound|8080||myapp.default.svc.cluster.local"][
        "connect_timeout"] == "0.250s"
