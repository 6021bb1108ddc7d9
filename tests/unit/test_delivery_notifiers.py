"""Each provider type's message, exactly as Flagger's notifiers marshal it
(``pkg/notifier/slack.go``, ``discord.go``, ``rocket.go``, ``teams.go``, ``gchat.go``:
their structs' JSON tags), and the HTTP post (``client.go``: JSON, a bearer token when
given, the provider's proxy, a 5 s timeout, any non-2xx a failure) against a real
receiver on loopback."""

from __future__ import annotations

import socket

import pytest
from tests.alert_receiver import alert_receiver

from meshpilot.delivery.notifiers import (
    AlertPostError,
    HttpAlertPoster,
    Notification,
    bearer,
    endpoint,
    payload,
    redacted,
)

FIELDS = (("Target", "Deployment/podinfo.test"), ("Failed checks threshold", "5"))
INFO = Notification("podinfo", "test", "New revision detected", "info", FIELDS)
ERROR = Notification("podinfo", "test", "Failed checks threshold reached 5", "error")


def test_slack_message() -> None:
    """slack.go: channel, username, icon_emoji :rocket:, an empty icon_url, no top-level
    text; one attachment colored good (danger for errors), authored NAME.NAMESPACE."""
    assert payload("slack", INFO, "flagger", "general") == {
        "channel": "general", "username": "flagger", "icon_url": "", "icon_emoji": ":rocket:",
        "attachments": [{
            "color": "good", "author_name": "podinfo.test", "text": "New revision detected",
            "mrkdwn_in": ["text"],
            "fields": [{"title": "Target", "value": "Deployment/podinfo.test", "short": False},
                       {"title": "Failed checks threshold", "value": "5", "short": False}],
        }],
    }
    error = payload("slack", ERROR, "bot", "on-call")
    assert error["attachments"][0]["color"] == "danger"
    assert error["attachments"][0]["fields"] == []  # an empty list, as Go marshals it
    assert (error["username"], error["channel"]) == ("bot", "on-call")


def test_discord_is_slack_shaped_at_the_slack_endpoint() -> None:
    """discord.go: Slack's message, posted to the webhook with /slack appended (once)."""
    assert payload("discord", INFO, "flagger", "general") == payload("slack", INFO, "flagger",
                                                                     "general")
    base = "https://discord.com/api/webhooks/1/abc"
    assert endpoint("discord", base) == base + "/slack"
    assert endpoint("discord", base + "/") == base + "/slack"
    assert endpoint("discord", base + "/slack") == base + "/slack"
    assert endpoint("discord", base + "?wait=true") == base + "/slack?wait=true"
    assert endpoint("slack", base) == base


def test_rocket_message_colors() -> None:
    """rocket.go: Slack's shape in #0076D7, #FF0000 for errors."""
    info, error = (payload("rocket", n, "flagger", "general") for n in (INFO, ERROR))
    assert info["attachments"][0]["color"] == "#0076D7"
    assert error["attachments"][0]["color"] == "#FF0000"
    assert info["attachments"][0]["author_name"] == "podinfo.test"
    assert info["icon_emoji"] == ":rocket:" and info["channel"] == "general"


def test_msteams_message_card() -> None:
    """teams.go: a MessageCard, theme 0076D7 (FF0000 for errors), the fields as facts;
    username and channel are not part of it."""
    assert payload("msteams", INFO, "flagger", "general") == {
        "@type": "MessageCard", "@context": "http://schema.org/extensions",
        "themeColor": "0076D7", "summary": "podinfo.test",
        "sections": [{"activityTitle": "New revision detected",
                      "activitySubtitle": "podinfo.test",
                      "facts": [{"name": "Target", "value": "Deployment/podinfo.test"},
                                {"name": "Failed checks threshold", "value": "5"}]}],
    }
    assert payload("msteams", ERROR, "flagger", "general")["themeColor"] == "FF0000"


def test_google_chat_card() -> None:
    """gchat.go: a card headed Flagger / NAME.NAMESPACE; the message, then each field,
    a text paragraph of its own."""
    assert payload("gchat", INFO, "flagger", "general") == {"cards": [{
        "header": {"title": "Flagger", "subtitle": "podinfo.test",
                   "imageUrl": "https://flagger.app/favicon.png"},
        "sections": [
            {"widgets": [{"textParagraph": {
                "text": "<font color=#848484><strong>New revision detected</strong></font>"}}]},
            {"widgets": [{"textParagraph": {
                "text": "Target<br><font color=#848484><strong>Deployment/podinfo.test"
                        "</strong></font>"}}]},
            {"widgets": [{"textParagraph": {
                "text": "Failed checks threshold<br><font color=#848484><strong>5"
                        "</strong></font>"}}]},
        ]}]}


def test_only_slack_gets_the_token() -> None:
    """factory.go passes the token to NewSlack only."""
    assert bearer("slack", "xoxb-1") == "xoxb-1"
    assert bearer("slack", "") is None
    for kind in ("discord", "rocket", "msteams", "gchat"):
        assert bearer(kind, "xoxb-1") is None  # type: ignore[arg-type]


def test_a_logged_address_keeps_only_scheme_and_host() -> None:
    assert redacted("https://hooks.slack.com/services/T0/B0/XYZ") == "https://hooks.slack.com/…"


# --- posting over real HTTP ---------------------------------------------------------


def test_post_sends_json_with_the_bearer_token() -> None:
    poster = HttpAlertPoster()
    with alert_receiver() as chat:
        body = payload("slack", INFO, "flagger", "general")
        poster.post(f"{chat.url}/services/T0/B0/XYZ", body, token="xoxb-1")
        poster.post(f"{chat.url}/plain", body)
        first, second = chat.received()
    poster.close()
    assert first.target == "/services/T0/B0/XYZ"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["authorization"] == "Bearer xoxb-1"
    assert first.body == body
    assert second.target == "/plain" and "authorization" not in second.headers


def test_a_non_2xx_answer_fails_without_naming_the_address() -> None:
    poster = HttpAlertPoster()
    with alert_receiver(status=429) as chat, pytest.raises(AlertPostError) as failed:
        poster.post(f"{chat.url}/services/T0/B0/SECRET", {"text": "x"})
    poster.close()
    assert "answered 429: rate limited" in str(failed.value)
    assert "SECRET" not in str(failed.value)


def test_an_unreachable_receiver_fails_without_naming_the_address() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    poster = HttpAlertPoster()
    with pytest.raises(AlertPostError) as failed:
        poster.post(f"http://127.0.0.1:{port}/hooks/SECRET", {"text": "x"})
    poster.close()
    assert "not sent" in str(failed.value) and "SECRET" not in str(failed.value)


def test_a_receiver_that_does_not_answer_in_time_fails() -> None:
    poster = HttpAlertPoster(timeout_s=0.3)
    with alert_receiver(delay_s=1.5) as chat, pytest.raises(AlertPostError) as failed:
        poster.post(f"{chat.url}/slow", {"text": "x"})
    poster.close()
    assert "no answer within 0.3s" in str(failed.value)


def test_post_goes_through_the_providers_proxy() -> None:
    """client.go: with a proxy, the message is sent through it (an HTTP proxy receives
    the absolute URL); without one, straight to the receiver."""
    poster = HttpAlertPoster()
    with alert_receiver() as proxy:
        poster.post("http://chat.example.invalid/hooks/1", {"text": "via proxy"},
                    proxy=proxy.url)
        (through,) = proxy.received()
    poster.close()
    assert through.target == "http://chat.example.invalid/hooks/1"
    assert through.body == {"text": "via proxy"}
