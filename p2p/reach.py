"""Reach: how the swarm sees a peer, asked of another peer (the bootstrap serves it).

Protocol `/swarm-node/reach/1.0.0`, one request and one reply per stream, both JSON objects; each side
writes its message and closes its write half (docs/protocol.md). The client sends up to 8 candidate
listen addresses; the server answers with the address it sees the connection come from (`observed`),
its clock (`time`) and, for each candidate whose IP is the observed IP, whether a plain TCP connection
to it opens (`reachable`). The server never dials any other IP (the AutoNAT rule), so it cannot be used
to scan third parties.

Everything a remote peer sends is untrusted: the handler caps sizes and time and never raises, since an
exception in a stream handler would reach py-libp2p's swarm.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from p2p.errors import P2PError
from p2p.streams import MessageTooLarge, open_stream, read_all, reply_object, reset, send_reply, send_request

log = logging.getLogger(__name__)

PROTOCOL_ID = TProtocol("/swarm-node/reach/1.0.0")
MAX_CANDIDATES = 8
MAX_ADDR_CHARS = 200
MAX_REQUEST_BYTES = 4096  # 8 addresses of 200 characters, JSON-quoted, fit with room to spare
MAX_REPLY_BYTES = 8192
READ_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 3.0
ASK_TIMEOUT_S = 15.0  # a dial, the server's probes (3 s, run in parallel) and two round trips
MAX_CONCURRENT = 16  # requests served at once; more are refused, so probes cannot pile up

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ReachError(P2PError):
    """No usable reach answer: the peer could not be dialled, does not serve reach, or replied badly."""


class ReachRequestError(ReachError, ValueError):
    """A reach request breaks the protocol's limits (size, count, address length, format)."""


@dataclass(frozen=True)
class Reach:
    """One reach answer. `reachable` maps each candidate the server probed to whether it connected;
    candidates on another IP than `observed` are absent (never probed)."""

    observed: str
    server_time: float
    local_time: float  # this machine's clock half a round trip after the request left
    rtt: float
    reachable: Mapping[str, bool]

    @property
    def clock_skew_s(self) -> float:
        """How far the server's clock is ahead of ours (negative: behind)."""
        return self.server_time - self.local_time

    @property
    def directly_reachable(self) -> bool:
        return any(self.reachable.values())

    @property
    def observed_ip(self) -> str | None:
        """The IP part of `observed` (None if the server sent something that is not /ipX/A/tcp/P)."""
        parts = self.observed.split("/")
        ip = _ip(parts[2]) if len(parts) > 2 and parts[1] in ("ip4", "ip6") else None
        return None if ip is None else str(ip)


def encode_request(candidates: Sequence[str]) -> bytes:
    data = json.dumps({"candidates": list(candidates)}).encode()
    parse_request(data)  # refuse locally what the server would refuse
    return data


