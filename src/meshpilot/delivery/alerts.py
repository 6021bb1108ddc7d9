"""Flagger's alerts: which of a Canary's alerts get a message, and sending it.

The state machine says *what* happened as an :class:`AlertIntent` (message, severity,
whether the Canary's settings go along), at the moments Flagger's scheduler calls
``alert()``; the controller hands the intents to :class:`AlertSender` once the new
state is written. The sender follows Flagger's ``alert()`` (``pkg/controller/events.go``):

- an alert of severity ``info`` receives every message, ``warn`` receives warnings and
  errors, ``error`` errors only;
- its ``providerRef`` is looked up in ``providerRef.namespace``, else the Canary's;
- a provider's ``secretRef`` Secret (in the provider's namespace) must hold ``address``,
  which replaces ``spec.address``; its ``token`` goes to Slack as a bearer token;
- ``username`` defaults to ``flagger``, ``channel`` to ``general``;
- with ``metadata``, the fields Target, Failed checks threshold, Progress deadline and
  Traffic routing go along (Flagger's ``alertMetadata``).

A provider or Secret that is missing, or a receiver that fails, costs that one alert and
is logged (provider and host only: never the address's path or the token); it never
stops the rollout or the Canary's other alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from meshpilot.api.flagger import Canary
from meshpilot.api.flagger_alerts import (
    DEFAULT_CHANNEL,
    DEFAULT_USERNAME,
    AlertProvider,
    AlertSeverity,
    CanaryAlert,
)
from meshpilot.delivery.notifiers import (
    AlertPoster,
    AlertPostError,
    Field,
    Notification,
    bearer,
    endpoint,
    payload,
    redacted,
)

log = logging.getLogger(__name__)

ProviderLookup = Callable[[str, str], AlertProvider | None]
SecretLookup = Callable[[str, str], Mapping[str, bytes] | None]

_RECEIVES: Mapping[str, frozenset[str]] = MappingProxyType({
    "info": frozenset({"info", "warn", "error"}),
    "warn": frozenset({"warn", "error"}),
    "error": frozenset({"error"}),
})
"""An alert's severity → the message severities it receives (Flagger's filter)."""


@dataclass(frozen=True)
class AlertIntent:
    """A message the Canary's alerts should get, as the state machine decided it."""

    message: str
    severity: AlertSeverity
    metadata: bool = False
    """Send the Canary's settings along (Flagger does for new revisions and new
    targets)."""


@dataclass(frozen=True)
class Target:
    """Where one alert goes, resolved from its provider (and the provider's Secret)."""

    provider: AlertProvider
    address: str
    token: str

    @property
    def label(self) -> str:
        """How logs name it: the provider and the address's host, nothing secret."""
        meta = self.provider.metadata
        return (f"alert provider {meta.namespace}/{meta.name} ({self.provider.spec.type}, "
                f"{redacted(self.address)})")


def receives(alert: CanaryAlert, severity: str) -> bool:
    return severity in _RECEIVES[alert.severity]


def alert_fields(canary: Canary) -> tuple[Field, ...]:
    """Flagger's ``alertMetadata``: the target, threshold, deadline and routing."""
    spec, analysis = canary.spec, canary.spec.analysis
    fields: list[Field] = [
        ("Target", f"{spec.target_ref.kind}/{spec.target_ref.name}.{canary.metadata.namespace}"),
        ("Failed checks threshold", str((analysis.threshold if analysis else None) or 1)),
        ("Progress deadline", f"{spec.progress_deadline_seconds}s"),
    ]
    strategy = canary.strategy
    if strategy == "ab":
        fields.append(("Traffic routing", "A/B Testing"))
    elif strategy == "bluegreen":
        fields.append(("Traffic routing", "Blue/Green"))
    elif analysis and analysis.step_weight:
        fields.append(("Traffic routing", f"Weight step: {analysis.step_weight} max: "
                                          f"{analysis.max_weight or 0}"))
    elif analysis and analysis.step_weights:
        steps = ",".join(str(w) for w in analysis.step_weights)
        fields.append(("Traffic routing",
                       f"Weight steps: {steps} max: {analysis.max_weight or 0}"))
    return tuple(fields)


class AlertSender:
    """Sends a Canary's alert intents through its alerts' providers."""

    def __init__(self, providers: ProviderLookup, secrets: SecretLookup,
                 poster: AlertPoster) -> None:
        self._providers = providers
        self._secrets = secrets
        self._poster = poster

    def send(self, canary: Canary, intents: Iterable[AlertIntent]) -> int:
        """Post every intent to every alert that receives it; the number posted."""
        alerts = (canary.spec.analysis.alerts if canary.spec.analysis else None) or []
        posted = 0
        for intent in intents:
            n = Notification(canary.metadata.name, canary.metadata.namespace,
                             intent.message, intent.severity,
                             alert_fields(canary) if intent.metadata else ())
            for alert in alerts:
                if receives(alert, intent.severity):
                    posted += self._post(canary, alert, n)
        return posted

    def _post(self, canary: Canary, alert: CanaryAlert, n: Notification) -> int:
        who = f"Canary {canary.metadata.namespace}/{canary.metadata.name} alert {alert.name!r}"
        target = self.resolve(canary, alert, who)
        if target is None:
            return 0
        spec = target.provider.spec
        body = payload(spec.type, n, spec.username or DEFAULT_USERNAME,
                       spec.channel or DEFAULT_CHANNEL)
        try:
            self._poster.post(endpoint(spec.type, target.address), body,
                              token=bearer(spec.type, target.token), proxy=spec.proxy)
        except AlertPostError as exc:
            why = str(exc).replace(target.token, "***") if target.token else str(exc)
            log.warning("%s not sent through %s: %s", who, target.label, why)
            return 0
        return 1

    def resolve(self, canary: Canary, alert: CanaryAlert, who: str) -> Target | None:
        """The alert's provider, address and token; None (logged) when one is missing."""
        namespace = alert.provider_ref.namespace or canary.metadata.namespace
        name = alert.provider_ref.name
        provider = self._providers(namespace, name)
        if provider is None:
            log.warning("%s not sent: no AlertProvider %s/%s", who, namespace, name)
            return None
        address, token = provider.spec.address or "", ""
        ref = provider.spec.secret_ref
        if ref is not None:
            data = self._secrets(namespace, ref.name)
            if data is None or "address" not in data:
                log.warning("%s not sent: AlertProvider %s/%s's Secret %s %s", who,
                            namespace, name, ref.name,
                            "does not exist" if data is None else "has no key 'address'")
                return None
            address = data["address"].decode("utf-8", "replace").strip()
            token = data.get("token", b"").decode("utf-8", "replace").strip()
        if not address:
            return None  # Flagger's factory sends nothing for an empty address
        return Target(provider, address, token)
