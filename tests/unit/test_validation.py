"""Validation through ``plan_apply``: one test per rule, each checking code, file, line, path."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml
from tests.builders import destination_rule, route_to, to_yaml, virtual_service

from meshpilot.api.hosts import fqdn
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import KINDS
from meshpilot.validation import ALL_CODES, Diagnostic, Plan, StateObject, plan_apply
from meshpilot.validation.codes import Severity

DOCS = Path(__file__).resolve().parents[2] / "docs" / "diagnostics.md"
NET = "networking.istio.io"


def plan(*texts: str, file: str = "f.yaml", existing: list[StateObject] | None = None) -> Plan:
    """Apply the given YAML texts, each a separate document of one file."""
    text = "---\n".join(textwrap.dedent(t).lstrip("\n") for t in texts)
    return plan_apply([(file, text)], existing or [])


def only(p: Plan, code: str) -> Diagnostic:
    found = [d for d in p.diagnostics if d.code == code]
    assert len(found) == 1, [d.format() for d in p.diagnostics]
    return found[0]


def refused(p: Plan, code: str, line: int, path: str) -> Diagnostic:
    """The one ``code`` diagnostic of an apply of f.yaml that is refused whole: at
    ``line`` and field ``path``, and no object applied."""
    d = only(p, code)
    assert (d.file, d.line, d.path) == ("f.yaml", line, path), d.format()
    assert p.objects == []
    return d


def codes_of(p: Plan) -> list[str]:
    return [d.code for d in p.diagnostics]


def labels(p: Plan) -> list[str]:
    return [o.label for o in p.objects]


REVIEWS_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
"""


def reviews_vs(rest: str) -> str:
    """VirtualService ``reviews`` (hosts [reviews]) whose spec goes on with ``rest``,
    YAML written at the spec's own level (``http:`` ...)."""
    return REVIEWS_VS + textwrap.indent(textwrap.dedent(rest).lstrip("\n"), "  ")


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of dedented ``text`` containing ``needle``."""
    lines = textwrap.dedent(text).lstrip("\n").splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def vs_doc(
    name: str = "reviews",
    host: str = "reviews",
    subset: str | None = None,
    namespace: str | None = None,
    gateways: list[str] | None = None,
) -> str:
    return to_yaml(virtual_service(name, hosts=[host], http=[route_to(host, subset)],
                                   gateways=gateways, namespace=namespace))


def dr_doc(
    name: str = "reviews",
    host: str = "reviews",
    subsets: dict[str, dict[str, str]] | None = None,
    namespace: str | None = None,
) -> str:
    return to_yaml(destination_rule(host, name=name, subsets=subsets, namespace=namespace))


SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""

DEPLOYMENT_V1 = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
spec:
  selector: {matchLabels: {app: reviews}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec:
      containers: [{name: app, image: reviews:1}]
"""


# --------------------------------------------------------------------------- document


def test_parse_error_mp0001() -> None:
    p = plan_apply([("bad.yaml", "kind: A\nspec: [1, 2\nmetadata: {}\n")])
    assert not p.ok
    d = only(p, "MP0001")
    assert d.severity == Severity.ERROR
    assert (d.file, d.line, d.column) == ("bad.yaml", 3, 9)
    assert "invalid YAML" in d.message
    assert p.objects == []


def test_parse_error_in_one_file_blocks_the_other() -> None:
    good = ("good.yaml", SERVICE)
    p = plan_apply([good, ("bad.json", '{"kind": \n}')])
    assert not p.ok
    d = only(p, "MP0001")
    assert (d.file, d.line) == ("bad.json", 2)
    assert "invalid JSON" in d.message


def test_control_character_is_parse_error() -> None:
    p = plan_apply([("ctl.yaml", "kind: A\n\x00\n")])
    d = only(p, "MP0001")
    assert (d.file, d.line, d.column) == ("ctl.yaml", 2, 1)
    assert p.objects == []


def test_duplicate_key_is_parse_error() -> None:
    p = plan("kind: A\nkind: B\n")
    d = only(p, "MP0001")
    assert (d.file, d.line, d.column) == ("f.yaml", 2, 1)
    assert "line 1" in d.message


def test_not_a_mapping_mp0002() -> None:
    p = plan(SERVICE, "just a string\n")
    d = only(p, "MP0002")
    assert (d.file, d.line, d.path) == ("f.yaml", 9, "")
    assert "mapping" in d.message
    assert not p.ok
    assert labels(p) == ["Service default/reviews"]


