"""Istio's L4MatchAttributes ``destinationSubnets`` / ``sourceSubnet`` semantics: an
address or CIDR block (host bits allowed, a bare address is one address), and the first
``tcp`` route that matches wins, which per-route source chains keep under Envoy's
most-specific-chain selection."""

from __future__ import annotations

from meshpilot.xds.translate.subnets import contains, first_match_ranges


def test_an_address_is_in_a_block_or_is_the_address() -> None:
    assert contains(["10.0.0.0/8", "127.0.0.1"], "127.0.0.1")
    assert contains(["127.0.0.9/8"], "127.10.0.7")  # host bits allowed, as Istio
    assert not contains(["10.0.0.0/8"], "127.0.0.1")
    assert contains(["::1/128"], "::1") and not contains(["::1"], "127.0.0.1")
    assert not contains(["not-a-block"], "127.0.0.1")
    assert not contains(["10.0.0.0/8"], "not-an-address")


def blocks(found: list[object]) -> list[object]:
    return [None if f is None else [str(n) for n in f] for f in found]  # type: ignore[attr-defined]


def test_later_routes_lose_what_earlier_ones_took() -> None:
    got = first_match_ranges([["127.0.0.0/31"], ["127.0.0.0/30", "fd00::/8"],
                              ["127.0.0.1/32"], None, ["10.0.0.0/8"]])
    assert blocks(got) == [["127.0.0.0/31"], ["127.0.0.2/31", "fd00::/8"], [], None, []]


def test_an_unparsable_block_matches_nothing() -> None:
    assert blocks(first_match_ranges([["bad", "10.0.0.0/8"]])) == [["10.0.0.0/8"]]
