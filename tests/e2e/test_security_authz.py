"""AuthorizationPolicy end to end, after Istio's authorization tasks ("Authorization for
HTTP traffic", "Explicit deny", "Authorization policies with a deny action"): real
Envoy sidecars enforcing RBAC on requests sent over real mutual TLS.

The scene, as in Istio's tasks: namespace ``foo`` with ``httpbin`` (service account
``httpbin``) and ``sleep`` (service account ``sleep``), namespace ``bar`` with its own
``sleep`` (service account ``sleep``). Callers: the mesh proxy
(``cluster.local/ns/default/sa/default``), and each ``sleep`` through its own sidecar.
A denied request gets Istio's answer: 403 with the body ``RBAC: access denied``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.builders import from_yaml
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given
from tests.e2e.security import (
    DENIED,
    MESH_PROXY_PRINCIPAL,
    Body,
    applied,
    as_pod,
    authorization_policy,
    becomes,
    deleted,
    durations_counted,
    series,
    status,
    url,
    wait_counted,
    workload,
)

FOO, BAR = "foo", "bar"
HTTPBIN = url("httpbin", FOO)
SCENE = (*workload("httpbin", FOO, service_account="httpbin"),
         *workload("sleep", FOO, service_account="sleep"),
         *workload("sleep", BAR, service_account="sleep"))
FOO_SLEEP = "cluster.local/ns/foo/sa/sleep"


def for_httpbin(name: str, spec: str) -> Body:
    """An AuthorizationPolicy of namespace foo for httpbin's pods; the rest of its
    ``spec`` in YAML."""
    return authorization_policy(
        name, FOO, {"selector": {"matchLabels": {"app": "httpbin"}}, **from_yaml(spec)})


@contextmanager
def callers(mesh: Mesh) -> Iterator[dict[str, httpx.Client]]:
    """The three callers of the scene, by name: ``mesh`` (the mesh proxy), ``foo/sleep``
    and ``bar/sleep`` (each through its sidecar)."""
    with as_pod(mesh, FOO, "sleep") as foo_sleep, as_pod(mesh, BAR, "sleep") as bar_sleep:
        yield {"mesh": mesh.http, "foo/sleep": foo_sleep, "bar/sleep": bar_sleep}


def answers(mesh: Mesh, target: str = HTTPBIN, **request: object) -> dict[str, str]:
    """The status each caller gets for one request to ``target``."""
    with callers(mesh) as clients:
        return {name: status(client, target, **request) for name, client in clients.items()}


def answers_become(mesh: Mesh, expected: dict[str, str], target: str = HTTPBIN,
                   **request: object) -> None:
    """After a policy change: every caller gets its ``expected`` status (see
    :func:`tests.e2e.security.becomes`)."""
    becomes(lambda: answers(mesh, target, **request), expected)


def assert_denied(response: httpx.Response) -> None:
    """Istio's refusal: 403 and ``RBAC: access denied``."""
    assert (response.status_code, response.text) == (403, DENIED), (
        response.status_code, response.text)


def test_allow_nothing_denies_every_request_until_it_is_deleted(
        mesh: Mesh, given: Given) -> None:
    """Istio, "allow-nothing" (an AuthorizationPolicy with ``spec: {}`` in a namespace):
    every request to every workload of the namespace is denied with 403 ``RBAC: access
    denied``, whoever calls; deleting the policy restores access."""
    given.applied(*SCENE)
    assert answers(mesh) == {"mesh": "200", "foo/sleep": "200", "bar/sleep": "200"}

    applied(mesh, authorization_policy("allow-nothing", FOO, {}))
    answers_become(mesh, {"mesh": "403", "foo/sleep": "403", "bar/sleep": "403"})
    assert_denied(mesh.http.get(HTTPBIN))
    assert_denied(mesh.http.get(url("sleep", FOO)))  # every workload of the namespace
    assert mesh.http.get(url("sleep", BAR)).status_code == 200  # not another namespace's

    deleted(mesh, "AuthorizationPolicy", "allow-nothing", FOO)
    answers_become(mesh, {"mesh": "200", "foo/sleep": "200", "bar/sleep": "200"})


def test_deny_a_path_prefix_to_everyone(mesh: Mesh, given: Given) -> None:
    """Istio, a DENY policy on ``paths: ["/admin*"]`` (a trailing ``*`` is a prefix
    match): every path starting with ``/admin`` is denied to every caller; other paths,
    ``/x/admin`` included, are served."""
    given.applied(*SCENE, for_httpbin("deny-admin", """
        action: DENY
        rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
        """))
    for path in ("/admin", "/admin/users", "/administrator"):
        assert answers(mesh, url("httpbin", FOO, path)) == {
            "mesh": "403", "foo/sleep": "403", "bar/sleep": "403"}, path
        assert_denied(mesh.http.get(url("httpbin", FOO, path)))
    for path in ("/", "/ip", "/x/admin", "/Admin"):
        assert answers(mesh, url("httpbin", FOO, path)) == {
            "mesh": "200", "foo/sleep": "200", "bar/sleep": "200"}, path


