"""Flagger webhooks: the payload, the call, and which hooks run when.

A hook "passes" on HTTP 200-202 and fails on anything else, including a timeout or a
refused connection, exactly as Flagger decides. What a failure means depends on the
hook's type, and that is the controller's business (gates wait, pre-rollout and rollout
failures count as failed checks, post-rollout failures are only logged, a passing
rollback hook rolls back).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import httpx

from meshpilot.api.base import parse_duration
from meshpilot.api.flagger import Canary, CanaryWebhook
from meshpilot.delivery.state import RolloutState

DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class WebhookResult:
    ok: bool
    status: int | None = None
    message: str = ""


class WebhookCaller(Protocol):
    def call(self, hook: CanaryWebhook, payload: dict[str, Any]) -> WebhookResult:
        """POST ``payload`` to ``hook.url``; ok means HTTP 200-202."""
        ...


def checksum(state: RolloutState) -> str:
    """Names the revision under test, as Flagger's checksum does (a hash of the Canary's
    lastAppliedSpec; Flagger adds its tracked ConfigMaps and Secrets, which meshpilot does
    not track). It does not depend on what the primary runs, so every hook of one
    revision, from confirm-rollout to post-rollout, receives the same checksum and a
    receiver can key its work by it. meshpilot records a detected revision in
    lastAppliedSpec before asking confirm-rollout, so the gate already sees the checksum
    of the revision it approves (Flagger writes lastAppliedSpec only once the gate has
    opened, so its gate sees the previous revision's while Waiting)."""
    return hashlib.sha256(f"lastAppliedSpec={state.last_applied_spec}".encode()).hexdigest()[:16]


REPORTED_PHASE = MappingProxyType({
    "pre-rollout": "Progressing",
    "rollout": "Progressing",
    "confirm-traffic-increase": "Progressing",
    "confirm-promotion": "Progressing",
})
"""The phase Flagger's scheduler puts in the payload of these hook types whatever the
Canary's phase is (a confirm-promotion hook polled in WaitingPromotion still reads
Progressing). confirm-rollout, rollback and post-rollout hooks get the Canary's phase."""


def payload(canary: Canary, state: RolloutState, hook: CanaryWebhook) -> dict[str, Any]:
    """{name, namespace, phase, checksum, metadata}, as Flagger sends it."""
    return {
        "name": canary.metadata.name,
        "namespace": canary.metadata.namespace,
        "phase": REPORTED_PHASE.get(hook.type, state.phase),
        "checksum": checksum(state),
        "metadata": dict(hook.metadata or {}),
    }


EVENT_KEYS = ("eventMessage", "eventType", "timestamp")
"""The metadata keys an event hook's payload always carries; the hook's own metadata
cannot replace them."""


def event_payload(
    canary: Canary, state: RolloutState, hook: CanaryWebhook, message: str, event_type: str,
    now: float,
) -> dict[str, Any]:
    """The event hook's payload: the message, its type and a millisecond timestamp,
    merged with the hook's ``metadata`` (e.g. ``environment``, ``cluster``) so a
    receiver shared by several clusters can tell them apart. As in Flagger's event
    webhook, the event's own keys win over a hook key of the same name."""
    metadata = {k: v for k, v in (hook.metadata or {}).items() if k not in EVENT_KEYS}
    metadata.update(eventMessage=message, eventType=event_type,
                    timestamp=str(int(now * 1000)))
    return {
        "name": canary.metadata.name,
        "namespace": canary.metadata.namespace,
        "phase": state.phase,
        "checksum": checksum(state),
        "metadata": metadata,
    }


def hooks_of(canary: Canary, kind: str) -> list[CanaryWebhook]:
    analysis = canary.spec.analysis
    return [h for h in (analysis.webhooks or []) if h.type == kind] if analysis else []


class HttpWebhookCaller:
    """Calls hooks over HTTP with the hook's timeout and retries; ``headers`` go with
    every call (the built-in tester's credential)."""

    def __init__(self, client: httpx.Client | None = None, retry_delay_s: float = 0.2,
                 headers: Mapping[str, str] | None = None) -> None:
        self._headers = dict(headers or {})
        self._client = client or httpx.Client(headers=self._headers)
        self._retry_delay = retry_delay_s
        self._insecure: httpx.Client | None = None
        self._insecure_lock = threading.Lock()

    def _insecure_client(self) -> httpx.Client:
        """For hooks with disableTLS: true (Flagger skips certificate checks for them).
        Made once, under a lock: several Canaries' ticks call hooks at the same time."""
        with self._insecure_lock:
            if self._insecure is None:
                self._insecure = httpx.Client(verify=False, headers=self._headers)
            return self._insecure

    def call(self, hook: CanaryWebhook, payload: dict[str, Any]) -> WebhookResult:
        timeout = parse_duration(hook.timeout) if hook.timeout else DEFAULT_TIMEOUT_S
        attempts = 1 + (hook.retries or 0)
        result = WebhookResult(False, None, "not called")
        for attempt in range(attempts):
            if attempt:
                time.sleep(self._retry_delay)
            result = self._once(hook, payload, timeout)
            if result.ok:
                return result
        return result

    def _once(self, hook: CanaryWebhook, body: dict[str, Any], timeout: float) -> WebhookResult:
        try:
            client = self._insecure_client() if hook.disable_tls else self._client
            response = client.post(hook.url, json=body, timeout=timeout)
        except httpx.TimeoutException:
            return WebhookResult(False, None, f"{hook.url} timed out after {timeout:g}s")
        except httpx.HTTPError as exc:
            return WebhookResult(False, None, f"{hook.url}: {exc}")
        if 200 <= response.status_code <= 202:
            return WebhookResult(True, response.status_code, response.text[:200])
        text = response.text.strip()[:200]
        return WebhookResult(
            False, response.status_code,
            f"{hook.url} answered {response.status_code}" + (f": {text}" if text else ""),
        )