def test_missing_kind_mp0003() -> None:
    text = """
    apiVersion: v1
    metadata: {name: x}
    """
    d = refused(plan(text), "MP0003", 1, "")
    assert "kind" in d.message and "apiVersion" not in d.message


def test_kind_not_a_string_mp0003() -> None:
    p = plan("apiVersion: v1\nkind: [Service]\nmetadata: {name: x}\n")
    assert "kind" in only(p, "MP0003").message


def test_unknown_kind_mp0004() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: VirtualServise
    metadata: {name: x}
    """
    d = refused(plan(text), "MP0004", 2, "kind")
    assert "VirtualServise" in d.message
    assert "did you mean VirtualService" in d.message
    for info in KINDS:
        assert info.kind in d.message


def test_unknown_api_version_mp0004() -> None:
    text = """
    apiVersion: networking.istio.io/v2
    kind: VirtualService
    metadata: {name: x}
    """
    d = refused(plan(text), "MP0004", 1, "apiVersion")
    for v in (
        "networking.istio.io/v1alpha3",
        "networking.istio.io/v1beta1",
        "networking.istio.io/v1",
    ):
        assert v in d.message


MINIMAL_SPECS = {
    "VirtualService": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "r"}}]}]},
    "DestinationRule": {"host": "reviews"},
    "Gateway": {"servers": [{"port": {"number": 80, "protocol": "HTTP"}, "hosts": ["*"]}]},
    "ServiceEntry": {"hosts": ["api.example.com"], "resolution": "DNS"},
    "WorkloadEntry": {"address": "10.0.0.1"},
    "PeerAuthentication": {"mtls": {"mode": "STRICT"}},
    "AuthorizationPolicy": {},
}

USER_API_VERSIONS = [
    (kind, f"{group}/{version}")
    for group, versions, kinds in (
        (
            NET,
            ("v1alpha3", "v1beta1", "v1"),
            ("VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "WorkloadEntry"),
        ),
        ("security.istio.io", ("v1beta1", "v1"), ("PeerAuthentication", "AuthorizationPolicy")),
    )
    for version in versions
    for kind in kinds
]


@pytest.mark.parametrize(("kind", "api_version"), USER_API_VERSIONS)
def test_every_user_api_version_is_accepted(kind: str, api_version: str) -> None:
    body = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": MINIMAL_SPECS[kind],
    }
    p = plan(yaml.safe_dump(body))
    assert p.ok, [d.format() for d in p.errors]
    assert labels(p) == [f"{kind} default/x"]
    assert "MP0004" not in codes_of(p)


def test_misspelt_field_mp0010() -> None:
    text = reviews_vs("""
    http:
    - route:
      - destination: {host: reviews}
        weight: 90
      - destination: {host: reviews}
        weigth: 10
    """)
    p = plan(text)
    d = only(p, "MP0010")
    assert (d.file, d.line, d.column) == ("f.yaml", line_of(text, "weigth"), 7)
    assert d.path == "spec.http[0].route[1].weigth"
    assert "did you mean 'weight'" in d.message
    assert "valid fields here: destination, headers, weight" in d.message
    assert d.object == "VirtualService default/reviews"
    assert p.objects == []


def test_unknown_top_level_field_mp0010() -> None:
    p = plan("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspek: {}\n")
    d = only(p, "MP0010")
    assert (d.line, d.path) == (4, "spek")
    assert "did you mean 'spec'" in d.message


def test_missing_required_field_mp0011() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: reviews}
    spec:
      trafficPolicy: {}
    """
    p = plan(text)
    d = only(p, "MP0011")
    assert d.path == "spec.host"
    # reported where its parent (spec) starts
    assert (d.file, d.line) == ("f.yaml", line_of(text, "spec:"))
    assert "'host'" in d.message
    assert p.objects == []


def test_missing_metadata_name_mp0011() -> None:
    p = plan("apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\nspec: {}\n")
    d = only(p, "MP0011")
    assert (d.line, d.path) == (3, "metadata.name")


