"""Manifest offer: a bootstrap tells joiners the CID of its swarm's manifest (`swarm-bootstrap --manifest`).

Protocol `/swarm-node/manifest/1.0.0`, one request and one reply per stream, both JSON objects; each side
writes its message and closes its write half, as reach does (docs/protocol.md). The request is
`{"swarm": ID}`; the reply `{"swarm": ID, "manifest": CID}`, or `"manifest": null` when the server
knows no manifest for that swarm, or `{"error": TEXT}` (e.g. it does not serve that swarm).

A bootstrap only repeats what its operator told it; it fetches nothing and vouches for nothing. The
joiner fetches the manifest from IPFS and checks it (`storage.manifest`) exactly as one given by hand,
and a reply is untrusted input like any other: sizes, time and the CID's form are checked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from p2p.addresses import LOOPBACK_LISTEN
from p2p.announcement import AnnouncementError, topic_for
from p2p.connections import parse_peer_addr
from p2p.errors import P2PError
from p2p.host import build_host, quiet_libp2p_logs, running
from p2p.streams import MessageTooLarge, open_stream, read_all, reply_object, reset, send_reply, send_request
from storage.cid import normalize_cid
from storage.errors import InvalidCid

log = logging.getLogger(__name__)

PROTOCOL_ID = TProtocol("/swarm-node/manifest/1.0.0")
MAX_REQUEST_BYTES = 256  # {"swarm": id of at most 64 characters}
MAX_REPLY_BYTES = 1024
READ_TIMEOUT_S = 5.0
ASK_TIMEOUT_S = 10.0  # a dial (5 s at most in practice) and one round trip


class ManifestOfferError(P2PError):
    """No usable answer: the peer could not be dialled, does not offer manifests, or replied badly."""


class ManifestOptionError(ManifestOfferError, ValueError):
    """A `swarm-bootstrap --manifest` value is not a CID (or SWARM=CID) of a swarm the bootstrap serves."""


def parse_manifest_options(values: Sequence[str], swarms: Sequence[str]) -> dict[str, str]:
    """swarm -> manifest CID from `--manifest` values: `CID` (the one swarm served) or `SWARM=CID`."""
    manifests: dict[str, str] = {}
    for value in values:
        swarm, sep, cid = value.rpartition("=")
        if not sep:
            if len(swarms) != 1:
                raise ManifestOptionError(f"--manifest {value}: this bootstrap serves {len(swarms)} swarms; "
                                          "say which one is meant, as --manifest SWARM=CID")
            swarm = swarms[0]
        elif swarm not in swarms:
            raise ManifestOptionError(f"--manifest {value}: swarm {swarm!r} is not served here; add "
                                      f"--swarm {swarm} or use one of {', '.join(swarms)}")
        try:
            manifests[swarm] = normalize_cid(cid)
        except InvalidCid as exc:
            raise ManifestOptionError(f"--manifest {value}: {exc} (give the CID `swarm-node manifest "
                                      "create` printed)") from None
    return manifests


class ManifestOfferService:
    """Answers manifest requests on a host: `ManifestOfferService(host, {swarm: cid})`. Every swarm the
    bootstrap serves is a key; a swarm without a manifest maps to ""."""

    def __init__(self, host: IHost, manifests: Mapping[str, str]) -> None:
        self._manifests = dict(manifests)
        host.set_stream_handler(PROTOCOL_ID, self.handle)

    def answer(self, data: bytes) -> dict[str, Any]:
        """The reply to one request's bytes (never raises)."""
        try:
            request = json.loads(data)
        except (ValueError, RecursionError):
            return {"error": "request is not JSON"}
        swarm = request.get("swarm") if isinstance(request, dict) else None
        if not isinstance(swarm, str):
            return {"error": 'request must be {"swarm": "<swarm id>"}'}
        if swarm not in self._manifests:
            return {"error": f"this bootstrap does not serve swarm {swarm[:64]!r}"}
        return {"swarm": swarm, "manifest": self._manifests[swarm] or None}

    async def handle(self, stream: INetStream) -> None:
        peer = "?"
        try:
            peer = stream.muxed_conn.peer_id.to_base58()[-8:]
            try:
                with trio.fail_after(READ_TIMEOUT_S):
                    reply = self.answer(await read_all(stream, MAX_REQUEST_BYTES))
            except trio.TooSlowError:
                reply = {"error": f"no complete request within {READ_TIMEOUT_S:.0f} s"}
            except MessageTooLarge as exc:
                reply = {"error": str(exc)}
            await send_reply(stream, reply, READ_TIMEOUT_S)
        except Exception as exc:  # an exception here would reach py-libp2p's swarm: log and drop
            log.info("manifest request from …%s failed: %s", peer, exc or type(exc).__name__)
            await reset(stream)