def parse_request(data: bytes) -> list[str]:
    """The candidate addresses of a request; ReachRequestError if it breaks a limit."""
    if len(data) > MAX_REQUEST_BYTES:
        raise ReachRequestError(f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        request = json.loads(data)
    except (ValueError, RecursionError):
        raise ReachRequestError("request is not JSON") from None
    candidates = request.get("candidates") if isinstance(request, dict) else None
    if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
        raise ReachRequestError('request must be {"candidates": [multiaddr strings]}')
    if len(candidates) > MAX_CANDIDATES:
        raise ReachRequestError(f"{len(candidates)} candidates; at most {MAX_CANDIDATES} are allowed")
    if any(len(c) > MAX_ADDR_CHARS for c in candidates):
        raise ReachRequestError(f"a candidate address is longer than {MAX_ADDR_CHARS} characters")
    return candidates


def observed_multiaddr(host: str, port: int) -> str:
    ip = _ip(host)
    if ip is None:
        raise ReachRequestError(f"remote address {host!r} is not an IP address")
    return f"/{'ip4' if ip.version == 4 else 'ip6'}/{ip}/tcp/{port}"


def probe_targets(candidates: Sequence[str], observed_ip: str) -> dict[str, tuple[str, int]]:
    """candidate -> (ip, port) for each /ip4|ip6/A/tcp/P candidate (optionally /p2p/ID) whose A is the
    observed IP; every other candidate is left out, so only the requester's own IP is ever dialled."""
    seen = _ip(observed_ip)
    targets: dict[str, tuple[str, int]] = {}
    if seen is None:
        return targets
    for candidate in candidates:
        parts = candidate.split("/")
        # "", "ip4", A, "tcp", P [, "p2p", ID]
        if len(parts) not in (5, 7) or parts[0] or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
            continue
        if len(parts) == 7 and parts[5] != "p2p":
            continue
        ip = _ip(parts[2])
        if ip is None or ip != seen or (ip.version == 4) != (parts[1] == "ip4"):
            continue
        if not parts[4].isascii() or not parts[4].isdigit() or not 0 < int(parts[4]) < 65536:
            continue
        targets[candidate] = (str(ip), int(parts[4]))
    return targets


def _ip(text: str) -> IPAddress | None:
    """The address, with an IPv4-mapped IPv6 address (a dual-stack socket's view) as plain IPv4."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


async def _tcp_opens(ip: str, port: int) -> bool:
    with trio.move_on_after(PROBE_TIMEOUT_S):
        try:
            sock = await trio.open_tcp_stream(ip, port)
        except OSError:
            return False
        await sock.aclose()
        return True
    return False


class ReachService:
    """Serves reach on a host: `ReachService(host)` registers the stream handler."""

    def __init__(self, host: IHost, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._slots = trio.Semaphore(MAX_CONCURRENT)
        host.set_stream_handler(PROTOCOL_ID, self.handle)

    async def handle(self, stream: INetStream) -> None:
        peer = "?"
        try:
            peer = stream.muxed_conn.peer_id.to_base58()[-8:]
            if self._slots.value == 0:
                await send_reply(stream, {"error": "busy; try again in a few seconds"}, READ_TIMEOUT_S)
                return
            async with self._slots:
                await send_reply(stream, await self._answer(stream), READ_TIMEOUT_S)
        except Exception as e:  # a broken or hostile peer must never take the service down
            log.info("reach request from …%s failed: %s", peer, e or type(e).__name__)
            await reset(stream)

    async def _answer(self, stream: INetStream) -> dict[str, Any]:
        try:
            with trio.fail_after(READ_TIMEOUT_S):
                candidates = parse_request(await read_all(stream, MAX_REQUEST_BYTES))
            remote = stream.get_remote_address()
            if remote is None:
                return {"error": "the server cannot tell which address you connect from"}
            observed = observed_multiaddr(*remote)
        except trio.TooSlowError:
            return {"error": f"no complete request within {READ_TIMEOUT_S:.0f} s"}
        except (ReachRequestError, MessageTooLarge) as e:
            return {"error": str(e)}
        targets = probe_targets(candidates, remote[0])
        reachable: dict[str, bool] = {}

        async def probe(candidate: str, ip: str, port: int) -> None:
            reachable[candidate] = await _tcp_opens(ip, port)

        async with trio.open_nursery() as nursery:
            for candidate, (ip, port) in targets.items():
                nursery.start_soon(probe, candidate, ip, port)
        return {"observed": observed, "time": self._clock(), "reachable": reachable}

async def ask_reach(host: IHost, peer: PeerInfo | ID, candidates: Sequence[str],
                    timeout: float = ASK_TIMEOUT_S) -> Reach:
    """Ask `peer` how it sees us; a PeerInfo is dialled first. ReachError on any failure."""
    request = encode_request(candidates)
    peer_id = peer.peer_id if isinstance(peer, PeerInfo) else peer
    who = f"peer …{peer_id.to_base58()[-8:]}"
    try:
        with trio.fail_after(timeout):
            stream = await open_stream(host, peer, PROTOCOL_ID)
            sent = time.monotonic()
            wall = time.time()
            await send_request(stream, request)
            data = await read_all(stream, MAX_REPLY_BYTES)
            rtt = time.monotonic() - sent
            await stream.close()
    except trio.TooSlowError:
        raise ReachError(f"{who} did not answer a reach request within {timeout:.0f} s") from None
    except MessageTooLarge:
        raise ReachError(f"{who} sent a reach reply larger than {MAX_REPLY_BYTES} bytes") from None
    except Exception as e:  # dial and stream errors come in many libp2p types
        raise ReachError(f"cannot ask {who} for reach (is it a swarm-bootstrap of this version?): "
                         f"{e or type(e).__name__}") from None
    return _parse_reply(data, who, wall + rtt / 2, rtt)


def _parse_reply(data: bytes, who: str, local_time: float, rtt: float) -> Reach:
    reply = reply_object(data, who, ReachError, "reach")
    observed, server_time, reachable = reply.get("observed"), reply.get("time"), reply.get("reachable")
    if (not isinstance(observed, str) or not isinstance(server_time, int | float)
            or isinstance(server_time, bool) or not isinstance(reachable, dict)
            or not all(isinstance(k, str) and isinstance(v, bool) for k, v in reachable.items())):
        raise ReachError(f"{who} sent a malformed reach reply")
    return Reach(observed=observed, server_time=float(server_time), local_time=local_time, rtt=rtt,
                 reachable=dict(reachable))