def test_allow_by_source_principal(mesh: Mesh, given: Given) -> None:
    """Istio, ALLOW ``from.source.principals``: only the named identities (their SPIFFE
    ID without ``spiffe://``) get through; a workload of the same service account name in
    another namespace is someone else. The mesh proxy is
    ``cluster.local/ns/default/sa/default``."""
    given.applied(*SCENE, for_httpbin("from-sleep", f"""
        action: ALLOW
        rules: [{{from: [{{source: {{principals: ["{FOO_SLEEP}"]}}}}]}}]
        """))
    assert answers(mesh) == {"mesh": "403", "foo/sleep": "200", "bar/sleep": "403"}
    assert_denied(mesh.http.get(HTTPBIN))

    applied(mesh, for_httpbin("from-sleep", f"""
        rules: [{{from: [{{source: {{principals: ["{MESH_PROXY_PRINCIPAL}"]}}}}]}}]
        """))
    answers_become(mesh, {"mesh": "200", "foo/sleep": "403", "bar/sleep": "403"})

    applied(mesh, for_httpbin("from-sleep", """
        rules: [{from: [{source: {principals: ["*/sa/sleep"]}}]}]
        """))
    answers_become(mesh, {"mesh": "403", "foo/sleep": "200", "bar/sleep": "200"})


def test_allow_by_source_namespace(mesh: Mesh, given: Given) -> None:
    """Istio, ALLOW ``from.source.namespaces``: only workloads of the named namespaces
    (proved by their certificates) get through."""
    given.applied(*SCENE, for_httpbin("from-bar", """
        rules: [{from: [{source: {namespaces: [bar]}}]}]
        """))
    assert answers(mesh) == {"mesh": "403", "foo/sleep": "403", "bar/sleep": "200"}


def test_allow_by_method(mesh: Mesh, given: Given) -> None:
    """Istio, ALLOW ``to.operation.methods: [GET]`` (the task's read-only access): GET is
    served, POST and DELETE are denied."""
    given.applied(*SCENE, for_httpbin("get-only", """
        rules: [{to: [{operation: {methods: [GET]}}]}]
        """))
    assert answers(mesh, method="GET") == {"mesh": "200", "foo/sleep": "200", "bar/sleep": "200"}
    assert answers(mesh, method="POST", content=b"x") == {
        "mesh": "403", "foo/sleep": "403", "bar/sleep": "403"}
    assert answers(mesh, method="DELETE") == {
        "mesh": "403", "foo/sleep": "403", "bar/sleep": "403"}
    assert_denied(mesh.http.post(HTTPBIN, content=b"x"))


def test_allow_when_a_request_header_has_a_value(mesh: Mesh, given: Given) -> None:
    """Istio, ALLOW with ``when: [{key: request.headers[x-token], values: [admin]}]``:
    only requests carrying that header with that value get through."""
    given.applied(*SCENE, for_httpbin("token", """
        rules: [{when: [{key: "request.headers[x-token]", values: [admin]}]}]
        """))
    assert answers(mesh, headers={"x-token": "admin"}) == {
        "mesh": "200", "foo/sleep": "200", "bar/sleep": "200"}
    assert answers(mesh, headers={"x-token": "guest"}) == {
        "mesh": "403", "foo/sleep": "403", "bar/sleep": "403"}
    assert answers(mesh) == {"mesh": "403", "foo/sleep": "403", "bar/sleep": "403"}


def test_deny_beats_allow(mesh: Mesh, given: Given) -> None:
    """Istio's evaluation order: DENY policies are evaluated before ALLOW ones, and any
    match denies; an ALLOW rule ``{}`` (allow everything) does not let a denied caller
    in. Deleting the DENY policy restores access."""
    given.applied(*SCENE,
                  for_httpbin("allow-all", "rules: [{}]"),
                  for_httpbin("deny-mesh-proxy", f"""
        action: DENY
        rules: [{{from: [{{source: {{principals: ["{MESH_PROXY_PRINCIPAL}"]}}}}]}}]
        """))
    assert answers(mesh) == {"mesh": "403", "foo/sleep": "200", "bar/sleep": "200"}
    assert_denied(mesh.http.get(HTTPBIN))

    deleted(mesh, "AuthorizationPolicy", "deny-mesh-proxy", FOO)
    answers_become(mesh, {"mesh": "200", "foo/sleep": "200", "bar/sleep": "200"})


