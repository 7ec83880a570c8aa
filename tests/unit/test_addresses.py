"""Which addresses a peer advertises (p2p/addresses.py): never loopback to other hosts, wildcards
expanded, a forwarded port given by the user replaces everything."""

from __future__ import annotations

import pytest

from node.config import ConfigError, NodeConfig
from p2p import addresses
from p2p.addresses import AddressError, advertised, parse_tcp


@pytest.fixture
def two_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(addresses, "get_network_addrs",
                        lambda version: ["127.0.0.1", "192.0.2.5", "169.254.1.1", "198.51.100.9"])


def texts(addrs: list) -> list[str]:
    return [str(a) for a in addrs]


def test_a_wildcard_becomes_every_interface_but_loopback_and_link_local(two_interfaces: None) -> None:
    assert texts(advertised(["/ip4/0.0.0.0/tcp/4001"])) == ["/ip4/192.0.2.5/tcp/4001",
                                                          "/ip4/198.51.100.9/tcp/4001"]


def test_loopback_is_advertised_only_by_a_peer_listening_on_loopback_alone(two_interfaces: None) -> None:
    assert texts(advertised(["/ip4/127.0.0.1/tcp/5"])) == ["/ip4/127.0.0.1/tcp/5"]
    # Observed addresses join the listen ones (identify): then loopback would reach nobody else.
    assert texts(advertised(["/ip4/127.0.0.1/tcp/5", "/ip4/203.0.113.4/tcp/9"])) == ["/ip4/203.0.113.4/tcp/9"]


def test_a_host_with_only_loopback_advertises_it_for_a_wildcard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(addresses, "get_network_addrs", lambda version: ["127.0.0.1"])
    assert texts(advertised(["/ip4/0.0.0.0/tcp/7"])) == ["/ip4/127.0.0.1/tcp/7"]


def test_announce_addresses_replace_everything(two_interfaces: None) -> None:
    assert texts(advertised(["/ip4/0.0.0.0/tcp/4001"], ["/ip4/203.0.113.7/tcp/4001"])) == [
        "/ip4/203.0.113.7/tcp/4001"]


@pytest.mark.parametrize("bad", ["/dns4/example.org/tcp/1", "not an addr", "/ip4/1.2.3.4/udp/5",
                                 "/ip4/999.1.1.1/tcp/1"])
def test_a_listen_address_must_be_ip4_tcp(bad: str) -> None:
    with pytest.raises(AddressError, match=r"--listen .* must look like /ip4/HOST/tcp/PORT"):
        parse_tcp(bad, "--listen")


def test_the_node_refuses_a_bad_announce_address_or_ipfs_port_before_starting() -> None:
    with pytest.raises(ConfigError, match="must look like /ip4/HOST/tcp/PORT"):
        NodeConfig(announce_addr=["/ip4/203.0.113.7/udp/1"])
    with pytest.raises(ConfigError, match="ipfs_swarm_port"):
        NodeConfig(ipfs_swarm_port=70000)
    assert NodeConfig().listen == "/ip4/0.0.0.0/tcp/0"
