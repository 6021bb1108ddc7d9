"""Tests for the networking.istio.io models: Istio's own YAML parses, round-trips with
its camelCase names, and each class of mistake is refused with a precise type and loc."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from tests.builders import virtual_service
from tests.conftest import validation_errors

from meshpilot.api.networking import (
    DestinationRule,
    Gateway,
    ServiceEntry,
    VirtualService,
    WorkloadEntry,
)

VS_YAML = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-route
  namespace: bookinfo
spec:
  hosts:
  - reviews.prod.svc.cluster.local
  gateways:
  - mesh
  - bookinfo-gateway
  exportTo:
  - "."
  http:
  - name: jason
    match:
    - name: by-user
      headers:
        end-user:
          exact: jason
        x-present: {}
      uri:
        prefix: /reviews
      queryParams:
        debug:
          regex: "^(true|1)$"
      ignoreUriCase: true
      withoutHeaders:
        x-canary:
          exact: "false"
      sourceLabels:
        app: productpage
      sourceNamespace: bookinfo
      port: 9080
      statPrefix: jason
    rewrite:
      uri: /newcatalog
      authority: reviews.internal
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v2
        port:
          number: 9080
      weight: 25
      headers:
        request:
          set:
            x-route: v2
          add:
            x-trace: "1"
          remove:
          - x-drop
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v1
      weight: 75
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream
      retryRemoteLocalities: true
    fault:
      delay:
        percentage:
          value: 0.1
        fixedDelay: 5s
      abort:
        percentage:
          value: 0.1
        httpStatus: 400
    mirror:
      host: reviews-shadow
      subset: v3
      port:
        number: 9080
    mirrorPercentage:
      value: 50.5
    corsPolicy:
      allowOrigins:
      - exact: https://example.com
      - regex: "https://.*\\\\.example\\\\.org"
      allowMethods: [POST, GET]
      allowHeaders: [X-Foo-Bar]
      exposeHeaders: [X-Expose]
      maxAge: 24h
      allowCredentials: false
      unmatchedPreflights: IGNORE
    headers:
      response:
        set:
          x-served-by: mesh
  - name: legacy-mirror
    match:
    - uri:
        regex: "^/legacy/[0-9]+$"
    mirror:
      host: legacy-shadow
    mirrorPercent: 20
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v1
  - name: regex-rewrite
    match:
    - uri:
        prefix: /v1/
    rewrite:
      uriRegexRewrite:
        match: "^/v1/(.*)$"
        rewrite: /v2/\\\\1
    mirrors:
    - destination:
        host: reviews-shadow
      percentage:
        value: 10
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
  - name: moved
    match:
    - uri:
        exact: /old
    redirect:
      uri: /new
      authority: new.example.com
      redirectCode: 301
  - name: teapot
    match:
    - uri:
        exact: /teapot
    directResponse:
      status: 418
      body:
        string: "I'm a teapot"
  - name: delegated
    match:
    - uri:
        prefix: /ratings
    delegate:
      name: ratings-vs
      namespace: ratings
  - name: grpc-abort
    fault:
      abort:
        grpcStatus: UNAVAILABLE
        percentage:
          value: 5
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
  tcp:
  - match:
    - port: 27017
      sourceLabels:
        app: reviews
    route:
    - destination:
        host: mongo.backup.svc.cluster.local
        port:
          number: 5555
  tls:
  - match:
    - port: 443
      sniHosts:
      - login.bookinfo.com
    route:
    - destination:
        host: login.prod.svc.cluster.local
      weight: 1
    - destination:
        host: login-canary.prod.svc.cluster.local
      weight: 0
"""

