"""Progressive delivery: Flagger's Canary API driven by a restart-safe state machine.

- ``state``: the rollout record persisted in the Canary's status.
- ``objects``: pure generation of the Services, DestinationRules, VirtualService and
  primary Deployment a Canary owns.
- ``checks`` / ``judge``: metric checks (thresholds, minimum samples, primary comparison).
- ``providers``: what answers them: the built-in metrics and MetricTemplate providers.
- ``webhooks``: Flagger's webhook payloads and HTTP caller.
- ``alerts`` / ``notifiers``: Flagger's alerts: which alert hears what, each provider
  type's message, and posting it.
- ``affinity``: the session affinity cookies a rollout hands out and later expires.
- ``machine``: ``reconcile``, one tick of the state machine, without I/O of its own.
- ``controller``: ``RolloutController``, the shell that reads, decides and writes.
- ``loadtester``: the built-in load tester and manual gates (Flagger's tester API).
"""

from meshpilot.delivery.alerts import AlertIntent, AlertSender
from meshpilot.delivery.checks import render_query
from meshpilot.delivery.controller import RolloutController
from meshpilot.delivery.machine import COMMANDS, Decision, Observed, Sensors, Settings, reconcile
from meshpilot.delivery.notifiers import AlertPoster, AlertPostError, HttpAlertPoster
from meshpilot.delivery.ports import (
    ClusterReader,
    MetricQueryError,
    ObjectWriter,
    TrafficSource,
    WorkloadStatus,
    WorkloadTraffic,
    WriteError,
)
from meshpilot.delivery.providers import (
    BuiltinMetrics,
    MetricProvider,
    MetricsSource,
    PrometheusProvider,
    Providers,
    Sample,
)
from meshpilot.delivery.state import RolloutState, spec_hash
from meshpilot.delivery.webhooks import HttpWebhookCaller, WebhookCaller, WebhookResult

__all__ = [
    "COMMANDS",
    "AlertIntent",
    "AlertPostError",
    "AlertPoster",
    "AlertSender",
    "BuiltinMetrics",
    "ClusterReader",
    "Decision",
    "HttpAlertPoster",
    "HttpWebhookCaller",
    "MetricProvider",
    "MetricQueryError",
    "MetricsSource",
    "ObjectWriter",
    "Observed",
    "PrometheusProvider",
    "Providers",
    "RolloutController",
    "RolloutState",
    "Sample",
    "Sensors",
    "Settings",
    "TrafficSource",
    "WebhookCaller",
    "WebhookResult",
    "WorkloadStatus",
    "WorkloadTraffic",
    "WriteError",
    "reconcile",
    "render_query",
    "spec_hash",
]
