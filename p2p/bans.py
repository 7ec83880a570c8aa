"""Puts the validator's flood bans into effect on a libp2p host, for nodes and the bootstrap alike.

AnnounceValidator decides who is banned (p2p/validator.py). A banned peer is put on pubsub's
blacklist, which drops its messages before the signature check, and disconnected; while banned, any
connection it (re)opens is closed at once, because pubsub still parses everything a connected peer
sends. Bans that have run out are lifted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from multiaddr import Multiaddr

from p2p.validator import AnnounceValidator

log = logging.getLogger(__name__)

CLOSE_QUEUE = 100
DISCONNECT_TIMEOUT_S = 5.0
LIFT_EVERY_S = 0.5


class BanEnforcer:
    """`validate` is the topic validator (sync); `run` is the task that disconnects and lifts bans.

    `event(text, level)` reports bans and lifts (default: this module's log), `count(key)` counts
    "bans" and "banned_disconnects", and `on_ban(peer_id, seconds)` lets the owner react too (a node
    stops dialling the peer)."""

    def __init__(self, host: IHost, pubsub: Any, validator: AnnounceValidator, *,
                 event: Callable[[str, int], None] | None = None, count: Callable[[str], None] | None = None,
                 on_ban: Callable[[str, float], None] | None = None) -> None:
        self.host, self.pubsub, self.validator = host, pubsub, validator
        self.event = event or (lambda text, level: log.log(level, "%s", text))
        self.count = count or (lambda _key: None)
        self.on_ban = on_ban
        self._to_close, self._closing = trio.open_memory_channel[ID](CLOSE_QUEUE)
        host.get_network().register_notifee(_BannedPeerCloser(pubsub, self._close_soon))

    def validate(self, _forwarder: ID, msg: rpc_pb2.Message) -> bool:
        ok = self.validator.check(msg.data, ID(msg.from_id).to_base58()) is not None
        if not ok:
            for pid, seconds in self.validator.take_bans():
                self._ban(pid, seconds)
        return ok

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._close_loop)
            nursery.start_soon(self._lift_loop)

    def _ban(self, pid: str, seconds: float) -> None:
        peer = ID.from_base58(pid)
        self.pubsub.add_to_blacklist(peer)
        if self.on_ban is not None:
            self.on_ban(pid, seconds)
        self._close_soon(peer)
        self.count("bans")
        self.event(f"peer …{pid[-8:]} banned for {seconds:.0f} s: more than "
                   f"{self.validator.policy.ban_after} announcements over the rate limit", logging.WARNING)

    def _close_soon(self, peer: ID) -> None:
        # Full or closed: the next reconnect of that peer queues it again.
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._to_close.send_nowait(peer)

    async def _close_loop(self) -> None:
        async for peer in self._closing:
            with trio.move_on_after(DISCONNECT_TIMEOUT_S):
                try:
                    await self.host.disconnect(peer)
                    self.count("banned_disconnects")
                except Exception as e:  # it may be gone already
                    log.debug("disconnect …%s failed: %s", peer.to_base58()[-8:], e)

    async def _lift_loop(self) -> None:
        while True:
            for pid in self.validator.lift_expired():
                self.pubsub.remove_from_blacklist(ID.from_base58(pid))
                self.event(f"ban on peer …{pid[-8:]} lifted", logging.INFO)
            await trio.sleep(LIFT_EVERY_S)


class _BannedPeerCloser(INotifee):
    """Closes every new connection of a blacklisted peer: py-libp2p has no per-peer connection gate,
    and pubsub reads and decodes whatever a connected peer sends, blacklisted or not."""

    def __init__(self, pubsub: Any, close_soon: Callable[[ID], None]):
        self.pubsub = pubsub
        self.close_soon = close_soon

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if self.pubsub.is_peer_blacklisted(peer):
            self.close_soon(peer)  # not here: closing inside the swarm's add_conn would break it
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        await trio.lowlevel.checkpoint()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        await trio.lowlevel.checkpoint()
