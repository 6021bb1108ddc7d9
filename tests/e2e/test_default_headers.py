"""The headers Istio's proxies add, seen by the app (the demo app echoes the request's
headers) and by the client, through real Envoys.

Follows what Istio's proxies do to a request (its virtual hosts count attempts, its
connection managers make request ids, its inbound mutual-TLS chains forward the client
certificate's details, its gateway appends the client address) as the httpbin
``/headers`` answers in Istio's task pages show them.
"""

from __future__ import annotations

import ipaddress

import httpx

from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given


def seen(response: httpx.Response) -> dict[str, str]:
    """The request headers the app received."""
    assert response.headers.get("x-pod"), response.text
    headers: dict[str, str] = response.json()["headers"]
    return headers


def test_a_sidecar_request_carries_istios_headers(mesh: Mesh, given: Given) -> None:
    given.applied(myapp.version("v1"), myapp.service())
    forged = {"x-forwarded-client-cert": "By=spiffe://cluster.local/ns/x/sa/forged"}
    r = mesh.http.get(URL, headers=forged)
    assert r.status_code == 200
    got = seen(r)
    assert got["x-envoy-attempt-count"] == "1"
    assert len(got["x-request-id"]) >= 32  # made by the client's sidecar
    assert got["x-forwarded-proto"] == "http"
    # the mTLS hop adds the caller's identity; the app's own (forged) value was dropped
    xfcc = got["x-forwarded-client-cert"]
    assert "forged" not in xfcc
    assert "URI=spiffe://cluster.local/ns/default/sa/" in xfcc, xfcc
    assert "By=spiffe://cluster.local/ns/default/sa/" in xfcc, xfcc
    assert r.headers["server"] == "istio-envoy"
    # a request id the client brings is kept end to end
    mine = mesh.http.get(URL, headers={"x-request-id": "req-123"})
    assert seen(mine)["x-request-id"] == "req-123"


def test_retries_are_counted_in_the_attempt_header(mesh: Mesh, given: Given) -> None:
    """Istio's default retry policy retries a 503 twice: the last try says 3."""
    given.applied(myapp.version("v1"), myapp.service())
    r = mesh.http.get("http://myapp:8080/status/503")
    assert r.status_code == 503
    assert seen(r)["x-envoy-attempt-count"] == "3"


def test_the_gateway_appends_the_client_address(mesh: Mesh, given: Given) -> None:
    given.applied(myapp.version("v1"), myapp.service(), myapp.subsets("v1"),
                  *myapp.ingress("v1"))
    r = mesh.from_ingress("/", host="myapp.example.com")
    assert r.status_code == 200, r.text
    got = seen(r)
    # one address appended, the client's (Envoy writes its host's own address for a
    # client on loopback, as the tests' clients are)
    (client,) = [a.strip() for a in got["x-forwarded-for"].split(",")]
    assert ipaddress.ip_address(client), got
    assert got["x-envoy-attempt-count"] == "1"
    assert got["x-request-id"]
    assert r.headers["server"] == "istio-envoy"
