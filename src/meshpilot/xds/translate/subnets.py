"""``destinationSubnets`` and ``sourceSubnet`` of ``tcp`` and ``tls`` route matches.

Istio's L4MatchAttributes and TLSMatchAttributes match the connection's destination IP
against ``destinationSubnets`` (any one) and its source IP against ``sourceSubnet``; a
bare address is a /32 (or /128). Where an address is known when the config is built (a
sidecar's own address is the source of all its app's connections and the destination the
app connected to; a gateway's listen address is the destination of every connection to
it) the match is decided then, as ``sourceLabels`` is. Where it is not (the client of a
gateway), the route becomes a filter chain on the source ranges that are its own:
:func:`first_match_ranges` keeps Istio's first-match order under Envoy's
most-specific-chain selection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network(text: str) -> Network:
    """A subnet as written (``10.0.0.0/8``, or a bare address); ValueError if neither."""
    return ipaddress.ip_network(text.strip(), strict=False)


def contains(subnets: Iterable[str], address: str) -> bool:
    """Whether ``address`` is in one of ``subnets`` (unparsable ones never match; the
    apply refuses them)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for text in subnets:
        try:
            if ip in network(text):
                return True
        except ValueError:
            continue
    return False


def _parsed(subnets: Iterable[str]) -> list[Network]:
    """The blocks that parse (the apply refuses the others; one stored before that
    matches nothing rather than failing the build)."""
    out = []
    for text in subnets:
        try:
            out.append(network(text))
        except ValueError:
            continue
    return out


def _minus(nets: list[Network], taken: Sequence[Network]) -> list[Network]:
    """``nets`` less every block of ``taken``, as a list of CIDR blocks."""
    out = list(nets)
    for block in taken:
        kept: list[Network] = []
        for net in out:
            if net.version != block.version or not net.overlaps(block):
                kept.append(net)
            elif not block.supernet_of(net):  # type: ignore[arg-type]
                kept.extend(net.address_exclude(block))  # type: ignore[arg-type]
        out = kept
    return out


def first_match_ranges(wanted: Sequence[Sequence[str] | None]
                       ) -> list[list[Network] | None]:
    """Per route in order, the source blocks that reach it: its ``sourceSubnet`` blocks
    less those of the routes before it; None for a route that takes every source left
    (a chain with no source ranges, which Envoy picks only when no chain's ranges hold
    the source). The blocks of different routes never overlap, so whichever chain Envoy
    finds most specific is the first route that matches. A route after one that takes
    every source, or whose blocks earlier routes took, gets ``[]`` (no chain)."""
    taken: list[Network] = []
    out: list[list[Network] | None] = []
    everything = False
    for subnets in wanted:
        if everything:
            out.append([])
        elif subnets is None:
            everything = True
            out.append(None)
        else:
            mine = _minus(_parsed(subnets), taken)
            taken.extend(mine)
            out.append(mine)
    return out
