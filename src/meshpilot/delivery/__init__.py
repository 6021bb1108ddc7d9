"""Progressive delivery: Flagger's Canary API driven by a restart-safe state machine.

- ``state``: the rollout record persisted in the Canary's status.
- ``objects``: pure generation of the Services, DestinationRules, VirtualService and
  primary Deployment a Canary owns.
- ``checks`` / ``judge``: metric checks (built-in, Prometheus, primary comparison).
- ``webhooks``: Flagger's webhook payloads and HTTP caller.
- ``machine``: ``reconcile``, one tick of the state machine, without I/O of its own.
- ``controller``: ``RolloutController``, the shell that reads, decides and writes.
- ``loadtester``: the built-in load tester and manual gates (Flagger's tester API).
"""

from meshpilot.delivery.checks import (
    MetricQuery,
    MetricQueryError,
    MetricsSource,
    PrometheusProvider,
    Sample,
    render_query,
)
from meshpilot.delivery.controller import RolloutController
from meshpilot.delivery.machine import COMMANDS, Decision, Observed, Sensors, Settings, reconcile
from meshpilot.delivery.ports import (
    ClusterReader,
    ObjectWriter,
    WorkloadStatus,
    WriteError,
)
from meshpilot.delivery.state import RolloutState, spec_hash
from meshpilot.delivery.webhooks import HttpWebhookCaller, WebhookCaller, WebhookResult

__all__ = [
    "COMMANDS",
    "ClusterReader",
    "Decision",
    "HttpWebhookCaller",
    "MetricQuery",
    "MetricQueryError",
    "MetricsSource",
    "ObjectWriter",
    "Observed",
    "PrometheusProvider",
    "RolloutController",
    "RolloutState",
    "Sample",
    "Sensors",
    "Settings",
    "WebhookCaller",
    "WebhookResult",
    "WorkloadStatus",
    "WriteError",
    "reconcile",
    "render_query",
    "spec_hash",
]