async def ask_manifest(host: IHost, peer: PeerInfo | ID, swarm: str, timeout: float = ASK_TIMEOUT_S
                       ) -> str | None:
    """The manifest CID `peer` offers for `swarm` (None: it knows none); a PeerInfo is dialled first.
    ManifestOfferError on any failure."""
    peer_id = peer.peer_id if isinstance(peer, PeerInfo) else peer
    who = f"bootstrap …{peer_id.to_base58()[-8:]}"
    try:
        with trio.fail_after(timeout):
            stream = await open_stream(host, peer, PROTOCOL_ID)
            await send_request(stream, json.dumps({"swarm": swarm}).encode())
            data = await read_all(stream, MAX_REPLY_BYTES)
            await stream.close()
    except trio.TooSlowError:
        raise ManifestOfferError(f"{who} did not answer within {timeout:.0f} s") from None
    except MessageTooLarge as exc:
        raise ManifestOfferError(f"{who} sent a bad reply: {exc}") from None
    except Exception as exc:  # dial and stream errors come in many libp2p types
        raise ManifestOfferError(f"cannot ask {who} (down, or a swarm-bootstrap older than manifest "
                                 f"offers): {exc or type(exc).__name__}") from None
    return parse_reply(data, who, swarm)


def parse_reply(data: bytes, who: str, swarm: str) -> str | None:
    """The CID in a reply (None: no manifest); ManifestOfferError naming `who` if the reply is bad."""
    reply = reply_object(data, who, ManifestOfferError, "manifest")
    cid = reply.get("manifest")
    if reply.get("swarm") != swarm or not (cid is None or isinstance(cid, str)):
        raise ManifestOfferError(f"{who} sent a malformed reply")
    if cid is None:
        return None
    try:
        return normalize_cid(cid)
    except InvalidCid:
        raise ManifestOfferError(f"{who} offered {cid[:80]!r}, which is not a CID") from None


@dataclass
class Offers:
    """What each bootstrap said: peer id -> CID ("" = it knows no manifest), and peer id -> why it gave
    no answer."""

    answers: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def cids(self) -> set[str]:
        return {cid for cid in self.answers.values() if cid}


def ask_bootstraps(bootstraps: Sequence[str], swarm: str, timeout: float = ASK_TIMEOUT_S) -> Offers:
    """Ask every bootstrap (`/ip4/../tcp/N/p2p/ID`) at once which manifest `swarm` uses. Runs its own
    short-lived host with a throwaway key (not the caller's identity: the caller's own host may be up
    or about to start, and one peer id must not be two hosts). Call from a thread without trio."""
    for addr in bootstraps:
        parse_peer_addr(addr)  # BootstrapAddrError, with a clear message, before anything starts
    try:
        topic_for(swarm)
    except AnnouncementError as exc:
        raise ManifestOfferError(str(exc)) from None
    quiet_libp2p_logs()
    return trio.run(_ask_all, list(bootstraps), swarm, timeout)


async def _ask_all(bootstraps: list[str], swarm: str, timeout: float) -> Offers:
    offers = Offers()
    host = build_host(create_new_key_pair())

    async def ask(addr: str) -> None:
        pid, transport = parse_peer_addr(addr)
        try:
            cid = await ask_manifest(host, PeerInfo(ID.from_base58(pid), [Multiaddr(transport)]), swarm,
                                     timeout)
            offers.answers[pid] = cid or ""
        except ManifestOfferError as exc:
            offers.failures[pid] = str(exc)

    # Outbound only: loopback listening is enough, and nothing of this host is advertised.
    async with running(host, [Multiaddr(LOOPBACK_LISTEN)]), trio.open_nursery() as nursery:
        for addr in bootstraps:
            nursery.start_soon(ask, addr)
    return offers
