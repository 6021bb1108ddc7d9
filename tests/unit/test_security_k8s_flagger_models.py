"""Typed models for Istio security, Kubernetes Service/Deployment and Flagger kinds."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from tests.conftest import validation_errors

from meshpilot.api.flagger import Canary, MetricTemplate
from meshpilot.api.kubernetes import Deployment, Service
from meshpilot.api.security import AuthorizationPolicy, PeerAuthentication


def load(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)


def first(model: type, doc: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    err = validation_errors(model, doc)[0]
    return err["type"], tuple(err["loc"])


def dump(obj: Any) -> dict[str, Any]:
    return obj.model_dump(by_alias=True, exclude_none=True)


# --- Istio security -------------------------------------------------------------------

PEER_AUTH = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: finance
  namespace: foo
spec:
  selector:
    matchLabels:
      app: finance
  mtls:
    mode: STRICT
  portLevelMtls:
    "8080":
      mode: DISABLE
"""

AUTHZ = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    - source:
        namespaces: ["dev"]
        notIpBlocks: ["10.0.0.0/8"]
        remoteIpBlocks: ["203.0.113.4"]
    to:
    - operation:
        methods: ["GET"]
        notPaths: ["/admin/*"]
        ports: ["8080"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
"""


def test_peer_authentication_parses_and_round_trips() -> None:
    doc = load(PEER_AUTH)
    pa = PeerAuthentication.model_validate(doc)
    assert pa.spec.mtls is not None and pa.spec.mtls.mode == "STRICT"
    assert pa.spec.port_level_mtls is not None
    assert pa.spec.port_level_mtls["8080"].mode == "DISABLE"
    assert dump(pa)["spec"] == doc["spec"]


def test_peer_authentication_rejects_bad_mode_and_port_key() -> None:
    doc = load(PEER_AUTH)
    doc["spec"]["mtls"]["mode"] = "strict"
    assert first(PeerAuthentication, doc) == ("literal_error", ("spec", "mtls", "mode"))

    doc = load(PEER_AUTH)
    doc["spec"]["portLevelMtls"] = {"70000": {"mode": "DISABLE"}}
    assert first(PeerAuthentication, doc) == ("mp_value", ("spec", "portLevelMtls"))


def test_port_level_mtls_needs_selector() -> None:
    doc = load(PEER_AUTH)
    del doc["spec"]["selector"]
    assert first(PeerAuthentication, doc) == ("mp_value", ("spec",))


def test_authorization_policy_parses_and_aliases_round_trip() -> None:
    doc = load(AUTHZ)
    ap = AuthorizationPolicy.model_validate(doc)
    rule = ap.spec.rules[0]
    assert rule.from_ is not None and rule.from_[1].source.not_ip_blocks == ["10.0.0.0/8"]
    assert rule.from_[1].source.remote_ip_blocks == ["203.0.113.4"]
    out = dump(ap)
    assert "from" in out["spec"]["rules"][0]  # `from_` is written back as `from`
    assert out["spec"] == doc["spec"]


def test_authorization_policy_empty_spec_is_allowed() -> None:
    doc = load("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: foo}
spec: {}
""")
    ap = AuthorizationPolicy.model_validate(doc)
    assert ap.spec.action == "ALLOW" and ap.spec.rules is None
    del doc["spec"]
    assert AuthorizationPolicy.model_validate(doc).spec.action == "ALLOW"