def test_wrong_type_mp0012() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews}
    spec:
      hosts: reviews
      http:
      - route:
        - destination: {host: reviews}
          weight: heavy
    """
    p = plan(text)
    diags = {d.path: d for d in p.errors}
    assert set(diags) == {"spec.hosts", "spec.http[0].route[0].weight"}
    assert all(d.code == "MP0012" for d in diags.values())
    assert diags["spec.hosts"].line == line_of(text, "hosts:")
    weight = diags["spec.http[0].route[0].weight"]
    assert weight.line == line_of(text, "weight:")
    assert "'heavy'" in weight.message
    assert p.objects == []


@pytest.mark.parametrize(
    ("snippet", "path", "needle"),
    [
        (
            """
            http:
            - route:
              - destination: {host: reviews}
                weight: -5
            """,
            "spec.http[0].route[0].weight",
            "weight:",
        ),
        (
            """
            http:
            - route:
              - destination: {host: reviews}
              fault:
                abort:
                  httpStatus: 503
                  percentage: {value: 101}
            """,
            "spec.http[0].fault.abort.percentage.value",
            "percentage:",
        ),
        (
            """
            http:
            - route:
              - destination: {host: reviews}
              fault:
                delay:
                  fixedDelay: 5s
                  percentage:
                    value: 100.5
            """,
            "spec.http[0].fault.delay.percentage.value",
            "value:",
        ),
        (
            """
            http:
            - route:
              - destination: {host: reviews}
              mirror: {host: shadow}
              mirrorPercentage:
                value: 101
            """,
            "spec.http[0].mirrorPercentage.value",
            "value:",
        ),
        (
            """
            http:
            - route:
              - destination:
                  host: reviews
                  port:
                    number: 70000
            """,
            "spec.http[0].route[0].destination.port.number",
            "number:",
        ),
    ],
)
def test_out_of_range_mp0013(snippet: str, path: str, needle: str) -> None:
    text = reviews_vs(snippet)
    refused(plan_apply([("f.yaml", text)]), "MP0013", line_of(text, needle), path)


def test_gateway_port_out_of_range_mp0013() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: gw}
    spec:
      servers:
      - port:
          number: 70000
          protocol: HTTP
        hosts: ["*"]
    """
    p = plan(text)
    d = only(p, "MP0013")
    assert (d.line, d.path) == (line_of(text, "70000"), "spec.servers[0].port.number")
    assert "70000" in d.message


def test_bad_duration_mp0014() -> None:
    text = reviews_vs("""
    http:
    - route:
      - destination: {host: reviews}
      timeout: 10x
    """)
    d = refused(plan(text), "MP0014", line_of(text, "timeout"), "spec.http[0].timeout")
    assert "'10x'" in d.message


def test_bad_duration_in_destination_rule_mp0014() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: reviews}
    spec:
      host: reviews
      trafficPolicy:
        outlierDetection:
          baseEjectionTime: 3 minutes
    """
    d = only(plan(text), "MP0014")
    assert d.path == "spec.trafficPolicy.outlierDetection.baseEjectionTime"
    assert d.line == line_of(text, "baseEjectionTime")


def test_regex_lookahead_and_backreference_mp0015() -> None:
    text = reviews_vs(r"""
    http:
    - match:
      - uri:
          regex: "/api/(?=v1).*"
        headers:
          x-user:
            regex: '(a+)\1'
      route:
      - destination: {host: reviews}
    """)
    p = plan(text)
    found = {d.path: d for d in p.errors}
    assert set(found) == {
        "spec.http[0].match[0].uri.regex",
        "spec.http[0].match[0].headers.x-user.regex",
    }
    assert all(d.code == "MP0015" for d in found.values())
    assert found["spec.http[0].match[0].uri.regex"].line == line_of(text, "/api/")
    assert found["spec.http[0].match[0].headers.x-user.regex"].line == line_of(text, "(a+)")
    assert "RE2" in found["spec.http[0].match[0].uri.regex"].message
    assert p.objects == []


def test_valid_re2_regex_is_accepted() -> None:
    text = reviews_vs(r"""
    http:
    - match:
      - uri: {regex: '^/api/v[0-9]+/(users|items)/\d+$'}
      route:
      - destination: {host: reviews}
    """)
    assert not plan(text).errors


def test_all_zero_weights_mp0016() -> None:
    text = reviews_vs("""
    http:
    - route:
      - destination: {host: reviews, subset: v1}
        weight: 0
      - destination: {host: reviews, subset: v2}
    """)
    d = refused(plan(text), "MP0016", line_of(text, "- route:"), "spec.http[0].route")
    assert "weight 0" in d.message


def test_single_destination_without_weight_is_fine() -> None:
    assert "MP0016" not in codes_of(plan(vs_doc()))


def test_bad_enum_value_mp0017() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: reviews}
    spec:
      host: reviews
      trafficPolicy:
        loadBalancer:
          simple: FASTEST
    """
    p = plan(text)
    d = only(p, "MP0017")
    assert d.path == "spec.trafficPolicy.loadBalancer.simple"
    assert d.line == line_of(text, "FASTEST")
    assert "ROUND_ROBIN" in d.message and "LEAST_REQUEST" in d.message
    assert p.objects == []


