"""Locality settings checked at apply as Istio's validation checks them (its
``ValidateLocalityLbSetting``): refusals MP0090 / MP0091 that change nothing, and the
warning MP2060 for failover without outlier detection, which Istio also only warns about.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshpilot.validation import Plan, plan_apply


def rule(policy: dict[str, Any], subsets: list[dict[str, Any]] | None = None
         ) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": "reviews", "trafficPolicy": policy}
    if subsets is not None:
        spec["subsets"] = subsets
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "shop"}, "spec": spec}


def locality(setting: dict[str, Any], outliers: bool = True) -> dict[str, Any]:
    policy: dict[str, Any] = {"loadBalancer": {"localityLbSetting": setting}}
    if outliers:
        policy["outlierDetection"] = {"consecutive5xxErrors": 1}
    return rule(policy)


def plan(*docs: dict[str, Any]) -> Plan:
    return plan_apply([("dr.yaml", yaml.safe_dump_all(docs, sort_keys=False))], [])


def found(p: Plan) -> list[tuple[str, str]]:
    return [(d.code, d.path or "") for d in p.diagnostics
            if d.code in ("MP0090", "MP0091", "MP2060")]


SETTING = "spec.trafficPolicy.loadBalancer.localityLbSetting"
REFUSED = [
    ({"distribute": [{"from": "r1/*", "to": {"r1/*": 100}}],
      "failover": [{"from": "r1", "to": "r2"}]}, f"{SETTING}.distribute"),
    ({"failover": [{"from": "r1", "to": "r2"}],
      "failoverPriority": ["topology.kubernetes.io/region"]},
     f"{SETTING}.failoverPriority.topology.kubernetes.io/region"),
    ({"distribute": [{"from": "r1/*", "to": {"r1/*": 80, "r2/*": 10}}]},
     f"{SETTING}.distribute[0].to"),
    ({"distribute": [{"from": "r1/*", "to": {"r1/*": 0, "r2/*": 100}}]},
     f"{SETTING}.distribute[0].to.r1/*"),
    ({"distribute": [{"from": "r1/*", "to": {"r1/z1": 50, "r1/*": 50}}]},
     f"{SETTING}.distribute[0].to.r1/*"),
    ({"distribute": [{"from": "r1/*/z", "to": {"r1": 100}}]},
     f"{SETTING}.distribute[0].from"),
    ({"distribute": [{"from": "r1//z", "to": {"r1": 100}}]},
     f"{SETTING}.distribute[0].from"),
    ({"failover": [{"from": "r1", "to": "r1"}]}, f"{SETTING}.failover[0].to"),
    ({"failover": [{"from": "r1/z1", "to": "r2"}]}, f"{SETTING}.failover[0].from"),
    ({"failover": [{"from": "r1", "to": "r*"}]}, f"{SETTING}.failover[0].to"),
]


@pytest.mark.parametrize(("setting", "path"), REFUSED, ids=[p for _, p in REFUSED])
def test_what_istio_refuses_is_refused_at_its_path(setting: dict[str, Any], path: str) -> None:
    p = plan(locality(setting))
    assert not p.ok
    assert ("MP0090", path) in found(p), [d.format() for d in p.diagnostics]
    (d,) = [d for d in p.diagnostics if d.code == "MP0090" and d.path == path]
    assert d.line is not None


def test_valid_settings_pass_silently() -> None:
    """The settings of Istio's "Locality failover" and "Locality weighted distribution"
    pages, written as there."""
    for setting in (
        {"enabled": True, "failover": [{"from": "region1", "to": "region2"}]},
        {"enabled": True, "distribute": [
            {"from": "region1/zone1/*", "to": {"region1/zone1/*": 70, "region1/zone2/*": 20,
                                               "region3/zone4/*": 10}}]},
        {"failoverPriority": ["topology.istio.io/network", "topology.kubernetes.io/region"]},
    ):
        p = plan(locality(setting))
        assert p.ok and found(p) == [], [d.format() for d in p.diagnostics]


def test_failover_without_outlier_detection_is_warned() -> None:
    p = plan(locality({"failover": [{"from": "r1", "to": "r2"}]}, outliers=False))
    assert p.ok  # applied: Istio accepts it too
    assert found(p) == [("MP2060", f"{SETTING}.failover")]
    assert "outlierDetection" in next(d.message for d in p.diagnostics if d.code == "MP2060")
    # a subset's failover with the rule-wide outlier detection is in force: no warning
    sub = rule({"outlierDetection": {"consecutive5xxErrors": 1}}, subsets=[
        {"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {
            "loadBalancer": {"localityLbSetting": {"failoverPriority": ["app"]}}}}])
    assert found(plan(sub)) == []
    # and a disabled setting is not warned about
    off = locality({"enabled": False, "failover": [{"from": "r1", "to": "r2"}]},
                   outliers=False)
    assert found(plan(off)) == []


@pytest.mark.parametrize("value", ["eu/*", "a/b/c/d", "/zone"])
def test_a_malformed_workload_locality_is_refused(value: str) -> None:
    entry = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
             "metadata": {"name": "vm", "namespace": "shop"},
             "spec": {"address": "10.0.0.2", "locality": value}}
    p = plan(entry)
    assert not p.ok
    assert found(p) == [("MP0091", "spec.locality")]
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
          "metadata": {"name": "api", "namespace": "shop"},
          "spec": {"hosts": ["api.example.com"], "resolution": "STATIC",
                   "ports": [{"number": 80, "name": "http"}],
                   "endpoints": [{"address": "10.0.0.1", "locality": value}]}}
    assert found(plan(se)) == [("MP0091", "spec.endpoints[0].locality")]


def test_a_wildcard_dns_entry_without_endpoints_is_refused() -> None:
    """Istio refuses hosts that are not names when DNS must resolve them (no endpoints):
    a wildcard is a pattern, not a name."""
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
          "metadata": {"name": "wiki", "namespace": "shop"},
          "spec": {"hosts": ["en.wikipedia.org", "*.wikipedia.org"], "resolution": "DNS",
                   "ports": [{"number": 80, "name": "http"}]}}
    p = plan(se)
    assert not p.ok
    assert [(d.code, d.path) for d in p.errors] == [("MP0092", "spec.hosts[1]")]
    se["spec"]["endpoints"] = [{"address": "www.wikipedia.org"}]
    assert plan(se).ok


def test_a_mesh_route_for_a_name_only_a_wildcard_covers_is_warned() -> None:
    """The covered names are routed by the pattern's routes (MP2061); routes for the
    pattern itself, for a name known exactly, or bound to a gateway are not warned."""
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
          "metadata": {"name": "wiki", "namespace": "shop"},
          "spec": {"hosts": ["*.wikipedia.org", "de.wikipedia.org"], "resolution": "DNS",
                   "ports": [{"number": 80, "name": "http"}],
                   "endpoints": [{"address": "www.wikipedia.org"}]}}

    def vs(name: str, hosts: list[str], **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"hosts": hosts, "http": [{"route": [{"destination": {
                    "host": "en.wikipedia.org"}}]}], **spec}}

    p = plan(se, vs("en", ["en.wikipedia.org"]), vs("all", ["*.wikipedia.org"]),
             vs("de", ["de.wikipedia.org"]),
             vs("edge", ["fr.wikipedia.org"], gateways=["my-gateway"]))
    warned = [(d.code, d.object, d.path) for d in p.diagnostics if d.code == "MP2061"]
    assert warned == [("MP2061", "VirtualService shop/en", "spec.hosts[0]")], warned
    # a destination to a covered name is known (it goes to the entry's cluster)
    assert "MP2001" not in {d.code for d in p.diagnostics}
