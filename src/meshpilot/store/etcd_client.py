"""A small client for etcd's v3 API, over the JSON gateway every etcd serves.

Why this and not a client library: the ``etcd3`` package is unmaintained and pins an old
protobuf; gRPC stubs would mean vendoring etcd's .proto files with their gogoproto and
google.api imports. etcd serves the same v3 API as JSON over HTTP at ``/v3/...`` (the
gRPC gateway, on by default since 3.3), and httpx is already a dependency: KV ranges,
transactions, leases and watch streams are a few POSTs each.

The client knows several endpoints (the members of a cluster) and moves to the next one
when a member does not answer, or answers that it has no leader, within a bounded time,
so a dead member costs a retry, not an error.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

RETRY_SECONDS = 10.0
"""How long a request keeps trying other members before it gives up: longer than an
etcd leader election (about a second with the default election timeout)."""

_RETRYABLE_CODES = frozenset({4, 14})  # DEADLINE_EXCEEDED, UNAVAILABLE (no leader, ...)


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> str:
    """The range_end that makes a range cover every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return b64(bytes(raw))
        raw.pop()
    return b64(b"\0")


class EtcdError(Exception):
    """etcd refused a request (``code`` is its gRPC status code)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"etcd: {message} (code {code})")


class EtcdUnavailable(Exception):
    """No etcd member answered within the retry time."""

    def __init__(self, endpoints: list[str], cause: str) -> None:
        self.endpoints = endpoints
        self.cause = cause
        super().__init__(f"no etcd member of {', '.join(endpoints)} answered: {cause}")


class EtcdClient:
    """Thread-safe; remembers the member that answered last and starts there."""

    def __init__(self, endpoints: list[str], *, retry_seconds: float = RETRY_SECONDS) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = list(endpoints)
        self._retry_seconds = retry_seconds
        self._http = httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0))
        self._lock = threading.Lock()
        self._current = 0

    def close(self) -> None:
        self._http.close()

    def _order(self) -> list[str]:
        with self._lock:
            first = self._current
        n = len(self.endpoints)
        return [self.endpoints[(first + i) % n] for i in range(n)]

    def _worked(self, endpoint: str) -> None:
        with self._lock:
            self._current = self.endpoints.index(endpoint)

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>`` on a live member; its JSON answer."""
        deadline = time.monotonic() + self._retry_seconds
        cause = "no attempt"
        pause = 0.05
        while True:
            for endpoint in self._order():
                try:
                    response = self._http.post(f"{endpoint}/v3/{path}", json=body)
                    answer = response.json()
                except (httpx.TransportError, ValueError) as exc:
                    cause = f"{endpoint}: {exc or type(exc).__name__}"
                    continue
                if response.status_code == 200:
                    self._worked(endpoint)
                    return answer if isinstance(answer, dict) else {}
                code = int(answer.get("code", 2)) if isinstance(answer, dict) else 2
                message = str(answer.get("message", answer)) if isinstance(answer, dict) \
                    else str(answer)
                if code not in _RETRYABLE_CODES:
                    raise EtcdError(code, message)
                cause = f"{endpoint}: {message}"
            if time.monotonic() + pause > deadline:
                raise EtcdUnavailable(self.endpoints, cause)
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    # -- KV ----------------------------------------------------------------

    def range(self, key: str, *, prefix: bool = False, revision: int = 0,
              limit: int = 0, keys_only: bool = False,
              min_mod_revision: int = 0) -> dict[str, Any]:
        return self.call("kv/range", range_request(
            key, prefix=prefix, revision=revision, limit=limit, keys_only=keys_only,
            min_mod_revision=min_mod_revision))

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return self.call("kv/txn", {"compare": compare, "success": success,
                                    "failure": failure or []})

    # -- leases ------------------------------------------------------------

    def lease_grant(self, ttl: int) -> int:
        return int(self.call("lease/grant", {"TTL": str(ttl)})["ID"])

    def lease_keepalive(self, lease: int) -> int:
        """Renew ``lease``; its remaining TTL (0 or less when it already expired)."""
        answer = self.call("lease/keepalive", {"ID": str(lease)})
        return int(answer.get("result", {}).get("TTL", 0))

    def lease_revoke(self, lease: int) -> None:
        with contextlib.suppress(EtcdError):
            self.call("lease/revoke", {"ID": str(lease)})

    # -- watch -------------------------------------------------------------

    @contextlib.contextmanager
    def watch_stream(self, key: str, start_revision: int, *,
                     prefix: bool = True) -> Iterator[WatchStream]:
        """An open watch on one live member; its results are read by iterating."""
        request: dict[str, Any] = {"key": b64(key), "start_revision": str(start_revision)}
        if prefix:
            request["range_end"] = prefix_end(key)
        cause = "no attempt"
        for endpoint in self._order():
            client = httpx.Client(timeout=httpx.Timeout(None, connect=1.0))
            try:
                stream = client.stream("POST", f"{endpoint}/v3/watch",
                                       json={"create_request": request})
                response = stream.__enter__()
            except httpx.TransportError as exc:
                client.close()
                cause = f"{endpoint}: {exc or type(exc).__name__}"
                continue
            watch = WatchStream(client, response)
            try:
                yield watch
            finally:
                watch.close()
                with contextlib.suppress(Exception):
                    stream.__exit__(None, None, None)
            return
        raise EtcdUnavailable(self.endpoints, cause)


def range_request(key: str, *, prefix: bool = False, revision: int = 0, limit: int = 0,
                  keys_only: bool = False, min_mod_revision: int = 0) -> dict[str, Any]:
    """A RangeRequest as the gateway takes it (a key, or every key under a prefix)."""
    request: dict[str, Any] = {"key": b64(key)}
    if prefix:
        request["range_end"] = prefix_end(key)
    if revision:
        request["revision"] = str(revision)
    if limit:
        request["limit"] = str(limit)
    if keys_only:
        request["keys_only"] = True
    if min_mod_revision:
        request["min_mod_revision"] = str(min_mod_revision)
    return request


class WatchStream:
    """The results of one watch; ``close()`` from any thread ends the iteration."""

    def __init__(self, client: httpx.Client, response: httpx.Response) -> None:
        self._client = client
        self._response = response
        self.closed = False

    def results(self) -> Iterator[dict[str, Any]]:
        """Each WatchResponse (created, events, compaction); raises EtcdError when etcd
        answers the watch with an error, httpx errors when the member goes away."""
        if self._response.status_code != 200:
            self._response.read()
            answer = self._response.json()
            raise EtcdError(int(answer.get("code", 2)), str(answer.get("message", answer)))
        for line in self._response.iter_lines():
            if not line.strip():
                continue
            message = json.loads(line)
            if "error" in message:
                error = message["error"]
                raise EtcdError(int(error.get("code", 2)), str(error.get("message", error)))
            yield message.get("result", {})

    def close(self) -> None:
        """Shut the connection's socket first: a read blocked in another thread returns at
        once (closing the response alone does not wake it), then release it all."""
        if self.closed:
            return
        self.closed = True
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self._response.close()
        with contextlib.suppress(Exception):
            self._client.close()
