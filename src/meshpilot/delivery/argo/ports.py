"""What the Argo controller reads and writes, beyond the Flagger controller's ports.

The Argo controller reads and writes through the same kind of objects as the Flagger
one (``ClusterReader.deployment``/``workload``, ``ObjectWriter.apply``/``delete``); it
also reads a Rollout and the user's VirtualServices and DestinationRules, and keeps its
state in the Rollout's status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from meshpilot.api.argo import Rollout
from meshpilot.delivery.ports import WorkloadStatus


class ArgoReader(Protocol):
    def rollout(self, namespace: str, name: str) -> Rollout | None: ...

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def workload(self, namespace: str, name: str) -> WorkloadStatus: ...

    def routing_object(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        """The stored body of VirtualService or DestinationRule ``name``, or None."""
        ...


class ArgoWriter(Protocol):
    def apply(self, objects: Sequence[dict[str, Any]]) -> None: ...

    def delete(self, namespace: str, refs: Sequence[tuple[str, str]]) -> None: ...

    def put_rollout_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Replace the Rollout's status (store PutStatus)."""
        ...
