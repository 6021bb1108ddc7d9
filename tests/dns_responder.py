"""A tiny DNS server on loopback, for the tests of hosts outside the mesh registry.

A sidecar in ``ALLOW_ANY`` mode resolves an unknown host before passing the request
through; the tests point its resolver (mesh config ``dnsResolvers``) here, so no query of
theirs leaves the machine. It answers A questions for the names it is given (their
addresses), an empty NOERROR for other types of those names, NXDOMAIN for every other
name, and records every name it was asked about, so a test can say which lookups happened.

Hand-written over UDP (RFC 1035's header, question and one answer record): the few
bytes a stub resolver such as c-ares sends need nothing more.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence

TYPE_A = 1
NXDOMAIN = 3
TTL = 5


def _name(packet: bytes, offset: int) -> tuple[str, int]:
    """The question's name (no compression in questions) and the offset after it."""
    labels = []
    for _ in range(128):  # a name has at most 127 labels
        length = packet[offset]
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), offset
        labels.append(packet[offset:offset + length].decode("ascii", "replace"))
        offset += length
    raise ValueError("name too long")


Addresses = str | Sequence[str]
"""One address of a name, or several (each an A record of the answer)."""


def answer(query: bytes, names: Mapping[str, Addresses]) -> tuple[str, bytes]:
    """(the name asked for, the response to ``query``)."""
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount != 1:
        raise ValueError("one question per query")
    name, end = _name(query, 12)
    qtype, _ = struct.unpack("!HH", query[end:end + 4])
    question = query[12:end + 4]
    found = names.get(name)
    rcode = NXDOMAIN if found is None else 0
    addresses = [] if found is None or qtype != TYPE_A else \
        [found] if isinstance(found, str) else list(found)
    records = b"".join(struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, TTL, 4)
                       + ipaddress.IPv4Address(a).packed for a in addresses)
    header = struct.pack("!HHHHHH", ident, 0x8000 | (flags & 0x0100) | 0x0080 | rcode,
                         1, len(addresses), 0, 0)
    return name, header + question + records


class DnsResponder:
    """``with DnsResponder({"external.test": "127.0.0.1"}) as dns:`` then
    ``dns.address`` (``127.0.0.1:PORT``) and ``dns.asked`` (every name asked, in order)."""

    def __init__(self, names: Mapping[str, Addresses] | None = None) -> None:
        self.names: dict[str, Addresses] = dict(names or {})
        self.asked: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-responder", daemon=True)

    def __enter__(self) -> DnsResponder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():  # bounded by close(): each wait is 0.1 s at most
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                continue
            query, peer = self._sock.recvfrom(512)
            with contextlib.suppress(ValueError, IndexError, struct.error):
                name, response = answer(query, self.names)
                self.asked.append(name)
                self._sock.sendto(response, peer)


@contextlib.contextmanager
def dns_responder(names: Mapping[str, Addresses] | None = None) -> Iterator[DnsResponder]:
    with DnsResponder(names) as responder:
        yield responder
