"""proxy-config tables read Envoy's /config_dump items."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from meshpilot.cli.columns import columns_for
from meshpilot.cli.mesh_commands import config_table


def cells(kind: str, items: list[dict[str, Any]]) -> list[list[str]]:
    """The rendered table's lines split into cells (columns are two spaces apart)."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(config_table(kind, items), markup=False)
    return [[cell.strip() for cell in line.split("  ") if cell.strip()]
            for line in console.export_text().splitlines()]


def test_routes_show_three_domains_and_how_many_more() -> None:
    item = {"route_config": {"name": "8080", "virtual_hosts": [
        {"name": "web", "domains": ["web", "web:8080", "web.default", "10.0.0.1", "x"],
         "routes": [{}, {}]}]}}
    assert cells("routes", [item]) == [
        ["NAME", "VIRTUAL HOST", "DOMAINS", "ROUTES"],
        ["8080", "web", "web, web:8080, web.default +2", "2"],
    ]


def test_routes_found_by_a_matcher_count_once_each() -> None:
    """A sidecar's inbound routes (one per counted caller) sit in its vhost's matcher."""
    def route(name: str) -> dict[str, Any]:
        return {"action": {"name": name, "typed_config": {"name": name}}}

    matcher = {"matcher_tree": {"exact_match_map": {"map": {
        "spiffe://cluster.local/ns/foo/sa/sleep": {"matcher": {
            "matcher_tree": {"exact_match_map": {"map": {"a": route("a|mtls")}}},
            "on_no_match": route("unknown|mtls")}}}}},
        "on_no_match": {"matcher": {
            "matcher_list": {"matchers": [{"on_match": route("unknown|mtls")}]},
            "on_no_match": route("unknown|none")}}}
    item = {"route_config": {"name": "inbound|8080||", "virtual_hosts": [
        {"name": "inbound|http|8080", "domains": ["*"], "matcher": matcher}]}}
    assert cells("routes", [item])[1] == ["inbound|8080||", "inbound|http|8080", "*", "3"]


def test_listeners_and_clusters() -> None:
    listener = {"name": "virtualOutbound", "active_state": {"listener": {"address": {
        "socket_address": {"address": "127.0.0.1", "port_value": 15001}}}}}
    assert cells("listeners", [listener])[1] == ["virtualOutbound", "127.0.0.1", "15001"]
    cluster = {"cluster": {"name": "outbound|8080|v1|web.default.svc.cluster.local"}}
    assert cells("clusters", [cluster])[1] == [
        "web.default.svc.cluster.local", "8080", "v1", "OUTBOUND", "EDS"]


def test_endpoints_one_row_per_lb_endpoint() -> None:
    item = {"endpoint_config": {"cluster_name": "outbound|8080||web", "endpoints": [
        {"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.10.0.1",
                                                         "port_value": 8080}}}},
            {"endpoint": {"address": {"socket_address": {"address": "127.10.0.2",
                                                         "port_value": 8080}}},
             "health_status": "UNHEALTHY"}]}]}}
    assert cells("endpoints", [item]) == [
        ["ENDPOINT", "STATUS", "CLUSTER"],
        ["127.10.0.1:8080", "HEALTHY", "outbound|8080||web"],
        ["127.10.0.2:8080", "UNHEALTHY", "outbound|8080||web"],
    ]


def test_an_argo_rollout_shows_its_phase_step_and_canary_weight() -> None:
    rollout = {"spec": {"replicas": 2, "strategy": {"canary": {"steps": [{}, {}, {}, {}]}}},
               "status": {"phase": "Paused", "currentStepIndex": 1,
                          "canary": {"weights": {"canary": {"weight": 20}}}}}
    assert [(title, fn(rollout)) for title, fn in columns_for("Rollout")] == [
        ("DESIRED", "2"), ("STATUS", "Paused"), ("STEP", "1/4"), ("WEIGHT", "20")]