def test_duplicate_object_mp0018() -> None:
    p = plan(SERVICE, SERVICE)
    d = only(p, "MP0018")
    assert (d.file, d.line) == ("f.yaml", 9)
    assert d.object == "Service default/reviews"
    assert "f.yaml:1" in d.message
    assert not p.ok
    assert labels(p) == ["Service default/reviews"]


def test_duplicate_object_across_files_mp0018() -> None:
    p = plan_apply([("a.yaml", SERVICE), ("b.yaml", SERVICE)])
    d = only(p, "MP0018")
    assert d.file == "b.yaml"
    assert "a.yaml" in d.message


def test_same_name_in_other_namespace_is_not_duplicate() -> None:
    other = SERVICE.replace("name: reviews", "name: reviews\n  namespace: other")
    p = plan(SERVICE, other)
    assert "MP0018" not in codes_of(p)
    assert labels(p) == ["Service default/reviews", "Service other/reviews"]


def test_file_with_any_error_applies_nothing() -> None:
    bad = DEPLOYMENT_V1.replace("image: reviews:1", "image: reviews:1, imag: x")
    p = plan(SERVICE, bad)
    assert not p.ok
    d = only(p, "MP0010")
    assert d.line == 18
    assert "Deployment default/reviews-v1" not in labels(p)
    # cross-object checks do not run while a document is broken
    assert all(c.startswith("MP00") for c in codes_of(p))


# --------------------------------------------------------------------------- cross-object


def test_unknown_subset_mp1001() -> None:
    text = vs_doc(subset="v3")
    p = plan(text, dr_doc(subsets={"v1": {"version": "v1"}, "v2": {"version": "v2"}}))
    d = only(p, "MP1001")
    assert d.severity == Severity.ERROR
    assert (d.file, d.line) == ("f.yaml", line_of(text, "subset: v3"))
    assert d.path == "spec.http[0].route[0].destination.subset"
    assert "'v3'" in d.message and "v1, v2" in d.message
    assert not p.ok


def test_unknown_subset_without_any_rule_mp1001() -> None:
    p = plan(vs_doc(subset="v1"))
    d = only(p, "MP1001")
    assert "none" in d.message
    assert not p.ok


@pytest.mark.parametrize("vs_first", [True, False])
def test_vs_and_dr_in_one_apply_in_either_order(vs_first: bool) -> None:
    vs, dr = vs_doc(subset="v1"), dr_doc(subsets={"v1": {"version": "v1"}})
    p = plan(*((vs, dr) if vs_first else (dr, vs)))
    assert "MP1001" not in codes_of(p)
    assert p.ok, [d.format() for d in p.errors]
    assert sorted(labels(p)) == [
        "DestinationRule default/reviews",
        "VirtualService default/reviews",
    ]


def test_vs_subset_defined_by_existing_dr() -> None:
    body = yaml.safe_load(dr_doc(subsets={"v1": {"version": "v1"}}))
    body["metadata"]["namespace"] = "default"
    existing = [StateObject(ObjectKey(NET, "DestinationRule", "default", "reviews"), body)]
    p = plan(vs_doc(subset="v1"), existing=existing)
    assert p.ok, [d.format() for d in p.errors]
    assert labels(p) == ["VirtualService default/reviews"]


def test_vs_subset_defined_by_dr_in_other_namespace_with_fqdn() -> None:
    p = plan(
        vs_doc(subset="v1", host="reviews.prod.svc.cluster.local", namespace="web"),
        dr_doc(subsets={"v1": {}}, namespace="prod"),
    )
    assert "MP1001" not in codes_of(p)


