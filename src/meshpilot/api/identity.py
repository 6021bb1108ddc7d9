"""The identity of a stored object: (group, kind, namespace, name)."""

from __future__ import annotations

from typing import NamedTuple


class ObjectKey(NamedTuple):
    """An object's identity in the store. A named tuple: hashed and compared in C, which
    matters when every rebuild of the mesh looks thousands of them up."""

    group: str  # "" for the Kubernetes core group
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if not self.namespace:  # cluster-scoped (Namespace)
            return f"{self.kind} {self.name}"
        return f"{self.kind} {self.namespace}/{self.name}"
