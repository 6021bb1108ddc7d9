"""What an alert looks like to each chat service, and how it is posted.

The shapes are those of Flagger's notifiers (``pkg/notifier``), so a receiver, a bot or
a test written against Flagger's messages reads meshpilot's:

- ``slack``: an incoming-webhook message with one attachment (author ``NAME.NAMESPACE``,
  the message as markdown text, the fields), green ("good") or red ("danger") for
  errors; a Secret's ``token`` goes along as ``Authorization: Bearer`` (Slack's
  ``chat.postMessage`` wants one). ``discord``: the same message sent to the webhook's
  Slack-compatible endpoint (``/slack`` appended to the address). ``rocket``: the same
  message in Rocket.Chat's blue / red.
- ``msteams``: an Office 365 connector ``MessageCard`` with the fields as facts.
- ``gchat``: a Google Chat card, the message and each field a text paragraph.

Only Slack gets the token, as in Flagger. A post is one JSON POST with a 5 s timeout
(Flagger's), through the provider's ``proxy`` when it has one; any answer outside 2xx is
a failure. Error messages never carry the address or the token: a webhook URL is itself
a credential.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from meshpilot.api.flagger_alerts import AlertProviderType

POST_TIMEOUT_S = 5.0
"""Flagger's notifier timeout (``postMessage`` in ``pkg/notifier/client.go``)."""

Field = tuple[str, str]
"""A (name, value) line shown under the message (Flagger's ``notifier.Field``)."""


@dataclass(frozen=True)
class Notification:
    """One alert about one Canary, before it is shaped for a provider."""

    name: str
    namespace: str
    message: str
    severity: str
    fields: tuple[Field, ...] = ()

    @property
    def subject(self) -> str:
        """``NAME.NAMESPACE``, how every Flagger notifier names the Canary."""
        return f"{self.name}.{self.namespace}"


def _slack_like(n: Notification, username: str, channel: str, colors: tuple[str, str]
                ) -> dict[str, Any]:
    ok, error = colors
    return {
        "channel": channel,
        "username": username,
        "icon_url": "",
        "icon_emoji": ":rocket:",
        "attachments": [{
            "color": error if n.severity == "error" else ok,
            "author_name": n.subject,
            "text": n.message,
            "mrkdwn_in": ["text"],
            "fields": [{"title": k, "value": v, "short": False} for k, v in n.fields],
        }],
    }


def _slack(n: Notification, username: str, channel: str) -> dict[str, Any]:
    return _slack_like(n, username, channel, ("good", "danger"))


def _rocket(n: Notification, username: str, channel: str) -> dict[str, Any]:
    return _slack_like(n, username, channel, ("#0076D7", "#FF0000"))


def _msteams(n: Notification, username: str, channel: str) -> dict[str, Any]:
    return {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": "FF0000" if n.severity == "error" else "0076D7",
        "summary": n.subject,
        "sections": [{
            "activityTitle": n.message,
            "activitySubtitle": n.subject,
            "facts": [{"name": k, "value": v} for k, v in n.fields],
        }],
    }


def _gchat_text(text: str) -> dict[str, Any]:
    return {"widgets": [{"textParagraph": {"text": text}}]}


def _gchat(n: Notification, username: str, channel: str) -> dict[str, Any]:
    strong = "<font color=#848484><strong>{}</strong></font>"
    sections = [_gchat_text(strong.format(n.message))]
    sections += [_gchat_text(k + "<br>" + strong.format(v)) for k, v in n.fields]
    return {"cards": [{
        "header": {"title": "Flagger", "subtitle": n.subject,
                   "imageUrl": "https://flagger.app/favicon.png"},
        "sections": sections,
    }]}


Shape = Callable[[Notification, str, str], dict[str, Any]]
SHAPES: Mapping[str, Shape] = MappingProxyType({
    "slack": _slack,
    "discord": _slack,
    "rocket": _rocket,
    "msteams": _msteams,
    "gchat": _gchat,
})
"""Provider type → its message; ``username`` and ``channel`` are read by the Slack-like
ones only, as in Flagger."""


def payload(kind: AlertProviderType, n: Notification, username: str, channel: str
            ) -> dict[str, Any]:
    return SHAPES[kind](n, username, channel)


def endpoint(kind: AlertProviderType, address: str) -> str:
    """Where the message goes: Discord takes Slack's format at ``<webhook>/slack``."""
    if kind != "discord" or address.endswith("/slack"):
        return address
    parts = urlsplit(address)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/slack"))


def bearer(kind: AlertProviderType, token: str) -> str | None:
    """The token sent with the message: Slack's only (Flagger's other notifiers drop it)."""
    return token if kind == "slack" and token else None


def redacted(address: str) -> str:
    """The address as it may be logged: scheme and host, never the path (a webhook URL's
    path is its secret)."""
    parts = urlsplit(address)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


class AlertPostError(Exception):
    """The chat service did not take the message (no answer, or not 2xx)."""


class AlertPoster(Protocol):
    def post(self, url: str, body: dict[str, Any], *, token: str | None = None,
             proxy: str | None = None) -> None:
        """POST ``body`` as JSON to ``url``; raise AlertPostError when it is not taken."""
        ...


class HttpAlertPoster:
    """Posts with httpx: one shared client, plus one per distinct proxy (made on first
    use, under a lock: several Canaries' workers post at the same time)."""

    def __init__(self, timeout_s: float = POST_TIMEOUT_S) -> None:
        self._timeout = timeout_s
        self._clients: dict[str | None, httpx.Client] = {}
        self._lock = threading.Lock()

    def _client(self, proxy: str | None) -> httpx.Client:
        with self._lock:
            client = self._clients.get(proxy)
            if client is None:
                client = httpx.Client(timeout=self._timeout, proxy=proxy)
                self._clients[proxy] = client
            return client

    def post(self, url: str, body: dict[str, Any], *, token: str | None = None,
             proxy: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self._client(proxy or None).post(url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise AlertPostError(f"no answer within {self._timeout:g}s") from None
        except httpx.HTTPError as exc:
            # httpx's message may quote the URL; the exception's type says enough
            raise AlertPostError(f"not sent ({type(exc).__name__})") from None
        if not 200 <= response.status_code < 300:
            text = response.text.strip()[:200]
            raise AlertPostError(f"answered {response.status_code}"
                                 + (f": {text}" if text else ""))

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
