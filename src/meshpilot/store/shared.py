"""State the control-plane replicas on one etcd share beside the config objects.

Some of what a control plane knows is not a config object a user applies, yet every
replica must see the same: the key proxy tokens are derived from (a proxy started by one
replica reconnects to another), the hosts that joined and their latest reports (a host
reports to whichever replica answers; the leader judges). These live under the mesh's
prefix at ``x/`` (the objects are at ``o/``), never in the objects' change log, so they
are neither listed by the API nor replayed to watches.

Why not the config store itself: a report every few seconds per host would flood the
watch log every proxy rebuild follows, and a secret key has no place among objects that
``meshpilot get`` prints.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

from meshpilot.store.etcd_client import EtcdClient, b64, unb64

AREA = "x/"
RETRY_SECONDS = 3.0
"""How long a shared read or write keeps trying other etcd members: short, since the
callers (reports, health rounds) simply try again on their next round."""


class Record(NamedTuple):
    revision: int  # etcd's revision of its last write
    value: dict[str, Any]
    lease: int = 0  # the lease it lives under (0: none)


class SharedRecords:
    """JSON records (and one-time secrets) under ``PREFIX/x/``; thread-safe."""

    def __init__(self, endpoints: list[str], prefix: str) -> None:
        self._client = EtcdClient(endpoints, retry_seconds=RETRY_SECONDS)
        self._root = prefix + AREA

    @property
    def client(self) -> EtcdClient:
        return self._client

    def key(self, area: str, name: str) -> str:
        return f"{self._root}{area}/{quote(name, safe='')}"

    def put_request(self, area: str, name: str, value: dict[str, Any],
                    lease: int = 0) -> dict[str, Any]:
        """The PutRequest that writes the record (for a transaction of the caller's)."""
        request: dict[str, Any] = {"key": b64(self.key(area, name)),
                                   "value": b64(json.dumps(value, sort_keys=True))}
        if lease:
            request["lease"] = str(lease)
        return request

    def put(self, area: str, name: str, value: dict[str, Any], lease: int = 0) -> int:
        """Write the record; its new revision."""
        answer = self._client.call("kv/put", self.put_request(area, name, value, lease))
        return int((answer.get("header") or {}).get("revision", 0))

    def delete(self, area: str, name: str) -> None:
        self._client.call("kv/deleterange", {"key": b64(self.key(area, name))})

    def items(self, area: str) -> dict[str, Record]:
        """Every record of ``area`` by name. A record that does not parse is left out."""
        answer = self._client.range(f"{self._root}{area}/", prefix=True)
        start = len(f"{self._root}{area}/")
        out = {}
        for kv in answer.get("kvs") or []:
            try:
                value = json.loads(unb64(kv.get("value")))
            except ValueError:
                continue
            if isinstance(value, dict):
                name = unquote(unb64(kv["key"]).decode()[start:])
                out[name] = Record(int(kv.get("mod_revision", 0)), value,
                                   int(kv.get("lease", 0)))
        return out

    def secret(self, name: str, make: bytes) -> bytes:
        """The secret ``name``: ``make`` if no replica stored one yet (stored now, in a
        transaction that succeeds only if the key is absent), else the stored one, so
        every replica ends up with the same bytes whichever started first."""
        key = b64(self.key("secrets", name))
        answer = self._client.txn(
            [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            [{"request_put": {"key": key, "value": b64(make)}}],
            [{"request_range": {"key": key}}])
        if answer.get("succeeded"):
            return make
        kvs = ((answer.get("responses") or [{}])[0].get("response_range") or {}).get("kvs")
        if not kvs:
            raise RuntimeError(f"shared secret {name} vanished while being read")
        return unb64(kvs[0].get("value"))

    def close(self) -> None:
        self._client.close()
