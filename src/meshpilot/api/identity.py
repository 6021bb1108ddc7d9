"""The identity of a stored object: (group, kind, namespace, name)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class ObjectKey:
    group: str  # "" for the Kubernetes core group
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"
