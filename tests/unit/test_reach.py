"""The reach protocol's pure parts: request limits, the AutoNAT rule (only the requester's own IP is
ever probed) and reply checking."""

from __future__ import annotations

import json

import pytest

from p2p.reach import (
    MAX_ADDR_CHARS,
    MAX_CANDIDATES,
    MAX_REQUEST_BYTES,
    Reach,
    ReachError,
    ReachRequestError,
    _parse_reply,
    encode_request,
    observed_multiaddr,
    parse_request,
    probe_targets,
)


def test_a_valid_request_round_trips() -> None:
    addrs = ["/ip4/203.0.113.7/tcp/4001", "/ip6/2001:db8::1/tcp/4001"]
    assert parse_request(encode_request(addrs)) == addrs
    assert parse_request(encode_request([])) == []


@pytest.mark.parametrize("data", [
    b"", b"not json", b"[1, 2]", b"{}", b'{"candidates": "/ip4/1.2.3.4/tcp/1"}',
    b'{"candidates": [1, 2]}', b'{"candidates": [null]}', b"[" * 3000 + b"]" * 3000,
    json.dumps({"candidates": ["/ip4/1.2.3.4/tcp/1"] * (MAX_CANDIDATES + 1)}).encode(),
    json.dumps({"candidates": ["/ip4/1.2.3.4/tcp/1" + "0" * MAX_ADDR_CHARS]}).encode(),
    b" " * (MAX_REQUEST_BYTES + 1),
])
def test_malformed_or_oversized_requests_are_refused(data: bytes) -> None:
    with pytest.raises(ReachRequestError):
        parse_request(data)


def test_the_client_refuses_locally_what_the_server_would_refuse() -> None:
    with pytest.raises(ReachRequestError, match="at most 8"):
        encode_request(["/ip4/1.2.3.4/tcp/1"] * 9)


def test_only_candidates_on_the_observed_ip_are_probed() -> None:
    candidates = [
        "/ip4/203.0.113.7/tcp/4001",
        "/ip4/203.0.113.7/tcp/4002/p2p/12D3KooWAbc",
        "/ip4/198.51.100.1/tcp/4001",  # a third party: never dialled
        "/ip4/0.0.0.0/tcp/4001",
        "/ip4/203.0.113.7/udp/4001",
        "/ip4/203.0.113.7/tcp/0",
        "/ip4/203.0.113.7/tcp/65536",
        "/ip4/203.0.113.7/tcp/٣",  # a non-ASCII digit
        "/ip4/203.0.113.7/tcp/4001/ws",
        "/dns4/example.org/tcp/4001",
        "/ip6/::ffff:203.0.113.7/tcp/4003",  # the same IP, but spelled as IPv6: not an ip4 address
        "garbage",
    ]
    assert probe_targets(candidates, "203.0.113.7") == {
        "/ip4/203.0.113.7/tcp/4001": ("203.0.113.7", 4001),
        "/ip4/203.0.113.7/tcp/4002/p2p/12D3KooWAbc": ("203.0.113.7", 4002),
    }


def test_a_dual_stack_servers_mapped_view_matches_the_ipv4_candidate() -> None:
    assert probe_targets(["/ip4/203.0.113.7/tcp/1"], "::ffff:203.0.113.7") == {
        "/ip4/203.0.113.7/tcp/1": ("203.0.113.7", 1)}
    assert observed_multiaddr("::ffff:203.0.113.7", 5) == "/ip4/203.0.113.7/tcp/5"
    assert observed_multiaddr("2001:db8::1", 5) == "/ip6/2001:db8::1/tcp/5"


def test_ipv6_candidates_match_an_ipv6_observer() -> None:
    assert probe_targets(["/ip6/2001:db8::1/tcp/7", "/ip6/2001:db8::2/tcp/7"], "2001:db8:0::1") == {
        "/ip6/2001:db8::1/tcp/7": ("2001:db8::1", 7)}


def test_an_unparsable_observed_address_probes_nothing() -> None:
    assert probe_targets(["/ip4/1.2.3.4/tcp/1"], "not-an-ip") == {}


def test_replies_are_checked() -> None:
    good = {"observed": "/ip4/203.0.113.7/tcp/5", "time": 100.0,
            "reachable": {"/ip4/203.0.113.7/tcp/1": True}}
    reach = _parse_reply(json.dumps(good).encode(), "peer", local_time=98.0, rtt=0.2)
    assert reach == Reach("/ip4/203.0.113.7/tcp/5", 100.0, 98.0, 0.2, {"/ip4/203.0.113.7/tcp/1": True})
    assert reach.clock_skew_s == 2.0 and reach.directly_reachable and reach.observed_ip == "203.0.113.7"
    with pytest.raises(ReachError, match="refused the reach request: busy"):
        _parse_reply(b'{"error": "busy"}', "peer", 0.0, 0.0)
    for bad in [b"", b"[]", b'{"observed": 1, "time": 1, "reachable": {}}',
                b'{"observed": "/ip4/1.2.3.4/tcp/1", "time": true, "reachable": {}}',
                b'{"observed": "/ip4/1.2.3.4/tcp/1", "time": 1, "reachable": {"a": 1}}']:
        with pytest.raises(ReachError):
            _parse_reply(bad, "peer", 0.0, 0.0)
