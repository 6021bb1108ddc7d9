"""Alerts end to end: a real rollout on a real mesh tells a chat service's webhook,
played by a real HTTP receiver on loopback, what Flagger would tell it.

Given a Canary with two alerts (an on-call Slack alert of severity error, its webhook
URL and bot token in a Secret; a team MS Teams alert of severity info), when a revision
that fails its checks is released, then the on-call receiver gets exactly the error
(Flagger's "Failed checks threshold reached N", colored danger, naming the Canary), with
the token as a bearer token, and the team receiver gets every step: the new target, the
new revision with the Canary's settings, and the failure.
"""

from __future__ import annotations

from typing import Any

from tests.alert_receiver import Received, alert_receiver
from tests.conftest import wait_for
from tests.e2e.rollouts import canary
from tests.e2e.scenario import Given, Then, When

ALERTS = """\
alerts:
- name: on-call
  severity: error
  providerRef: {name: on-call}
- name: team
  severity: info
  providerRef: {name: team-teams, namespace: team}
"""


def providers(chat_url: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "on-call-url", "namespace": "default"},
         "stringData": {"address": f"{chat_url}/services/T0/B0/on-call",
                        "token": "xoxb-e2e-token"}},
        {"apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
         "metadata": {"name": "on-call", "namespace": "default"},
         "spec": {"type": "slack", "channel": "on-call-alerts",
                  "secretRef": {"name": "on-call-url"}}},
        {"apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
         "metadata": {"name": "team-teams", "namespace": "team"},
         "spec": {"type": "msteams", "address": f"{chat_url}/teams/team"}},
    ]


def at(received: list[Received], path: str) -> list[Received]:
    return [r for r in received if r.target == path]


def test_a_failing_revision_alerts_its_error_with_the_canarys_name(
    given: Given, when: When, then: Then
) -> None:
    with alert_receiver() as chat:
        given.applied(*providers(chat.url))
        given.rollout(canary(analysis=ALERTS))
        with when.traffic():
            when.release("v2", args="--error-rate 0.3")  # 30% of its answers are 500s
            final = then.rollout_phase("Failed")
        # the alert goes once the Failed state is written: wait for it, bounded
        wait_for(lambda: at(chat.received(), "/services/T0/B0/on-call"), timeout=15,
                 interval=0.1, message="the on-call alert")
        wait_for(lambda: len(at(chat.received(), "/teams/team")) >= 3, timeout=15,
                 interval=0.1, message="the team's three alerts")
        received = chat.received()

    # Then on-call got the error alone, as Slack's message, with the bot token
    (error,) = at(received, "/services/T0/B0/on-call")
    assert final["failedChecks"] == 2
    attachment = error.body["attachments"][0]
    assert attachment["text"] == "Failed checks threshold reached 2"
    assert attachment["author_name"] == "myapp.default"  # the canary's name and namespace
    assert attachment["color"] == "danger"
    assert (error.body["channel"], error.body["username"]) == ("on-call-alerts", "flagger")
    assert error.headers["authorization"] == "Bearer xoxb-e2e-token"

    # and the team got every step as MS Teams cards, the failure in red
    cards = at(received, "/teams/team")
    titles = [c.body["sections"][0]["activityTitle"] for c in cards]
    assert titles == ["New Deployment detected, initialization completed.",
                      "New revision detected, progressing canary analysis.",
                      "Failed checks threshold reached 2"], titles
    assert all(c.body["summary"] == "myapp.default" for c in cards)
    facts = {f["name"]: f["value"] for f in cards[1].body["sections"][0]["facts"]}
    assert facts["Target"] == "Deployment/myapp.default"
    assert facts["Failed checks threshold"] == "2"
    assert facts["Traffic routing"] == "Weight step: 10 max: 30"
    assert cards[2].body["themeColor"] == "FF0000"
    assert "authorization" not in cards[0].headers  # the token is on-call's, and Slack's
