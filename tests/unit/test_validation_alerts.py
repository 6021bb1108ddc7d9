"""AlertProvider and a Canary's ``analysis.alerts`` at apply: typed and strict after
Flagger's CRD (``artifacts/flagger/crd.yaml``: the provider ``type`` enum slack, msteams,
discord, rocket, gchat; ``address`` or ``secretRef`` required; alert ``severity`` "",
info, warn or error; ``providerRef.name`` required), and MP2025 when what they name does
not exist (Flagger's ``alert()`` in ``pkg/controller/events.go`` then logs and skips that
alert)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshpilot.api.flagger import Canary
from meshpilot.api.flagger_alerts import AlertProvider
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import by_name
from meshpilot.validation import Plan, StateObject, check_state, plan_apply


def provider(name: str = "on-call", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    body = {"type": "slack", "channel": "on-call-alerts",
            "address": "https://hooks.slack.com/services/T0/B0/XYZ", **spec}
    return {"apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {k: v for k, v in body.items() if v is not None}}


def canary(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "name": "web"},
                     "service": {"port": 80},
                     "analysis": {"interval": "10s", "stepWeight": 10,
                                  "alerts": list(alerts)}}}


def secret(name: str, namespace: str = "shop") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {"address": "https://hooks.slack.com/services/T0/B0/XYZ"}}


def plan(*docs: dict[str, Any]) -> Plan:
    return plan_apply([("it.yaml", yaml.safe_dump_all(docs, sort_keys=False))], [])


def found(p: Plan) -> list[tuple[str, str]]:
    return [(d.code, d.path) for d in p.diagnostics]


def test_alert_provider_is_a_kind_with_flaggers_names() -> None:
    info = by_name("alertproviders.flagger.app")
    assert (info.kind, info.plural, info.api_version()) == (
        "AlertProvider", "alertproviders", "flagger.app/v1beta1")
    assert by_name("alertprovider") is info


@pytest.mark.parametrize("kind", ["slack", "msteams", "discord", "rocket", "gchat"])
def test_every_flagger_provider_type_applies(kind: str) -> None:
    p = plan(provider(type=kind))
    assert p.ok and found(p) == [], [d.format() for d in p.diagnostics]


def test_an_unknown_type_is_refused_with_the_valid_ones_listed() -> None:
    p = plan(provider(type="pagerduty"))
    assert not p.ok
    (d,) = p.diagnostics
    assert (d.code, d.path) == ("MP0017", "spec.type")
    for kind in ("slack", "msteams", "discord", "rocket", "gchat"):
        assert kind in d.message


@pytest.mark.parametrize(("field", "value"), [
    ("address", "hooks.slack.com/services/T0/B0/XYZ"),  # no scheme
    ("address", "ftp://hooks.example.com/x"),
    ("address", "https:///no-host"),
    ("address", "http://host:port/"),
    ("proxy", "socks5://127.0.0.1:1080"),
    ("proxy", "proxy.internal:3128"),
])
def test_a_bad_address_or_proxy_is_refused_without_repeating_it(field: str, value: str
                                                                ) -> None:
    p = plan(provider(**{field: value}))
    assert not p.ok
    (d,) = p.diagnostics
    assert (d.code, d.path) == ("MP0017", f"spec.{field}")
    assert "http" in d.message and value not in d.message  # a webhook URL is a credential


def test_a_provider_needs_an_address_or_a_secret_ref() -> None:
    p = plan(provider(address=None))
    assert not p.ok
    assert "secretRef" in p.diagnostics[0].message
    assert plan(provider(address=None, secretRef={"name": "url"}), secret("url")).ok


def test_canary_alerts_are_typed() -> None:
    body = canary({"name": "on-call", "severity": "error",
                   "providerRef": {"name": "on-call", "namespace": "ops"}},
                  {"name": "dev", "severity": "", "providerRef": {"name": "dev"}},
                  {"name": "qa", "providerRef": {"name": "qa"}})
    alerts = Canary.model_validate(body).spec.analysis.alerts  # type: ignore[union-attr]
    assert alerts is not None
    assert [(a.name, a.severity, a.provider_ref.name, a.provider_ref.namespace)
            for a in alerts] == [("on-call", "error", "on-call", "ops"),
                                 ("dev", "info", "dev", None),   # "" is info, as documented
                                 ("qa", "info", "qa", None)]


@pytest.mark.parametrize(("alert", "path", "code"), [
    ({"name": "x", "severity": "critical", "providerRef": {"name": "p"}},
     "spec.analysis.alerts[0].severity", "MP0017"),
    ({"name": "x"}, "spec.analysis.alerts[0].providerRef", "MP0011"),
    ({"name": "x", "providerRef": {"namespace": "ops"}},
     "spec.analysis.alerts[0].providerRef.name", "MP0011"),
    ({"name": "x", "providerRef": {"name": "p"}, "channel": "c"},
     "spec.analysis.alerts[0].channel", "MP0010"),
])
def test_a_malformed_alert_is_refused_at_its_path(alert: dict[str, Any], path: str,
                                                  code: str) -> None:
    p = plan(canary(alert), provider(name="p"))
    assert not p.ok
    assert (code, path) in found(p), [d.format() for d in p.diagnostics]


def test_alerts_and_mute_alert_are_no_longer_refused_or_warned_about() -> None:
    body = canary({"name": "on-call", "severity": "error", "providerRef": {"name": "on-call"}})
    body["spec"]["analysis"]["webhooks"] = [
        {"name": "gate", "type": "confirm-rollout", "url": "http://gate.shop/",
         "muteAlert": True}]
    p = plan(body, provider())
    assert p.ok and found(p) == [], [d.format() for d in p.diagnostics]


def test_a_provider_ref_naming_no_alert_provider_is_warned_about() -> None:
    """MP2025: applied; the alert is not sent until the provider exists. The namespace
    is providerRef.namespace, else the Canary's (Flagger's alert())."""
    body = canary({"name": "on-call", "providerRef": {"name": "on-call"}},
                  {"name": "ops", "providerRef": {"name": "on-call", "namespace": "ops"}})
    p = plan(body)
    assert p.ok
    assert found(p) == [("MP2025", "spec.analysis.alerts[0].providerRef.name"),
                        ("MP2025", "spec.analysis.alerts[1].providerRef.name")]
    assert "shop/on-call" in p.diagnostics[0].message
    assert "ops/on-call" in p.diagnostics[1].message
    # the provider in the Canary's namespace answers the first, not the second
    assert found(plan(body, provider())) == [
        ("MP2025", "spec.analysis.alerts[1].providerRef.name")]
    assert found(plan(body, provider(), provider(namespace="ops"))) == []


def test_a_provider_secret_ref_naming_no_secret_is_warned_about() -> None:
    body = provider(secretRef={"name": "on-call-url"})
    p = plan(body)
    assert p.ok
    assert found(p) == [("MP2025", "spec.secretRef.name")]
    assert found(plan(body, secret("on-call-url"))) == []
    assert found(plan(body, secret("on-call-url", namespace="other"))) == [
        ("MP2025", "spec.secretRef.name")]


def test_a_stored_canary_shows_the_missing_provider_in_describe() -> None:
    body = canary({"name": "on-call", "providerRef": {"name": "gone"}})
    state = [StateObject(ObjectKey("flagger.app", "Canary", "shop", "web"), body)]
    assert [(d.code, d.path) for d in check_state(state, all_objects=True)] == [
        ("MP2025", "spec.analysis.alerts[0].providerRef.name")]


def test_the_provider_model_reads_flaggers_example() -> None:
    """The Slack example of Flagger's alerting docs, address and secretRef both given:
    accepted (the Secret's address wins when sending)."""
    model = AlertProvider.model_validate(provider(
        namespace="flagger", username="flagger", proxy="http://my-http-proxy.com",
        secretRef={"name": "on-call-url"}))
    assert model.spec.type == "slack"
    assert model.spec.secret_ref is not None and model.spec.secret_ref.name == "on-call-url"
    assert model.spec.proxy == "http://my-http-proxy.com"