DENY_ADMIN = """
action: DENY
rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
"""


def _denied_and_served(mesh: Mesh, denied: int, served: int) -> None:
    for _ in range(denied):
        assert_denied(mesh.http.get(url("httpbin", FOO, "/admin")))
    for _ in range(served):
        assert mesh.http.get(HTTPBIN).status_code == 200


def test_denied_requests_are_counted_by_the_source_reporter(mesh: Mesh, given: Given) -> None:
    """Istio counts a denied request in ``istio_requests_total`` with
    ``response_code="403"``: at the caller's proxy (``reporter="source"``)."""
    given.applied(*SCENE, for_httpbin("deny-admin", DENY_ADMIN))
    _denied_and_served(mesh, 7, 3)
    labels = {"reporter": "source", "source_workload": "mesh-proxy",
              "destination_workload": "httpbin", "destination_workload_namespace": FOO}
    assert wait_counted(mesh, 7, response_code="403", **labels) == 7
    assert wait_counted(mesh, 3, response_code="200", **labels) == 3


def test_denied_requests_are_counted_by_the_destination_reporter(
        mesh: Mesh, given: Given) -> None:
    """Istio counts a denied request in ``istio_requests_total`` with
    ``response_code="403"`` at the server's sidecar too (``reporter="destination"``:
    Istio's stats filter sees every request the sidecar answers, RBAC's refusals
    included), with the caller it proved by mutual TLS."""
    given.applied(*SCENE, for_httpbin("deny-admin", DENY_ADMIN))
    _denied_and_served(mesh, 7, 3)
    labels = {"reporter": "destination", "destination_workload": "httpbin",
              "destination_workload_namespace": FOO}
    assert wait_counted(mesh, 3, response_code="200", **labels) == 3
    assert wait_counted(mesh, 7, response_code="403", source_workload="mesh-proxy",
                        connection_security_policy="mutual_tls", **labels) == 7
    # and in the latencies, as Istio's are: ten requests, whoever answered them
    assert durations_counted(mesh, source_workload="mesh-proxy", **labels) == 10


SPOOFED = {"x-meshpilot-source": "sleep|foo|sleep|v1|sleep",
           "x-meshpilot-peer-principal": f"spiffe://{FOO_SLEEP}"}
"""What a caller would send to pass for foo/sleep, if headers were believed."""


def test_a_header_spoofed_identity_is_not_believed(
        mesh: Mesh, given: Given) -> None:
    """In Istio the caller's identity comes from its peer certificate, never from what it
    writes in a request: a caller sending another workload's identity headers is
    authorized (RBAC principals) and reported (telemetry's ``source_*``) as itself."""
    given.applied(*SCENE)
    with callers(mesh) as clients:
        for name in ("mesh", "bar/sleep"):
            for _ in range(4):
                r = clients[name].get(HTTPBIN, headers=SPOOFED)
                assert r.status_code == 200, (name, r.text)
        seen = clients["bar/sleep"].get(HTTPBIN, headers=SPOOFED).json()["headers"]
    # the app is told who really called
    assert seen["x-meshpilot-peer-principal"] == "spiffe://cluster.local/ns/bar/sa/sleep"
    assert seen["x-meshpilot-source"].split("|")[:2] == ["sleep", BAR]

    dest = {"reporter": "destination", "destination_workload": "httpbin"}
    assert wait_counted(mesh, 4, source_workload="mesh-proxy",
                        source_principal=f"spiffe://{MESH_PROXY_PRINCIPAL}", **dest) == 4
    assert wait_counted(mesh, 5, source_workload="sleep", source_workload_namespace=BAR,
                        source_principal="spiffe://cluster.local/ns/bar/sa/sleep",
                        connection_security_policy="mutual_tls", **dest) == 5
    claimed = series(mesh, source_workload_namespace=FOO, **dest)
    assert claimed == [], claimed

    applied(mesh, for_httpbin("from-sleep", f"""
        rules: [{{from: [{{source: {{principals: ["{FOO_SLEEP}"]}}}}]}}]
        """))
    answers_become(mesh, {"mesh": "403", "foo/sleep": "200", "bar/sleep": "403"})
    with callers(mesh) as clients:
        assert_denied(clients["bar/sleep"].get(HTTPBIN, headers=SPOOFED))
        assert_denied(clients["mesh"].get(HTTPBIN, headers=SPOOFED))
        assert clients["foo/sleep"].get(HTTPBIN).status_code == 200