def test_dr_for_another_host_does_not_count() -> None:
    p = plan(vs_doc(subset="v1"), dr_doc(name="ratings", host="ratings", subsets={"v1": {}}))
    d = only(p, "MP1001")
    assert d.path == "spec.http[0].route[0].destination.subset"
    # a short name is relative to the namespace: reviews in ns other is another host
    p = plan(vs_doc(subset="v1"), dr_doc(subsets={"v1": {}}, namespace="other"))
    assert "MP1001" in codes_of(p)


def test_two_virtual_services_claim_one_host_mp1002() -> None:
    first = vs_doc(name="a")
    second = vs_doc(name="b")
    p = plan(first, second)
    d = only(p, "MP1002")
    assert d.path == "spec.hosts[0]"
    assert d.object == "VirtualService default/b"
    assert d.line == line_of(first, "- reviews") + len(first.splitlines()) + 1
    assert "reviews.default.svc.cluster.local" in d.message
    assert "default/a" in d.message
    assert not p.ok


def test_host_conflict_across_namespaces_with_fqdn_mp1002() -> None:
    short = vs_doc(name="a", namespace="prod")  # reviews → reviews.prod.svc.cluster.local
    full = vs_doc(name="b", namespace="web", host="reviews.prod.svc.cluster.local")
    p = plan(short, full)
    d = only(p, "MP1002")
    assert "reviews.prod.svc.cluster.local" in d.message
    # the same short name in two namespaces is two hosts
    p = plan(vs_doc(name="a", namespace="prod"), vs_doc(name="b", namespace="web"))
    assert "MP1002" not in codes_of(p)


def test_host_conflict_with_existing_vs_mp1002() -> None:
    body = yaml.safe_load(vs_doc(name="a"))
    existing = [StateObject(ObjectKey(NET, "VirtualService", "default", "a"), body)]
    p = plan(vs_doc(name="b"), existing=existing)
    d = only(p, "MP1002")
    assert (d.file, d.path) == ("f.yaml", "spec.hosts[0]")
    # re-applying the existing object itself is not a conflict
    assert "MP1002" not in codes_of(plan(vs_doc(name="a"), existing=existing))


def test_no_host_conflict_when_one_is_bound_only_to_a_gateway() -> None:
    gateway = """
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: public}
    spec:
      servers:
      - port: {number: 80, protocol: HTTP}
        hosts: ["*"]
    """
    p = plan(vs_doc(name="a"), vs_doc(name="b", gateways=["public"]), gateway)
    assert "MP1002" not in codes_of(p)
    assert p.ok
    # bound to the gateway and to the mesh: conflicts again
    p = plan(vs_doc(name="a"), vs_doc(name="b", gateways=["public", "mesh"]), gateway)
    assert "MP1002" in codes_of(p)


def test_unknown_host_warning_mp2001() -> None:
    text = vs_doc()
    p = plan(text)
    d = only(p, "MP2001")
    assert d.severity == Severity.WARNING
    assert d.path == "spec.http[0].route[0].destination.host"
    assert (d.file, d.line) == ("f.yaml", line_of(text, "host: reviews"))
    assert "reviews.default.svc.cluster.local" in d.message
    assert p.ok  # a warning does not block the apply
    assert labels(p) == ["VirtualService default/reviews"]


def test_service_makes_unknown_host_go_away() -> None:
    p = plan(vs_doc(), SERVICE)
    assert p.diagnostics == []
    assert p.ok


def test_existing_service_makes_unknown_host_go_away() -> None:
    body = yaml.safe_load(SERVICE)
    existing = [StateObject(ObjectKey("", "Service", "default", "reviews"), body)]
    assert plan(vs_doc(), existing=existing).diagnostics == []


@pytest.mark.parametrize("entry_host", ["api.example.com", "*.example.com"])
def test_service_entry_host_makes_unknown_host_go_away(entry_host: str) -> None:
    entry = f"""
    apiVersion: networking.istio.io/v1beta1
    kind: ServiceEntry
    metadata: {{name: external}}
    spec:
      hosts: ["{entry_host}"]
      ports: [{{number: 443, name: https, protocol: TLS}}]
      resolution: DNS
      endpoints: [{{address: egress.example.net}}]
    """
    p = plan(vs_doc(host="api.example.com"), entry)
    assert "MP2001" not in codes_of(p)
    assert p.ok
    # a wildcard does not cover the bare domain or other domains
    p = plan(vs_doc(host="api.example.org"), entry)
    assert "MP2001" in codes_of(p)