def test_authorization_policy_custom_with_provider() -> None:
    doc = load("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: istio-system}
spec:
  selector: {matchLabels: {app: istio-ingressgateway}}
  action: CUSTOM
  provider: {name: my-ext-authz}
  rules:
  - to:
    - operation: {paths: ["/admin/*"]}
""")
    assert AuthorizationPolicy.model_validate(doc).spec.provider.name == "my-ext-authz"
    del doc["spec"]["provider"]
    assert first(AuthorizationPolicy, doc) == ("mp_value", ("spec",))


def test_authorization_policy_rejections() -> None:
    doc = load(AUTHZ)
    doc["spec"]["rules"][0]["from"][0]["source"]["principal"] = ["x"]
    assert first(AuthorizationPolicy, doc) == (
        "extra_forbidden",
        ("spec", "rules", 0, "from", 0, "source", "principal"),
    )

    doc = load(AUTHZ)
    doc["spec"]["action"] = "REJECT"
    assert first(AuthorizationPolicy, doc) == ("literal_error", ("spec", "action"))

    doc = load(AUTHZ)
    del doc["spec"]["rules"][0]["when"][0]["values"]
    assert first(AuthorizationPolicy, doc) == ("mp_value", ("spec", "rules", 0, "when", 0))


# --- Kubernetes -----------------------------------------------------------------------

SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: reviews
  labels: {app: reviews, service: reviews}
spec:
  type: ClusterIP
  clusterIP: 10.96.0.12
  sessionAffinity: None
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
    targetPort: 9080
    appProtocol: http
  - name: grpc
    port: 9090
    targetPort: grpc-port
    protocol: TCP
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: test
  labels: {app: podinfo}
spec:
  replicas: 2
  minReadySeconds: 5
  revisionHistoryLimit: 5
  progressDeadlineSeconds: 60
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      app: podinfo
  template:
    metadata:
      labels:
        app: podinfo
        version: v1
      annotations:
        prometheus.io/scrape: "true"
    spec:
      serviceAccountName: podinfo
      terminationGracePeriodSeconds: 30
      nodeSelector: {kubernetes.io/os: linux}
      tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]
      volumes: [{name: data, emptyDir: {}}]
      securityContext: {runAsNonRoot: true}
      containers:
      - name: podinfod
        image: ghcr.io/stefanprodan/podinfo:6.0.0
        imagePullPolicy: IfNotPresent
        command: ["./podinfo", "--port=9898", "--level=info"]
        env:
        - name: PODINFO_UI_COLOR
          value: "#34577c"
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        ports:
        - name: http
          containerPort: 9898
          protocol: TCP
        - name: http-metrics
          containerPort: 9797
        livenessProbe:
          exec:
            command: [podcli, check, http, localhost:9898/healthz]
          initialDelaySeconds: 5
          timeoutSeconds: 5
        readinessProbe:
          httpGet:
            path: /readyz
            port: http
            httpHeaders: [{name: X-Probe, value: "1"}]
          periodSeconds: 3
          failureThreshold: 3
        startupProbe:
          tcpSocket: {port: 9898}
        resources:
          limits: {cpu: 2000m, memory: 512Mi}
          requests: {cpu: 100m, memory: 64Mi}
        volumeMounts: [{name: data, mountPath: /data}]
"""


def test_service_parses_with_explicit_aliases() -> None:
    doc = load(SERVICE)
    svc = Service.model_validate(doc)
    assert svc.spec.cluster_ip == "10.96.0.12"
    assert [p.target_port for p in svc.spec.ports] == [9080, "grpc-port"]
    assert svc.spec.ports[1].protocol == "TCP"
    out = dump(svc)
    assert out["spec"]["clusterIP"] == "10.96.0.12"  # to_camel would say clusterIp
    assert out["spec"]["ports"][0]["appProtocol"] == "http"
    assert Service.model_validate(out) == svc
    # The snake_case spelling to_camel would give is not the Kubernetes name.
    doc["spec"]["clusterIp"] = doc["spec"].pop("clusterIP")
    assert first(Service, doc) == ("extra_forbidden", ("spec", "clusterIp"))


def test_service_protocol_defaults_to_tcp() -> None:
    doc = load(SERVICE)
    del doc["spec"]["ports"][1]
    del doc["spec"]["ports"][0]["name"]
    assert Service.model_validate(doc).spec.ports[0].protocol == "TCP"


@pytest.mark.parametrize("port", [0, 70000])
def test_service_port_out_of_range(port: int) -> None:
    doc = load(SERVICE)
    doc["spec"]["ports"][0]["port"] = port
    err_type, loc = first(Service, doc)
    assert err_type in ("greater_than_equal", "less_than_equal")
    assert loc == ("spec", "ports", 0, "port")


def test_service_rejections() -> None:
    doc = load(SERVICE)
    doc["spec"]["ports"][0]["targetPort"] = 0
    assert first(Service, doc) == ("mp_range", ("spec", "ports", 0, "targetPort"))

    doc = load(SERVICE)
    doc["spec"]["ports"][0]["protocol"] = "HTTP"
    assert first(Service, doc) == ("literal_error", ("spec", "ports", 0, "protocol"))

    doc = load(SERVICE)
    doc["spec"]["type"] = "Headless"
    assert first(Service, doc) == ("literal_error", ("spec", "type"))

    doc = load(SERVICE)
    del doc["spec"]["ports"][1]["name"]
    assert first(Service, doc) == ("mp_value", ("spec",))

    doc = load(SERVICE)
    del doc["spec"]["ports"][0]["port"]
    assert first(Service, doc) == ("missing", ("spec", "ports", 0, "port"))


def test_deployment_parses_realistic_manifest() -> None:
    doc = load(DEPLOYMENT)
    dep = Deployment.model_validate(doc)
    pod = dep.spec.template.spec
    c = dep.containers[0]
    assert dep.spec.replicas == 2
    assert dep.spec.strategy.rolling_update.max_surge == "25%"
    assert dep.spec.strategy.rolling_update.max_unavailable == 0
    assert c.readiness_probe.http_get.port == "http"
    assert c.liveness_probe.exec.command[0] == "podcli"
    assert c.startup_probe.tcp_socket.port == 9898
    assert c.env[1].value_from is not None
    assert c.env[1].value_from.field_ref.field_path == "metadata.name"
    assert pod.volumes is not None and pod.volumes[0].empty_dir is not None
    out = dump(dep)
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 9898
    assert out["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert Deployment.model_validate(out) == dep


def test_deployment_defaults() -> None:
    doc = load(DEPLOYMENT)
    del doc["spec"]["replicas"]
    assert Deployment.model_validate(doc).spec.replicas == 1


def test_deployment_host_aliases() -> None:
    doc = load(DEPLOYMENT)
    doc["spec"]["template"]["spec"]["hostPID"] = False
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostIP"] = "0.0.0.0"
    out = dump(Deployment.model_validate(doc))
    assert out["spec"]["template"]["spec"]["hostPID"] is False
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostIP"] == "0.0.0.0"


def test_deployment_selector_mismatch() -> None:
    doc = load(DEPLOYMENT)
    doc["spec"]["selector"]["matchLabels"] = {"app": "podinfo-v2"}
    errs = validation_errors(Deployment, doc)
    assert errs[0]["type"] == "mp_value"
    assert tuple(errs[0]["loc"]) == ("spec",)
    assert "app=podinfo-v2" in errs[0]["msg"]


def test_deployment_match_expressions() -> None:
    doc = load(DEPLOYMENT)
    doc["spec"]["selector"]["matchExpressions"] = [
        {"key": "version", "operator": "In", "values": ["v1", "v2"]}
    ]
    Deployment.model_validate(doc)
    doc["spec"]["selector"]["matchExpressions"][0]["values"] = ["v3"]
    assert first(Deployment, doc) == ("mp_value", ("spec",))


def test_deployment_empty_containers() -> None:
    doc = load(DEPLOYMENT)
    doc["spec"]["template"]["spec"]["containers"] = []
    assert first(Deployment, doc) == (
        "too_short",
        ("spec", "template", "spec", "containers"),
    )


def test_deployment_misspelt_container_field() -> None:
    doc = load(DEPLOYMENT)
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["comand"] = container.pop("command")
    assert first(Deployment, doc) == (
        "extra_forbidden",
        ("spec", "template", "spec", "containers", 0, "comand"),
    )


def test_deployment_other_rejections() -> None:
    doc = load(DEPLOYMENT)
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 70000
    assert first(Deployment, doc) == (
        "less_than_equal",
        ("spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"),
    )

    doc = load(DEPLOYMENT)
    doc["spec"]["strategy"]["type"] = "BlueGreen"
    assert first(Deployment, doc) == ("literal_error", ("spec", "strategy", "type"))

    doc = load(DEPLOYMENT)
    doc["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = "lots"
    assert first(Deployment, doc) == (
        "mp_value",
        ("spec", "strategy", "rollingUpdate", "maxSurge"),
    )

    doc = load(DEPLOYMENT)
    doc["spec"]["replicas"] = -1
    assert first(Deployment, doc) == ("greater_than_equal", ("spec", "replicas"))

    doc = load(DEPLOYMENT)
    probe = doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["tcpSocket"] = {"port": 9898}
    assert first(Deployment, doc) == (
        "mp_value",
        ("spec", "template", "spec", "containers", 0, "readinessProbe"),
    )


# --- Flagger --------------------------------------------------------------------------

CANARY = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  provider: istio
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  autoscalerRef:
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    name: podinfo
  progressDeadlineSeconds: 60
  service:
    port: 9898
    targetPort: 9898
    portName: http
    gateways:
    - public-gateway.istio-system.svc.cluster.local
    hosts:
    - app.example.com
    trafficPolicy:
      tls:
        mode: DISABLE
    retries:
      attempts: 3
      perTryTimeout: 1s
      retryOn: "gateway-error,connect-failure,refused-stream"
    primary:
      labels: {tier: stable}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
    - name: request-success-rate
      thresholdRange:
        min: 99
      interval: 1m
    - name: request-duration
      thresholdRange:
        max: 500
      interval: 30s
    - name: "404s percentage"
      templateRef:
        name: not-found-percentage
        namespace: istio-system
      templateVariables:
        route: /api
      thresholdRange:
        max: 5
      interval: 1m
    webhooks:
    - name: acceptance-test
      type: pre-rollout
      url: http://flagger-loadtester.test/
      timeout: 30s
      metadata:
        type: bash
        cmd: "curl -sd 'test' http://podinfo-canary:9898/token | grep token"
    - name: load-test
      url: http://flagger-loadtester.test/
      timeout: 5s
      metadata:
        cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"
"""

METRIC_TEMPLATE = """
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: not-found-percentage
  namespace: istio-system
spec:
  provider:
    type: prometheus
    address: http://prometheus.istio-system:9090
  query: |
    100 - sum(
        rate(
            istio_requests_total{
              reporter="destination",
              destination_workload_namespace="{{ namespace }}",
              destination_workload="{{ target }}",
              response_code!="404"
            }[{{ interval }}]
        )
    )
"""


def canary_doc() -> dict[str, Any]:
    return load(CANARY)


def test_canary_parses_flagger_docs_example() -> None:
    doc = canary_doc()
    canary = Canary.model_validate(doc)
    analysis = canary.spec.analysis
    assert analysis is not None
    assert analysis.metrics[2].template_ref.namespace == "istio-system"
    assert analysis.webhooks[1].type == "rollout"  # the default
    assert canary.spec.progress_deadline_seconds == 60
    assert canary.spec.service.target_port == 9898
    assert canary.service_names == ("podinfo", "podinfo-primary", "podinfo-canary")
    assert analysis.weights == [10, 20, 30, 40, 50]
    assert analysis.interval_seconds == 60.0
    out = dump(canary)
    assert out["spec"]["analysis"]["stepWeight"] == 10
    assert out["spec"]["analysis"]["metrics"][0]["thresholdRange"] == {"min": 99.0}
    assert out["spec"]["service"]["portName"] == "http"
    assert Canary.model_validate(out) == canary


def test_canary_defaults() -> None:
    doc = canary_doc()
    del doc["spec"]["progressDeadlineSeconds"]
    canary = Canary.model_validate(doc)
    assert canary.spec.progress_deadline_seconds == 600
    assert canary.spec.skip_analysis is False
    assert canary.spec.service.port_discovery is False


def test_canary_accepts_legacy_canary_analysis() -> None:
    doc = canary_doc()
    doc["spec"]["canaryAnalysis"] = doc["spec"].pop("analysis")
    canary = Canary.model_validate(doc)
    assert canary.spec.analysis is not None and canary.spec.analysis.max_weight == 50
    assert "analysis" in dump(canary)["spec"]

    doc["spec"]["analysis"] = copy.deepcopy(doc["spec"]["canaryAnalysis"])
    assert first(Canary, doc) == ("mp_value", ("spec",))


def test_webhook_disable_tls_alias() -> None:
    doc = canary_doc()
    doc["spec"]["analysis"]["webhooks"][0]["disableTLS"] = True
    canary = Canary.model_validate(doc)
    assert canary.spec.analysis.webhooks[0].disable_tls is True
    assert dump(canary)["spec"]["analysis"]["webhooks"][0]["disableTLS"] is True


def test_step_weights_must_increase() -> None:
    doc = canary_doc()
    doc["spec"]["analysis"]["stepWeights"] = [1, 2, 10, 80]
    assert Canary.model_validate(doc).spec.analysis.weights == [1, 2, 10, 80]

    doc["spec"]["analysis"]["stepWeights"] = [10, 5, 20]
    assert first(Canary, doc) == ("mp_value", ("spec", "analysis", "stepWeights"))
    doc["spec"]["analysis"]["stepWeights"] = [10, 10]
    assert first(Canary, doc) == ("mp_value", ("spec", "analysis", "stepWeights"))
    doc["spec"]["analysis"]["stepWeights"] = [10, 120]
    assert first(Canary, doc) == ("mp_value", ("spec", "analysis", "stepWeights"))


def test_max_weight_over_100() -> None:
    doc = canary_doc()
    doc["spec"]["analysis"]["maxWeight"] = 101
    assert first(Canary, doc) == ("less_than_equal", ("spec", "analysis", "maxWeight"))


def test_bad_interval_duration() -> None:
    doc = canary_doc()
    doc["spec"]["analysis"]["interval"] = "10x"
    assert first(Canary, doc) == ("mp_duration", ("spec", "analysis", "interval"))

    doc = canary_doc()
    doc["spec"]["analysis"]["metrics"][0]["interval"] = "10x"
    assert first(Canary, doc) == (
        "mp_duration",
        ("spec", "analysis", "metrics", 0, "interval"),
    )


def test_unknown_webhook_type() -> None:
    doc = canary_doc()
    doc["spec"]["analysis"]["webhooks"][0]["type"] = "pre-deploy"
    assert first(Canary, doc) == (
        "literal_error",
        ("spec", "analysis", "webhooks", 0, "type"),
    )


def test_canary_match_is_istio_http_match_request() -> None:
    doc = canary_doc()
    doc["spec"]["analysis"]["iterations"] = 10
    doc["spec"]["analysis"]["match"] = [
        {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}
    ]
    assert Canary.model_validate(doc).strategy == "ab"
    doc["spec"]["analysis"]["match"] = [{"headers": {"x-canary": {"exactly": "insider"}}}]
    assert first(Canary, doc) == (
        "extra_forbidden",
        ("spec", "analysis", "match", 0, "headers", "x-canary", "exactly"),
    )
    doc["spec"]["analysis"]["match"] = [{"headers": {"x-canary": {"regex": "(?=x)"}}}]
    assert first(Canary, doc) == (
        "mp_regex",
        ("spec", "analysis", "match", 0, "headers", "x-canary", "regex"),
    )


def test_canary_other_rejections() -> None:
    doc = canary_doc()
    doc["spec"]["analysis"]["stepWieght"] = 5
    assert first(Canary, doc) == ("extra_forbidden", ("spec", "analysis", "stepWieght"))

    doc = canary_doc()
    del doc["spec"]["service"]["port"]
    assert first(Canary, doc) == ("missing", ("spec", "service", "port"))

    doc = canary_doc()
    del doc["spec"]["targetRef"]
    assert first(Canary, doc) == ("missing", ("spec", "targetRef"))

    doc = canary_doc()
    del doc["spec"]["analysis"]["webhooks"][0]["url"]
    assert first(Canary, doc) == ("missing", ("spec", "analysis", "webhooks", 0, "url"))

    doc = canary_doc()
    del doc["spec"]["analysis"]["metrics"][0]["name"]
    assert first(Canary, doc) == ("missing", ("spec", "analysis", "metrics", 0, "name"))

    doc = canary_doc()
    doc["spec"]["analysis"]["metrics"][0]["name"] = "error-rate"  # not built in, no templateRef
    assert first(Canary, doc) == ("mp_value", ("spec", "analysis", "metrics", 0))


def _with_analysis(**analysis: Any) -> Canary:
    doc = canary_doc()
    doc["spec"]["analysis"] = {"interval": "1m", "threshold": 5, **analysis}
    return Canary.model_validate(doc)


def test_strategy_detection() -> None:
    headers = [{"headers": {"x-canary": {"exact": "insider"}}}]
    assert _with_analysis(maxWeight=50, stepWeight=10).strategy == "canary"
    assert _with_analysis(iterations=10, match=headers).strategy == "ab"
    assert _with_analysis(iterations=10).strategy == "bluegreen"
    assert (
        _with_analysis(mirror=True, mirrorWeight=100, maxWeight=50, stepWeight=10).strategy
        == "mirror"
    )
    # match without iterations is not A/B in Flagger: it is still progressive shifting
    canary = _with_analysis(stepWeight=10, match=headers)
    assert canary.spec.analysis.match[0].headers["x-canary"].exact == "insider"
    assert _with_analysis(stepWeight=10, match=headers).strategy == "canary"


def test_metric_template_parses_and_rejects() -> None:
    doc = load(METRIC_TEMPLATE)
    mt = MetricTemplate.model_validate(doc)
    assert mt.spec.provider.type == "prometheus"
    assert "{{ target }}" in mt.spec.query
    doc["spec"]["provider"]["secretRef"] = {"name": "prom-auth"}
    doc["spec"]["provider"]["insecureSkipVerify"] = True
    out = dump(MetricTemplate.model_validate(doc))
    assert out["spec"]["provider"]["secretRef"] == {"name": "prom-auth"}
    assert out["spec"]["provider"]["insecureSkipVerify"] is True

    bad = load(METRIC_TEMPLATE)
    bad["spec"]["provider"]["type"] = "graphana"
    assert first(MetricTemplate, bad) == ("literal_error", ("spec", "provider", "type"))

    bad = load(METRIC_TEMPLATE)
    del bad["spec"]["query"]
    assert first(MetricTemplate, bad) == ("missing", ("spec", "query"))
