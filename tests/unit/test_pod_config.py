"""ConfigMap and Namespace kinds, what a pod reads from ConfigMaps and Secrets, and the
warnings for the pod fields the local runtime does not act on."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.builders import deployment, to_yaml

from meshpilot.api.config import ConfigMap, Namespace
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import by_name
from meshpilot.api.kubernetes import Deployment
from meshpilot.runtime.pod_config import (
    config_digest,
    config_env,
    env_value,
    missing_config,
    references,
    write_volumes,
)
from meshpilot.runtime.runtime import LocalRuntime
from meshpilot.server.api import create_app
from meshpilot.server.config_service import ConfigService
from meshpilot.store import SqliteStore
from meshpilot.validation import plan_apply

SAMPLE = Path(__file__).parent / "data" / "shop_sample.yaml"


def codes_of(plan: Any) -> list[str]:
    return [d.code for d in plan.diagnostics]


# --- kinds ------------------------------------------------------------------------------------


def test_configmap_model_keeps_text_and_binary_and_refuses_a_key_in_both() -> None:
    cm = ConfigMap.model_validate({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "c"}, "data": {"a.txt": "hi"},
                                   "binaryData": {"b.bin": "AAE="}, "immutable": True})
    assert cm.decoded() == {"a.txt": b"hi", "b.bin": b"\x00\x01"}
    plan = plan_apply([("c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
                                  "data: {k: x}\nbinaryData: {k: eA==}\n")])
    assert codes_of(plan) == ["MP0017"] and "both data and binaryData" in plan.errors[0].message
    plan = plan_apply([("c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
                                  "datta: {k: x}\n")])
    assert codes_of(plan) == ["MP0010"]


def test_namespace_is_cluster_scoped() -> None:
    ns = Namespace.model_validate({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "shop", "labels": {"team": "a"}}})
    assert ns.metadata.namespace == ""
    plan = plan_apply([("ns.yaml", "apiVersion: v1\nkind: Namespace\n"
                                   "metadata: {name: shop, namespace: default}\n")])
    assert codes_of(plan) == ["MP0017"]
    assert "cluster-scoped" in plan.diagnostics[0].message
    info = by_name("ns")
    assert not info.namespaced and info.scope("default") == ""
    assert info.object_path("default", "shop") == "/api/v1/namespaces/shop"
    assert by_name("cm").kind == "ConfigMap"


def test_namespace_injection_label_is_warned_about() -> None:
    plan = plan_apply([("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n"
                                   "  labels: {istio-injection: disabled}\n")])
    assert plan.ok and codes_of(plan) == ["MP2018"]
    assert plan.diagnostics[0].object == "Namespace x"


def test_sample_shaped_like_istios_applies_whole(store: SqliteStore) -> None:
    """Namespace, ServiceAccounts, Services, Deployments, a ConfigMap and a Secret in one
    file: every object is stored; what is not acted on is a warning, not a refusal."""
    outcome = ConfigService(store).apply([(str(SAMPLE), SAMPLE.read_text())])
    assert outcome.status == 200, [d.to_dict() for d in outcome.diagnostics]
    stored = {(o.key.kind, o.key.namespace, o.key.name) for o in store.list()}
    assert stored == {
        ("Namespace", "", "shop"), ("ConfigMap", "shop", "storefront-settings"),
        ("Secret", "shop", "storefront-db"), ("ServiceAccount", "shop", "shop-storefront"),
        ("ServiceAccount", "shop", "shop-echo"), ("Service", "shop", "storefront"),
        ("Service", "shop", "echo"), ("Deployment", "shop", "storefront-v1"),
        ("Deployment", "shop", "echo"),
    }
    warned = {(d.code, d.path) for d in outcome.diagnostics}
    assert all(d.code == "MP2017" for d in outcome.diagnostics), warned
    assert ("MP2017", "spec.template.spec.containers[0].securityContext") in warned
    assert ("MP2017", "spec.template.spec.containers[0].resources") in warned
    assert ("MP2017", "spec.template.spec.containers[0].imagePullPolicy") in warned
    secret_text = "not-a-real-password"
    assert all(secret_text not in d.message for d in outcome.diagnostics)
    again = ConfigService(store).apply([(str(SAMPLE), SAMPLE.read_text())])
    assert {r["action"] for r in again.results} == {"unchanged"}


def test_api_serves_a_namespace_at_its_cluster_scoped_path(store: SqliteStore) -> None:
    service = ConfigService(store)
    client = TestClient(create_app(service, "t", {}), headers={"Authorization": "Bearer t"})
    r = client.post("/api/v1/namespaces", json={"metadata": {"name": "shop"}})
    assert r.status_code == 200, r.text
    r = client.get("/api/v1/namespaces/shop")
    assert r.status_code == 200 and r.json()["metadata"]["name"] == "shop"
    assert [i["metadata"]["name"] for i in client.get("/api/v1/namespaces").json()["items"]] \
        == ["shop"]
    assert client.get("/api/v1/namespaces/default/namespaces/shop").status_code == 404
    assert client.get("/api/v1/configmaps/x").status_code == 404  # namespaced kind
    r = client.post("/apis/meshpilot.io/v1/delete",
                    json={"keys": [{"kind": "Namespace", "namespace": "default", "name": "shop"}]})
    assert r.status_code == 200, r.text
    assert store.get(ObjectKey("", "Namespace", "", "shop")) is None


# --- rules --------------------------------------------------------------------------------------


def app(**container: Any) -> dict[str, Any]:
    return {"name": "app", "command": ["sleep", "60"], **container}


def test_pod_fields_not_acted_on_are_warned_about_each_once() -> None:
    dep = deployment("web", labels={"app": "web"}, containers=[app(
        lifecycle={"preStop": {"exec": {"command": ["true"]}}},
        livenessProbe={"tcpSocket": {"port": 80}},
        ports=[{"containerPort": 8080, "hostPort": 80}],
        env=[{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
             {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}}],
    )], pod_spec={"initContainers": [{"name": "init"}], "affinity": {},
                  "tolerations": [{"key": "k"}],
                  "volumes": [{"name": "data", "hostPath": {"path": "/data"}},
                              {"name": "mem", "emptyDir": {"medium": "Memory"}}]},
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}},
        minReadySeconds=5)
    plan = plan_apply([("d.yaml", to_yaml(dep))])
    assert plan.ok
    paths = sorted(d.path for d in plan.diagnostics if d.code == "MP2017")
    assert paths == sorted([
        "spec.minReadySeconds", "spec.strategy.rollingUpdate",
        "spec.template.spec.initContainers", "spec.template.spec.tolerations",
        "spec.template.spec.containers[0].lifecycle",
        "spec.template.spec.containers[0].livenessProbe",
        "spec.template.spec.containers[0].ports[0].hostPort",
        "spec.template.spec.containers[0].env[0].valueFrom.resourceFieldRef",
        "spec.template.spec.containers[0].env[1].valueFrom.fieldRef.fieldPath",
        "spec.template.spec.volumes[0].hostPath",
        "spec.template.spec.volumes[1].emptyDir.medium",
    ])  # an empty affinity sets nothing


def test_injection_off_on_a_pod_template_is_warned_about() -> None:
    dep = deployment("web", labels={"app": "web", "sidecar.istio.io/inject": "false"},
                     selector={"app": "web"}, containers=[app()])
    plan = plan_apply([("d.yaml", to_yaml(dep))])
    assert codes_of(plan) == ["MP2018"]


@pytest.mark.parametrize(("mount", "volumes", "path"), [
    ({"name": "nope", "mountPath": "/etc/x"}, [], "volumeMounts[0].name"),
    ({"name": "v", "mountPath": "etc/x"}, [{"name": "v", "emptyDir": {}}],
     "volumeMounts[0].mountPath"),
    ({"name": "v", "mountPath": "/etc/x", "subPath": "../up"},
     [{"name": "v", "emptyDir": {}}], "volumeMounts[0].subPath"),
])
def test_mounts_the_runtime_cannot_make_are_refused(mount: dict[str, Any],
                                                    volumes: list[Any], path: str) -> None:
    dep = deployment("web", labels={"app": "web"}, containers=[app(volumeMounts=[mount])],
                     pod_spec={"volumes": volumes})
    plan = plan_apply([("d.yaml", to_yaml(dep))])
    assert [(d.code, d.path) for d in plan.errors] == [
        ("MP0047", f"spec.template.spec.containers[0].{path}")]


def test_item_path_leaving_the_volume_is_refused() -> None:
    dep = deployment("web", labels={"app": "web"}, containers=[app()], pod_spec={"volumes": [
        {"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "/abs"}]}}]})
    plan = plan_apply([("d.yaml", to_yaml(dep))])
    assert [d.code for d in plan.errors] == ["MP0047"]


def test_missing_configmap_or_secret_is_a_warning_unless_optional_or_applied_with() -> None:
    dep = deployment("web", labels={"app": "web"}, containers=[app(
        env=[{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
             {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "b",
                                                          "optional": True}}}],
        envFrom=[{"secretRef": {"name": "creds"}}])])
    plan = plan_apply([("d.yaml", to_yaml(dep))])
    assert plan.ok
    assert sorted((d.code, d.path) for d in plan.diagnostics) == sorted([
        ("MP2019", "spec.template.spec.containers[0].env[0].valueFrom.configMapKeyRef.name"),
        ("MP2019", "spec.template.spec.containers[0].envFrom[0].secretRef.name"),
    ])
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}}
    assert codes_of(plan_apply([("d.yaml", to_yaml(dep, cm, secret))])) == []


def test_env_sources_need_exactly_one_kind() -> None:
    dep = deployment("web", labels={"app": "web"}, containers=[app(
        envFrom=[{"prefix": "X_"}],
        env=[{"name": "A", "valueFrom": {}}])])
    plan = plan_apply([("d.yaml", to_yaml(dep))])
    assert sorted(d.path for d in plan.errors) == sorted([
        "spec.template.spec.containers[0].env[0].valueFrom",
        "spec.template.spec.containers[0].envFrom[0]"])


# --- what a pod reads ---------------------------------------------------------------------------

CONFIGS = {
    ("ConfigMap", "default", "cfg"): {"greeting": b"hello", "app.conf": b"a=1\n",
                                      "bad key": b"x"},
    ("Secret", "default", "creds"): {"token": b"s3cret"},
}


def pod_spec(**spec: Any) -> Any:
    dep = deployment("web", labels={"app": "web"}, containers=[app(**spec.pop("c", {}))],
                     pod_spec=spec)
    return Deployment.model_validate(dep).spec.template.spec


def test_env_from_configmap_and_secret_with_prefix_and_key_refs() -> None:
    spec = pod_spec(c={
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "gone", "optional": True}}],
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                 "key": "token"}}},
                {"name": "NONE", "valueFrom": {"configMapKeyRef": {
                    "name": "cfg", "key": "nope", "optional": True}}}]})
    c = spec.containers[0]
    assert config_env(c, "default", CONFIGS) == {"CFG_greeting": "hello",
                                                 "CFG_app.conf": "a=1\n"}  # "bad key" skipped
    assert env_value(c.env[0], "default", CONFIGS) == "s3cret"
    assert env_value(c.env[1], "default", CONFIGS) is None
    assert missing_config(spec, "default", CONFIGS) == ""
    assert references(spec) == (("ConfigMap", "cfg"), ("Secret", "creds"), ("Secret", "gone"))


def test_the_runtime_environment_puts_env_over_env_from() -> None:
    spec = pod_spec(c={
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "env": [{"name": "greeting", "value": "over"},
                {"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "ECHO", "value": "$(T)!"}]})
    env = LocalRuntime._env(spec.containers[0], ip="127.0.0.9", pod="web-1", namespace="default",
                            names={}, app_ports={}, labels={}, configs=CONFIGS)
    assert env["greeting"] == "over" and env["T"] == "s3cret" and env["ECHO"] == "s3cret!"
    assert env["app.conf"] == "a=1\n"


def test_missing_objects_and_keys_say_why_the_pod_waits() -> None:
    spec = pod_spec(c={"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {
        "name": "cfg", "key": "absent"}}}]},
        volumes=[{"name": "s", "secret": {"secretName": "other"}}])
    why = missing_config(spec, "default", CONFIGS)
    assert "key 'absent' not found in ConfigMap default/cfg" in why
    assert "secret 'other' not found" in why
    assert missing_config(spec, "elsewhere", CONFIGS).count("not found") == 2


def test_digest_follows_the_values_a_pod_reads_only() -> None:
    spec = pod_spec(c={"envFrom": [{"configMapRef": {"name": "cfg"}}]})
    before = config_digest(spec, "default", CONFIGS)
    changed = {**CONFIGS, ("ConfigMap", "default", "cfg"): {"greeting": b"bye"}}
    unrelated = {**CONFIGS, ("Secret", "default", "creds"): {"token": b"other"}}
    assert config_digest(spec, "default", changed) != before
    assert config_digest(spec, "default", unrelated) == before
    assert config_digest(spec, "default", {}) not in ("", before)
    assert config_digest(pod_spec(), "default", CONFIGS) == ""


def test_volumes_are_written_under_the_pod_dir_and_linked_at_mount_paths(
        tmp_path: Path) -> None:
    spec = pod_spec(
        c={"volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "cfg", "mountPath": "/etc/one.conf", "subPath": "app.conf"},
            {"name": "creds", "mountPath": "/var/run/creds", "readOnly": True},
            {"name": "picked", "mountPath": "/etc/picked"},
            {"name": "scratch", "mountPath": "/scratch"}]},
        volumes=[{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o640}},
                 {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o644}},
                 {"name": "picked", "configMap": {"name": "cfg", "items": [
                     {"key": "greeting", "path": "sub/hello.txt", "mode": 0o600}]}},
                 {"name": "scratch", "emptyDir": {}}])
    pod_dir = tmp_path / "web-1.d"
    roots = write_volumes(spec, "default", CONFIGS, pod_dir)
    root = roots["app"]
    assert (root / "etc/app/greeting").read_text() == "hello"
    assert (root / "etc/one.conf").read_text() == "a=1\n"
    assert (root / "etc/picked/sub/hello.txt").read_text() == "hello"
    assert not (root / "etc/picked/app.conf").exists()
    assert (root / "scratch").is_dir() and not any((root / "scratch").iterdir())
    secret = root / "var/run/creds/token"
    assert secret.read_text() == "s3cret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600  # never wider, whatever defaultMode
    assert stat.S_IMODE((root / "etc/app/greeting").stat().st_mode) == 0o640
    assert stat.S_IMODE(pod_dir.stat().st_mode) == 0o700
    assert root.resolve().is_relative_to(pod_dir.resolve())