def test_workload_entry_makes_unknown_host_go_away() -> None:
    entry = """
    apiVersion: networking.istio.io/v1
    kind: WorkloadEntry
    metadata: {name: reviews-vm}
    spec:
      address: 10.0.0.7
      labels: {app: reviews}
    """
    assert "MP2001" not in codes_of(plan(vs_doc(), entry))


def test_subset_selects_no_workload_mp2002() -> None:
    dr = dr_doc(subsets={"v1": {"version": "v1"}, "v2": {"version": "v2"}})
    p = plan(SERVICE, dr, DEPLOYMENT_V1)
    d = only(p, "MP2002")
    assert d.severity == Severity.WARNING
    assert d.path == "spec.subsets[1].labels"
    offset = len(textwrap.dedent(SERVICE).lstrip("\n").splitlines()) + 1
    assert d.line == offset + line_of(dr, "version: v2") - 1
    assert "'v2'" in d.message and "app=reviews,version=v2" in d.message
    assert p.ok


def test_subset_matching_deployment_template_labels_no_warning() -> None:
    dr = dr_doc(subsets={"v1": {"version": "v1"}})
    p = plan(SERVICE, dr, DEPLOYMENT_V1)
    assert p.diagnostics == []
    # without the Deployment, v1 selects nothing
    assert codes_of(plan(SERVICE, dr)) == ["MP2002"]
    # a Deployment in another namespace does not count
    elsewhere = DEPLOYMENT_V1.replace("name: reviews-v1", "name: reviews-v1\n  namespace: other")
    assert codes_of(plan(SERVICE, dr, elsewhere)) == ["MP2002"]


def test_gateway_not_found_mp2004() -> None:
    text = vs_doc(gateways=["istio-system/public"])
    p = plan(text, SERVICE)
    d = only(p, "MP2004")
    assert d.severity == Severity.WARNING
    assert d.path == "spec.gateways[0]"
    assert d.line == line_of(text, "istio-system/public")
    assert "istio-system/public" in d.message
    assert p.ok
    gateway = """
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: public, namespace: istio-system}
    spec:
      servers:
      - port: {number: 80, protocol: HTTP}
        hosts: ["*"]
    """
    assert plan(text, SERVICE, gateway).diagnostics == []


# --------------------------------------------------------------------------- hosts


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        ("myapp", "default", "myapp.default.svc.cluster.local"),
        ("myapp", "prod", "myapp.prod.svc.cluster.local"),
        ("myapp.other", "default", "myapp.other"),
        ("myapp.other.svc.cluster.local", "default", "myapp.other.svc.cluster.local"),
        ("api.example.com", "default", "api.example.com"),
        ("*.example.com", "default", "*.example.com"),
        ("*", "default", "*"),
    ],
)
def test_fqdn(host: str, namespace: str, expected: str) -> None:
    assert fqdn(host, namespace) == expected


# --------------------------------------------------------------------------- codes


def test_codes_are_unique_and_well_formed() -> None:
    numbers = [c.code for c in ALL_CODES]
    assert len(numbers) == len(set(numbers))
    assert len({c.title for c in ALL_CODES}) == len(ALL_CODES)
    for c in ALL_CODES:
        assert re.fullmatch(r"MP\d{4}", c.code)
        assert c.title
        expected = Severity.WARNING if c.code.startswith("MP2") else Severity.ERROR
        assert c.severity == expected, c


def test_every_code_is_documented() -> None:
    assert DOCS.exists(), f"{DOCS} is missing"
    text = DOCS.read_text(encoding="utf-8")
    missing = [c.code for c in ALL_CODES if c.code not in text]
    assert not missing, f"codes not documented in docs/diagnostics.md: {missing}"


CANARY = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: reviews}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: reviews}
  service: {port: 9080}
"""


@pytest.mark.parametrize("host", ["reviews", "reviews-primary", "reviews-canary"])
def test_canary_services_are_known_before_they_exist(host: str) -> None:
    assert "MP2001" not in codes_of(plan(vs_doc(host=host), CANARY))
    assert "MP2001" in codes_of(plan(vs_doc(host=host)))


def test_canary_service_name_overrides_the_target_name() -> None:
    named = CANARY.replace("port: 9080", "port: 9080, name: ratings")
    assert "MP2001" not in codes_of(plan(vs_doc(host="ratings-canary"), named))
    assert "MP2001" in codes_of(plan(vs_doc(host="reviews-canary"), named))
