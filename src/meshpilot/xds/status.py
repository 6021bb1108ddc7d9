"""What the control plane knows about each proxy: per-type versions, ACKs and NACKs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meshpilot.mesh.model import ProxyNode


@dataclass(frozen=True)
class TypeStatus:
    """One resource type of one proxy's stream."""

    type_url: str
    sent_version: str  # version_info of the last response sent
    acked_version: str | None  # last version the proxy ACKed
    nonce: str  # nonce of the last response sent
    nack: str | None  # error_detail of the last NACK; cleared by a later ACK
    resources: int  # resources of this type the proxy has been given
    last_ack_at: float | None  # time.time() of the last ACK


@dataclass(frozen=True)
class Refusal:
    """A published mesh version whose config for one proxy was refused as inconsistent:
    the proxy stays on the last config it was given."""

    version: int
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ProxyStatus:
    """One proxy (connected, or disconnected a short while ago)."""

    node: ProxyNode
    connected: bool
    api: Literal["sotw", "delta"]
    mesh_version: int  # the snapshot version whose config it has fully ACKed (-1: none)
    types: dict[str, TypeStatus]
    connected_at: float
    refusal: Refusal | None = None  # the newest config refused for it, until a good one


@dataclass(slots=True)
class SentRecord:
    """One response sent on a stream (for tests, debugging and convergence figures)."""

    type_url: str
    nonce: str
    version: str
    resources: tuple[str, ...]  # their names (the first few of a large response)
    removed: tuple[str, ...]
    sent_at: float  # time.monotonic()
    acked_at: float | None = None
    nacked: str | None = None
    phase: str = ""  # the update phase that staged it ("make", "switch", "break") or ""
    count: int = -1  # how many resources it carried (-1: ``len(resources)``)

    def __post_init__(self) -> None:
        if self.count < 0:
            self.count = len(self.resources)
