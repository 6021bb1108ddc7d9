"""The real ``kubectl``'s explain, selectors and subresources against a real control
plane (one per module, ``--no-mesh --tls``; each test in a namespace of its own).

Each case follows what kubectl does against a Kubernetes API server: ``explain``
renders the OpenAPI v3 schema the server publishes, ``-l`` sends a label selector in
Kubernetes' set-based grammar and ``--field-selector`` a field selector, both applied
by the server to lists and watches.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from tests.conftest import ControlPlane
from tests.integration.test_kubectl import kubectl, plane

__all__ = ["plane"]  # the module's control plane fixture


def test_explain_shows_the_fields_of_meshpilots_models(plane: ControlPlane) -> None:
    route = kubectl(plane, "explain", "virtualservice.spec.http.route").stdout
    assert "KIND:       VirtualService" in route
    assert "FIELD: route <[]HTTPRouteDestination>" in route
    assert "weighted destination of an HTTP route" in route  # the model's docstring
    for field in ("destination\t<Destination> -required-", "weight\t<integer>",
                  "headers\t<Headers>"):
        assert field in route
    # every served kind explains, every field down (by short names too)
    for name in ("vs", "dr", "gw", "se", "we", "sidecar", "pa", "ap", "ra", "svc", "secret",
                 "sa", "cm", "ns", "deploy", "canary", "mt", "alertproviders", "ro"):
        assert "FIELDS:" in kubectl(plane, "explain", name, "--recursive").stdout, name
    missing = kubectl(plane, "explain", "vs.spec.htpp", check=False)
    assert missing.returncode == 1
    assert 'field "htpp" does not exist' in missing.stderr


def labelled(namespace: str, name: str, labels: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": {"k": "v"}}


def test_label_and_field_selectors_on_list_and_watch(
        plane: ControlPlane, tmp_path: Path) -> None:
    objects = [labelled("sel", "a", {"app": "web", "tier": "front"}),
               labelled("sel", "b", {"app": "api", "tier": "back"}),
               labelled("sel", "c", {"app": "db"}),
               labelled("sel-2", "a", {"app": "web"})]
    kubectl(plane, "apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def names(*args: str) -> list[str]:
        return kubectl(plane, "get", "cm", *args, "-o",
                       "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} "
                       "{end}").stdout.split()

    assert names("-n", "sel", "-l", "app in (web,api)") == ["sel/a", "sel/b"]
    assert names("-n", "sel", "-l", "app notin (web),!tier") == ["sel/c"]
    assert names("-n", "sel", "-l", "tier!=front") == ["sel/b", "sel/c"]
    assert sorted(names("-A", "-l", "app=web")) == ["sel-2/a", "sel/a"]
    assert names("-A", "--field-selector", "metadata.name=a,metadata.namespace!=sel") == [
        "sel-2/a"]
    bad = kubectl(plane, "get", "cm", "-n", "sel", "-l", "app in web", check=False)
    assert bad.returncode == 1
    assert "unable to parse requirement" in bad.stderr or "label selector" in bad.stderr
    refused = kubectl(plane, "get", "cm", "-A", "--field-selector", "data.k=v", check=False)
    assert "only metadata.name and metadata.namespace" in refused.stderr
    kubectl(plane, "delete", "-f", "-", input=yaml.safe_dump_all(objects))
