"""Which addresses a peer tells others to dial, for its libp2p host and for its IPFS daemon.

A host listening on a wildcard (`/ip4/0.0.0.0/...`) is reachable on every interface address, so the
wildcard is expanded into them. A loopback address reaches nobody on another machine, so it is
advertised only by a peer that listens on loopback alone (the demo and tests, where every peer is on
one host). `--announce-addr` (a forwarded port on a home router) replaces all of it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from multiaddr import Multiaddr
from multiaddr.utils import get_network_addrs

from p2p.errors import P2PError

WILDCARD_IP4 = "0.0.0.0"
LOOPBACK_LISTEN = "/ip4/127.0.0.1/tcp/0"  # a port picked by the OS, reachable from this host only


class AddressError(P2PError, ValueError):
    """A --listen or --announce-addr value is not a usable multiaddr; the message says what to write."""


def parse_tcp(addr: str, what: str) -> Multiaddr:
    """`addr` as a multiaddr that starts /ip4/HOST/tcp/PORT; raise AddressError naming the option."""
    try:
        maddr = Multiaddr(addr)
        ip, port = maddr.value_for_protocol("ip4"), int(maddr.value_for_protocol("tcp"))
        ipaddress.IPv4Address(ip)
    except Exception:  # the multiaddr parser raises assorted types
        raise AddressError(f"{what} {addr!r} must look like /ip4/HOST/tcp/PORT, e.g. /ip4/0.0.0.0/tcp/4001"
                           ) from None
    if not 0 <= port <= 65535:
        raise AddressError(f"{what} {addr!r}: port {port} is not a TCP port")
    return maddr


def ip_of(addr: Multiaddr | str) -> str:
    """The /ip4/ part of a multiaddr, or "" when it has none."""
    try:
        return str(Multiaddr(str(addr)).value_for_protocol("ip4"))
    except Exception:  # no ip4 component, or not a multiaddr
        return ""


def is_loopback(addr: Multiaddr | str) -> bool:
    ip = ip_of(addr)
    return bool(ip) and ipaddress.IPv4Address(ip).is_loopback


def interface_ips() -> list[str]:
    """The IPv4 addresses of this host's interfaces, loopback and link-local left out."""
    ips = []
    for ip in get_network_addrs(4) or []:
        parsed = ipaddress.IPv4Address(ip)
        if not (parsed.is_loopback or parsed.is_link_local or parsed.is_unspecified):
            ips.append(ip)
    return ips


def advertised(listening: Sequence[Multiaddr | str], announce: Sequence[str] = ()) -> list[Multiaddr]:
    """The addresses to give peers for a host listening on `listening` (wildcards expanded, loopback
    kept only when it is all we listen on), or exactly `announce` when the user gave any."""
    if announce:
        return [Multiaddr(a) for a in announce]
    loopback_only = all(is_loopback(a) for a in listening)
    # A host with no interface but loopback (a container, a test namespace) can only be reached there.
    ips = interface_ips() or ["127.0.0.1"]
    out: list[str] = []
    for addr in map(str, listening):
        if ip_of(addr) == WILDCARD_IP4:
            out += [addr.replace(f"/ip4/{WILDCARD_IP4}/", f"/ip4/{ip}/", 1) for ip in ips]
        elif loopback_only or not is_loopback(addr):
            out.append(addr)
    return [Multiaddr(a) for a in dict.fromkeys(out)]