DR_YAML = """
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews-dr
spec:
  host: reviews.prod.svc.cluster.local
  exportTo: ["*"]
  workloadSelector:
    matchLabels:
      app: ratings
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie:
          name: user
          path: /
          ttl: 0s
        ringHash:
          minimumRingSize: 1024
      localityLbSetting:
        enabled: true
        distribute:
        - from: us-west/zone1/*
          to:
            "us-west/zone1/*": 80
            "us-west/zone2/*": 20
        failover:
        - from: us-east
          to: eu-west
      warmupDurationSecs: 60s
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        tcpKeepalive:
          probes: 5
          time: 7200s
          interval: 75s
        maxConnectionDuration: 1h
        idleTimeout: 5m
      http:
        http1MaxPendingRequests: 1
        http2MaxRequests: 1000
        maxRequestsPerConnection: 10
        maxRetries: 3
        idleTimeout: 30s
        h2UpgradePolicy: UPGRADE
        useClientProtocol: false
        maxConcurrentStreams: 100
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 5
      consecutiveLocalOriginFailures: 3
      splitExternalLocalOriginErrors: true
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
      minHealthPercent: 30
    tls:
      mode: MUTUAL
      clientCertificate: /etc/certs/myclientcert.pem
      privateKey: /etc/certs/client_private_key.pem
      caCertificates: /etc/certs/rootcacerts.pem
      subjectAltNames:
      - reviews.prod.svc.cluster.local
      sni: reviews.example.com
      insecureSkipVerify: false
    portLevelSettings:
    - port:
        number: 80
      loadBalancer:
        simple: LEAST_REQUEST
      connectionPool:
        tcp:
          maxConnections: 10
      outlierDetection:
        consecutiveErrors: 2
      tls:
        mode: ISTIO_MUTUAL
    tunnel:
      protocol: CONNECT
      targetHost: 192.168.1.2
      targetPort: 443
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
    trafficPolicy:
      loadBalancer:
        consistentHash:
          useSourceIp: true
          maglev:
            tableSize: 65537
"""

GW_YAML = """
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: my-gateway
  namespace: some-config-namespace
spec:
  selector:
    app: my-gateway-controller
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - uk.bookinfo.com
    - eu.bookinfo.com
    tls:
      httpsRedirect: true
  - port:
      number: 443
      name: https-443
      protocol: HTTPS
      targetPort: 8443
    hosts:
    - uk.bookinfo.com
    tls:
      mode: SIMPLE
      serverCertificate: /etc/certs/servercert.pem
      privateKey: /etc/certs/privatekey.pem
      minProtocolVersion: TLSV1_2
  - port:
      number: 9443
      name: https-9443
      protocol: HTTPS
    hosts:
    - "bookinfo-namespace/*.bookinfo.com"
    tls:
      mode: MUTUAL
      credentialName: bookinfo-secret
      subjectAltNames: [client.bookinfo.com]
    bind: 0.0.0.0
    name: mtls
  - port:
      number: 2379
      name: mongo
      protocol: MONGO
    hosts:
    - "*"
"""

