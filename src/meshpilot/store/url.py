"""What ``meshpilot up --store URL`` names: the SQLite file, or an etcd cluster.

No URL is the embedded SQLite file in the state directory (the default). An etcd URL
names the cluster's client endpoints, comma-separated, and optionally a key prefix, so
several meshes can share one cluster::

    etcd://127.0.0.1:2379
    etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/prod-mesh

Every replica of one mesh gives the same URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "/meshpilot/"
"""Where a mesh's keys live in etcd when the URL names no prefix."""
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
EXAMPLE = "etcd://HOST:2379 or etcd://HOST:2379,HOST:2379,HOST:2379/PREFIX"


@dataclass(frozen=True)
class StoreSpec:
    """A parsed ``--store`` value: ``endpoints`` empty means the SQLite file."""

    endpoints: tuple[str, ...] = ()
    prefix: str = DEFAULT_PREFIX

    @property
    def is_etcd(self) -> bool:
        return bool(self.endpoints)


def parse_store_url(text: str | None) -> StoreSpec:
    """``text`` as a StoreSpec; ValueError naming what is wrong and the valid form."""
    if text is None or text in ("", "sqlite"):
        return StoreSpec()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme != "etcd":
        raise ValueError(f"--store {text!r}: expected {EXAMPLE} (or 'sqlite', the default)")
    hosts, _, path = rest.partition("/")
    endpoints = []
    for item in hosts.split(","):
        match = _HOST_PORT.match(item.strip())
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise ValueError(f"--store {text!r}: {item.strip()!r} is not HOST:PORT; "
                             f"expected {EXAMPLE}")
        endpoints.append(f"http://{match.group(1)}:{match.group(2)}")
    prefix = f"/{path.strip('/')}/" if path.strip("/") else DEFAULT_PREFIX
    return StoreSpec(tuple(endpoints), prefix)