SE_YAML = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: external-svc-https
spec:
  hosts:
  - api.dropboxapi.com
  - www.googleapis.com
  addresses:
  - 192.192.192.192/24
  ports:
  - number: 443
    name: https
    protocol: TLS
    targetPort: 8443
  location: MESH_EXTERNAL
  resolution: DNS
  exportTo: ["."]
  subjectAltNames: [spiffe://cluster.local/ns/default/sa/api]
  endpoints:
  - address: 2.2.2.2
    ports:
      https: 8443
    labels:
      version: v1
    network: net-1
    locality: us-west/zone1
    weight: 3
    serviceAccount: api
  - address: unix:///var/run/example/socket
"""

SE_SELECTOR_YAML = """
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: details-svc
spec:
  hosts:
  - details.bookinfo.com
  location: MESH_INTERNAL
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  workloadSelector:
    labels:
      app: details-legacy
"""

WE_YAML = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: details-svc
spec:
  serviceAccount: details-legacy
  address: 2.2.2.2
  labels:
    app: details-legacy
    instance-id: vm1
  ports:
    http: 8080
  network: vm-net
  locality: us-east/zone1
  weight: 2
"""

ALL = [
    (VirtualService, VS_YAML),
    (DestinationRule, DR_YAML),
    (Gateway, GW_YAML),
    (ServiceEntry, SE_YAML),
    (ServiceEntry, SE_SELECTOR_YAML),
    (WorkloadEntry, WE_YAML),
]


def load(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def one_error(model: type, data: dict[str, Any]) -> dict[str, Any]:
    errs = validation_errors(model, data)
    assert len(errs) == 1, errs
    return errs[0]


def vs_with_route(route: list[dict[str, Any]]) -> dict[str, Any]:
    return vs_with_http({"route": route})


def vs_with_http(http: dict[str, Any]) -> dict[str, Any]:
    return virtual_service("r", http=[http], namespace=None)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("model", "text"), ALL)
def test_istio_documents_parse(model: type, text: str) -> None:
    obj = model.model_validate(load(text))
    assert obj.spec is not None


@pytest.mark.parametrize(("model", "text"), ALL)
def test_round_trip_is_exact(model: type, text: str) -> None:
    """Every alias is checked here: dumping what was set must give back the user's YAML."""
    data = load(text)
    obj = model.model_validate(data)
    assert obj.model_dump(by_alias=True, exclude_unset=True) == data


def test_parsed_values_land_on_snake_case_attributes() -> None:
    vs = VirtualService.model_validate(load(VS_YAML))
    http = vs.spec.http[0]
    assert vs.spec.export_to == ["."]
    assert http.match[0].headers["end-user"].exact == "jason"
    assert http.match[0].headers["x-present"].exact is None  # presence match
    assert http.match[0].query_params["debug"].regex == "^(true|1)$"
    assert http.route[0].destination.port is not None
    assert http.route[0].destination.port.number == 9080
    assert http.route[0].headers is not None
    assert http.route[0].headers.request is not None
    assert http.route[0].headers.request.set_ == {"x-route": "v2"}
    assert http.retries is not None and http.retries.per_try_timeout == "2s"
    assert http.fault is not None and http.fault.abort is not None
    assert http.fault.abort.http_status == 400
    assert http.mirror_percentage is not None and http.mirror_percentage.value == 50.5
    assert vs.spec.http[1].mirror_percent == 20
    body = vs.spec.http[4].direct_response
    assert body is not None and body.body is not None and body.body.string_ == "I'm a teapot"

    dr = DestinationRule.model_validate(load(DR_YAML))
    tp = dr.spec.traffic_policy
    assert tp is not None and tp.outlier_detection is not None
    assert tp.outlier_detection.consecutive_5xx_errors == 7
    assert tp.connection_pool is not None and tp.connection_pool.http is not None
    assert tp.connection_pool.http.http1_max_pending_requests == 1
    assert tp.connection_pool.http.h2_upgrade_policy == "UPGRADE"
    assert tp.load_balancer is not None and tp.load_balancer.locality_lb_setting is not None
    assert tp.load_balancer.locality_lb_setting.distribute[0].from_ == "us-west/zone1/*"
    assert dr.spec.workload_selector is not None
    assert dr.spec.workload_selector.match_labels == {"app": "ratings"}


def test_dump_exclude_none_uses_camel_case_names() -> None:
    dr = DestinationRule.model_validate(load(DR_YAML)).model_dump(by_alias=True, exclude_none=True)
    tp = dr["spec"]["trafficPolicy"]
    assert tp["outlierDetection"]["consecutive5xxErrors"] == 7
    assert tp["connectionPool"]["http"]["http1MaxPendingRequests"] == 1
    assert tp["connectionPool"]["http"]["http2MaxRequests"] == 1000
    assert tp["connectionPool"]["http"]["h2UpgradePolicy"] == "UPGRADE"
    assert tp["connectionPool"]["tcp"]["tcpKeepalive"]["probes"] == 5
    assert tp["loadBalancer"]["localityLbSetting"]["distribute"][0]["from"] == "us-west/zone1/*"
    assert tp["loadBalancer"]["warmupDurationSecs"] == "60s"
    assert tp["portLevelSettings"][0]["tls"]["mode"] == "ISTIO_MUTUAL"
    assert dr["spec"]["subsets"][1]["trafficPolicy"]["loadBalancer"]["consistentHash"] == {
        "useSourceIp": True,
        "maglev": {"tableSize": 65537},
    }
    assert dr["spec"]["exportTo"] == ["*"]
    assert dr["apiVersion"] == "networking.istio.io/v1beta1"

    vs = VirtualService.model_validate(load(VS_YAML)).model_dump(by_alias=True, exclude_none=True)
    http = vs["spec"]["http"]
    assert http[0]["route"][0]["headers"]["request"]["set"] == {"x-route": "v2"}
    assert http[0]["mirrorPercentage"] == {"value": 50.5}
    assert http[0]["corsPolicy"]["allowOrigins"][0] == {"exact": "https://example.com"}
    assert http[0]["corsPolicy"]["unmatchedPreflights"] == "IGNORE"
    assert http[0]["match"][0]["withoutHeaders"]["x-canary"] == {"exact": "false"}
    assert http[1]["mirrorPercent"] == 20
    assert http[2]["rewrite"]["uriRegexRewrite"]["match"] == "^/v1/(.*)$"
    assert http[4]["directResponse"]["body"] == {"string": "I'm a teapot"}
    assert http[6]["fault"]["abort"]["grpcStatus"] == "UNAVAILABLE"
    assert vs["spec"]["tls"][0]["match"][0]["sniHosts"] == ["login.bookinfo.com"]

    gw = Gateway.model_validate(load(GW_YAML)).model_dump(by_alias=True, exclude_none=True)
    assert gw["spec"]["servers"][0]["tls"] == {
        "httpsRedirect": True,
        "credentialNames": [],
        "tlsCertificates": [],
        "subjectAltNames": [],
        "verifyCertificateSpki": [],
        "verifyCertificateHash": [],
        "cipherSuites": [],
    }
    assert gw["spec"]["servers"][1]["port"]["targetPort"] == 8443

    we = WorkloadEntry.model_validate(load(WE_YAML)).model_dump(by_alias=True, exclude_none=True)
    assert we["spec"]["serviceAccount"] == "details-legacy"


def test_snake_case_names_are_accepted_on_input_too() -> None:
    """populate_by_name: code building models in Python may use the attribute names."""
    data = load(WE_YAML)
    data["spec"]["service_account"] = data["spec"].pop("serviceAccount")
    we = WorkloadEntry.model_validate(data)
    assert we.spec.service_account == "details-legacy"


# --------------------------------------------------------------------------- rejections


def test_misspelt_weight_is_refused() -> None:
    err = one_error(VirtualService, vs_with_route([{"destination": {"host": "a"}, "weigth": 100}]))
    assert err["type"] == "extra_forbidden"
    assert err["loc"] == ("spec", "http", 0, "route", 0, "weigth")


def test_misspelt_dr_field_is_refused() -> None:
    data = load(DR_YAML)
    data["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5XxErrors"] = 3
    err = one_error(DestinationRule, data)
    assert err["type"] == "extra_forbidden"
    assert err["loc"] == ("spec", "trafficPolicy", "outlierDetection", "consecutive5XxErrors")


def test_negative_weight_is_refused() -> None:
    err = one_error(
        VirtualService,
        vs_with_route(
            [
                {"destination": {"host": "a"}, "weight": -10},
                {"destination": {"host": "b"}, "weight": 110},
            ]
        ),
    )
    assert err["type"] == "greater_than_equal"
    assert err["loc"] == ("spec", "http", 0, "route", 0, "weight")


def test_all_zero_weights_are_refused() -> None:
    err = one_error(
        VirtualService,
        vs_with_route(
            [
                {"destination": {"host": "a"}, "weight": 0},
                {"destination": {"host": "b"}, "weight": 0},
            ]
        ),
    )
    assert err["type"] == "mp_weights"
    assert err["loc"] == ("spec", "http", 0, "route")


def test_omitted_weights_on_several_destinations_are_refused() -> None:
    err = one_error(
        VirtualService,
        vs_with_route([{"destination": {"host": "a"}}, {"destination": {"host": "b"}}]),
    )
    assert err["type"] == "mp_weights"


def test_all_zero_weights_refused_on_tcp_routes() -> None:
    data = load(VS_YAML)
    data["spec"]["tls"][0]["route"][0]["weight"] = 0
    err = one_error(VirtualService, data)
    assert err["type"] == "mp_weights"
    assert err["loc"] == ("spec", "tls", 0, "route")


def test_weights_are_relative_not_summing_to_100() -> None:
    vs = VirtualService.model_validate(
        vs_with_route(
            [
                {"destination": {"host": "a"}, "weight": 1},
                {"destination": {"host": "b"}, "weight": 3},
            ]
        )
    )
    assert [r.weight for r in vs.spec.http[0].route] == [1, 3]
    # A single destination needs no weight, and weight 0 there is fine too.
    VirtualService.model_validate(vs_with_route([{"destination": {"host": "a"}, "weight": 0}]))


def test_percentage_above_100_is_refused() -> None:
    data = load(VS_YAML)
    data["spec"]["http"][0]["fault"]["delay"]["percentage"]["value"] = 101
    err = one_error(VirtualService, data)
    assert err["type"] == "less_than_equal"
    assert err["loc"] == ("spec", "http", 0, "fault", "delay", "percentage", "value")


def test_mirror_percentage_and_mirror_percent_ranges() -> None:
    data = load(VS_YAML)
    data["spec"]["http"][0]["mirrorPercentage"]["value"] = 100.5
    data["spec"]["http"][1]["mirrorPercent"] = 101
    errs = validation_errors(VirtualService, data)
    assert {(e["type"], e["loc"]) for e in errs} == {
        ("less_than_equal", ("spec", "http", 0, "mirrorPercentage", "value")),
        ("less_than_equal", ("spec", "http", 1, "mirrorPercent")),
    }


def test_bad_duration_is_refused() -> None:
    data = load(VS_YAML)
    data["spec"]["http"][0]["timeout"] = "10x"
    err = one_error(VirtualService, data)
    assert err["type"] == "mp_duration"
    assert err["loc"] == ("spec", "http", 0, "timeout")


def test_bad_duration_in_destination_rule_is_refused() -> None:
    data = load(DR_YAML)
    data["spec"]["trafficPolicy"]["outlierDetection"]["baseEjectionTime"] = "10x"
    err = one_error(DestinationRule, data)
    assert err["type"] == "mp_duration"
    assert err["loc"] == ("spec", "trafficPolicy", "outlierDetection", "baseEjectionTime")


def test_lookahead_regex_in_uri_is_refused() -> None:
    data = load(VS_YAML)
    data["spec"]["http"][1]["match"][0]["uri"] = {"regex": "(?=x)"}
    err = one_error(VirtualService, data)
    assert err["type"] == "mp_regex"
    assert err["loc"] == ("spec", "http", 1, "match", 0, "uri", "regex")


def test_lookahead_regex_in_header_is_refused() -> None:
    data = load(VS_YAML)
    data["spec"]["http"][0]["match"][0]["headers"]["end-user"] = {"regex": "(?=x)"}
    err = one_error(VirtualService, data)
    assert err["type"] == "mp_regex"
    assert err["loc"] == ("spec", "http", 0, "match", 0, "headers", "end-user", "regex")


def test_lookahead_regex_in_uri_regex_rewrite_is_refused() -> None:
    data = load(VS_YAML)
    data["spec"]["http"][2]["rewrite"]["uriRegexRewrite"]["match"] = "^(?!x)"
    err = one_error(VirtualService, data)
    assert err["type"] == "mp_regex"
    assert err["loc"] == ("spec", "http", 2, "rewrite", "uriRegexRewrite", "match")


def test_port_out_of_range_is_refused() -> None:
    data = load(VS_YAML)
    data["spec"]["http"][0]["route"][0]["destination"]["port"]["number"] = 70000
    err = one_error(VirtualService, data)
    assert err["type"] == "less_than_equal"
    assert err["loc"] == ("spec", "http", 0, "route", 0, "destination", "port", "number")


def test_gateway_port_out_of_range_is_refused() -> None:
    data = load(GW_YAML)
    data["spec"]["servers"][0]["port"]["number"] = 70000
    err = one_error(Gateway, data)
    assert err["type"] == "less_than_equal"
    assert err["loc"] == ("spec", "servers", 0, "port", "number")


def test_string_match_with_two_keys_is_refused() -> None:
    data = load(VS_YAML)
    data["spec"]["http"][1]["match"][0]["uri"] = {"exact": "/a", "prefix": "/a"}
    err = one_error(VirtualService, data)
    assert err["type"] == "mp_value"
    assert err["loc"] == ("spec", "http", 1, "match", 0, "uri")
    assert "exact, prefix, regex" in err["msg"]


def test_empty_uri_match_is_refused() -> None:
    data = load(VS_YAML)
    data["spec"]["http"][1]["match"][0]["uri"] = {}
    err = one_error(VirtualService, data)
    assert err["type"] == "mp_value"
    assert err["loc"] == ("spec", "http", 1, "match", 0, "uri")


def test_string_match_with_unknown_key_is_refused() -> None:
    data = load(VS_YAML)
    data["spec"]["http"][1]["match"][0]["uri"] = {"suffix": "/a"}
    errs = validation_errors(VirtualService, data)
    assert ("extra_forbidden", ("spec", "http", 1, "match", 0, "uri", "suffix")) in {
        (e["type"], e["loc"]) for e in errs
    }


def test_bad_load_balancer_simple_is_refused() -> None:
    data = load(DR_YAML)
    data["spec"]["trafficPolicy"]["portLevelSettings"][0]["loadBalancer"]["simple"] = "LEAST_CONNS"
    err = one_error(DestinationRule, data)
    assert err["type"] == "literal_error"
    assert err["loc"] == (
        "spec",
        "trafficPolicy",
        "portLevelSettings",
        0,
        "loadBalancer",
        "simple",
    )
    assert "ROUND_ROBIN" in err["msg"]


def test_bad_enum_values_are_refused() -> None:
    data = load(DR_YAML)
    data["spec"]["trafficPolicy"]["connectionPool"]["http"]["h2UpgradePolicy"] = "ALWAYS"
    data["spec"]["trafficPolicy"]["tls"]["mode"] = "PERMISSIVE"
    errs = validation_errors(DestinationRule, data)
    assert {(e["type"], e["loc"][-1]) for e in errs} == {
        ("literal_error", "h2UpgradePolicy"),
        ("literal_error", "mode"),
    }


def test_negative_counts_and_percent_ranges_in_destination_rule() -> None:
    data = load(DR_YAML)
    data["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["maxConnections"] = -1
    data["spec"]["trafficPolicy"]["outlierDetection"]["maxEjectionPercent"] = 101
    errs = validation_errors(DestinationRule, data)
    assert {(e["type"], e["loc"][-1]) for e in errs} == {
        ("greater_than_equal", "maxConnections"),
        ("less_than_equal", "maxEjectionPercent"),
    }


def test_simple_and_consistent_hash_together_are_refused() -> None:
    data = load(DR_YAML)
    data["spec"]["trafficPolicy"]["loadBalancer"]["simple"] = "RANDOM"
    err = one_error(DestinationRule, data)
    assert err["type"] == "mp_value"
    assert err["loc"] == ("spec", "trafficPolicy", "loadBalancer")


def test_http_route_needs_exactly_one_action() -> None:
    err = one_error(
        VirtualService,
        vs_with_http({"route": [{"destination": {"host": "a"}}], "redirect": {"uri": "/x"}}),
    )
    assert err["type"] == "mp_value"
    assert err["loc"] == ("spec", "http", 0)
    err = one_error(VirtualService, vs_with_http({"name": "nothing"}))
    assert err["type"] == "mp_value"


def test_direct_response_status_range() -> None:
    err = one_error(VirtualService, vs_with_http({"directResponse": {"status": 700}}))
    assert err["type"] == "less_than_equal"
    assert err["loc"] == ("spec", "http", 0, "directResponse", "status")


def test_destination_host_is_required() -> None:
    err = one_error(VirtualService, vs_with_route([{"destination": {"subset": "v1"}}]))
    assert err["type"] == "missing"
    assert err["loc"] == ("spec", "http", 0, "route", 0, "destination", "host")


def test_spec_is_required() -> None:
    data = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g"}}
    err = one_error(Gateway, data)
    assert err["type"] == "missing"
    assert err["loc"] == ("spec",)


def test_unknown_gateway_protocol_is_refused() -> None:
    data = load(GW_YAML)
    data["spec"]["servers"][0]["port"]["protocol"] = "HTTP3"
    err = one_error(Gateway, data)
    assert err["type"] == "mp_value"
    assert err["loc"] == ("spec", "servers", 0, "port", "protocol")


def test_service_entry_enums_and_exclusivity() -> None:
    data = load(SE_YAML)
    data["spec"]["resolution"] = "DNS_ROUNDROBIN"
    err = one_error(ServiceEntry, data)
    assert err["type"] == "literal_error"
    assert err["loc"] == ("spec", "resolution")

    data = load(SE_SELECTOR_YAML)
    data["spec"]["endpoints"] = [{"address": "1.1.1.1"}]
    err = one_error(ServiceEntry, data)
    assert err["type"] == "mp_value"
    assert err["loc"] == ("spec",)


def test_workload_entry_port_range() -> None:
    data = load(WE_YAML)
    data["spec"]["ports"]["http"] = 70000
    err = one_error(WorkloadEntry, data)
    assert err["type"] == "less_than_equal"
    assert err["loc"] == ("spec", "ports", "http")
