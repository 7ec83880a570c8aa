"""Keeps a node connected: bootstrap dialing, rendezvous register/discover, an address book, redials.

py-libp2p blacklists a peer for 60 s after a failed dial and knows only its peerstore, so this loop
unblocks and redials with its own exponential backoff, up to the node's target. It is the only dialer:
hosts run through `p2p.host.running`, which stops py-libp2p's AutoConnector. The address book is saved
in the data dir, so a restarted node finds its old neighbours even when every bootstrap is gone.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import trio
from libp2p.abc import IHost
from libp2p.discovery.rendezvous.client import RendezvousClient
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from p2p.errors import P2PError
from storage.atomic import write_atomic

log = logging.getLogger(__name__)

BOOK_FILE = "peers.json"
DIAL_TIMEOUT_S = 5.0
RENDEZVOUS_TIMEOUT_S = 5.0
REGISTER_TTL_S = 2 * 3600
MAX_BOOK = 1000


class BootstrapAddrError(P2PError, ValueError):
    """A --bootstrap (or static peer) address is not a multiaddr ending in /p2p/<peer id>."""


def namespace_for(swarm_id: str) -> str:
    return f"swarm-node/{swarm_id}"


def parse_peer_addr(addr: str) -> tuple[str, str]:
    """Split '/ip4/../tcp/N/p2p/ID' into (peer id, transport address); raise BootstrapAddrError."""
    transport, sep, pid = addr.rpartition("/p2p/")
    if not sep or not transport or not pid:
        raise BootstrapAddrError(f"bootstrap address {addr!r} must look like /ip4/HOST/tcp/PORT/p2p/PEERID "
                                 "(the line swarm-bootstrap prints)")
    try:
        ID.from_base58(pid)
        Multiaddr(transport)
    except Exception as e:  # both parsers raise assorted types
        raise BootstrapAddrError(f"bootstrap address {addr!r} is not valid: {e}") from None
    return pid, transport


@dataclass
class _Backoff:
    due: float = 0.0
    delay: float = 0.0

    def failed(self, now: float, max_delay: float) -> None:
        self.delay = min(max(1.0, self.delay * 2), max_delay)
        self.due = now + self.delay * random.uniform(0.8, 1.2)

    def ok(self) -> None:
        self.delay = 0.0
        self.due = 0.0


class PeerKeeper:
    """Runs in the gossip service's trio thread; `emit` receives one line per event."""

    def __init__(self, host: IHost, swarm_id: str, bootstrap: list[str], data_dir: Path, target: int,
                 emit: Callable[[str], None], static: Sequence[str] = (), rediscover_s: float = 10.0,
                 max_backoff_s: float = 30.0):
        self.host = host
        self.namespace = namespace_for(swarm_id)
        self.bootstrap = dict(parse_peer_addr(a) for a in bootstrap)
        # Static peers are kept connected whatever the target (fixed topologies, trusted neighbours).
        self.static = dict(parse_peer_addr(a) for a in static)
        self.book_path = data_dir / BOOK_FILE
        self.target = target
        self.emit = emit
        self.rediscover_s = rediscover_s
        self.max_backoff_s = max_backoff_s
        self.me = host.get_id().to_base58()
        self.book: dict[str, list[str]] = self._load_book()
        self._backoff: dict[str, _Backoff] = {}
        self._last_discover: dict[str, float] = {}

    def connected_peers(self) -> list[str]:
        """Connected swarm peers, bootstraps excluded."""
        return [p.to_base58() for p in self.host.get_connected_peers() if p.to_base58() not in self.bootstrap]

    def hold_off(self, pid: str, seconds: float) -> None:
        """Do not dial `pid` (a banned peer) for `seconds`, whatever the target says."""
        backoff = self._backoff.setdefault(pid, _Backoff())
        backoff.due = max(backoff.due, trio.current_time() + seconds)

    async def run(self, tick_s: float = 1.0) -> None:
        while True:
            await self.tick()
            await trio.sleep(tick_s)

    async def tick(self) -> None:
        connected = {p.to_base58() for p in self.host.get_connected_peers()}
        book_before = dict(self.book)
        async with trio.open_nursery() as nursery:
            for pid, addr in self.bootstrap.items():
                nursery.start_soon(self._keep_bootstrap, pid, addr, pid in connected)
            now = trio.current_time()
            for pid, addr in self.static.items():
                if pid not in connected and self._backoff.setdefault(pid, _Backoff()).due <= now:
                    nursery.start_soon(self._dial, pid, [addr])
        self._learn_from_peerstore(connected)
        missing = self.target - len(self.connected_peers())
        if missing > 0:
            now = trio.current_time()
            candidates = [p for p in self.book if p not in connected and p not in self.bootstrap
                          and self._backoff.setdefault(p, _Backoff()).due <= now]
            random.shuffle(candidates)
            async with trio.open_nursery() as nursery:
                for pid in candidates[:missing]:
                    nursery.start_soon(self._dial, pid, self.book[pid])
        if self.book != book_before:
            self._save_book()

    async def _keep_bootstrap(self, pid: str, addr: str, connected: bool) -> None:
        if not connected:
            if self._backoff.setdefault(pid, _Backoff()).due > trio.current_time():
                return
            if not await self._dial(pid, [addr], bootstrap=True):
                return
            self._last_discover.pop(pid, None)
        last = self._last_discover.get(pid)
        now = trio.current_time()
        # Rediscover often while short of peers, rarely once the node stands on its own.
        if last is not None and now - last < (self.rediscover_s if self._short() else 6 * self.rediscover_s):
            return
        self._last_discover[pid] = now
        client = RendezvousClient(self.host, ID.from_base58(pid))
        with trio.move_on_after(RENDEZVOUS_TIMEOUT_S) as scope:
            try:
                await client.register(self.namespace, REGISTER_TTL_S)
                found, _cookie = await client.discover(self.namespace)
            except Exception as e:  # the bootstrap may vanish mid-request; retry on the next round
                log.info("rendezvous at …%s failed: %s", pid[-8:], e)
                return
        if scope.cancelled_caught:
            log.info("rendezvous at …%s timed out", pid[-8:])
            return
        new = 0
        for info in found:
            other = info.peer_id.to_base58()
            if other != self.me and other not in self.book:
                new += 1
            if other != self.me:
                self.book[other] = [_transport(str(a)) for a in info.addrs][:8]
        if new:
            self.emit(f"discovered {new} new peer(s) via bootstrap …{pid[-8:]}")

    async def _dial(self, pid: str, addrs: list[str], bootstrap: bool = False) -> bool:
        peer = ID.from_base58(pid)
        backoff = self._backoff.setdefault(pid, _Backoff())
        # py-libp2p's network interface lacks unblock_peer; the Swarm every host runs on has it
        cast(Swarm, self.host.get_network()).unblock_peer(peer)
        ok = False
        with trio.move_on_after(DIAL_TIMEOUT_S):
            try:
                await self.host.connect(PeerInfo(peer, [Multiaddr(a) for a in addrs]))
                ok = True
            except Exception as e:  # dial errors come in many types; all mean "try later"
                log.debug("dial …%s failed: %s", pid[-8:], e)
        if ok:
            backoff.ok()
            if bootstrap:
                self.emit(f"connected to bootstrap …{pid[-8:]}")
        else:
            first = backoff.delay == 0.0
            backoff.failed(trio.current_time(), self.max_backoff_s)
            if first:
                kind = "bootstrap" if bootstrap else "peer"
                self.emit(f"cannot reach {kind} …{pid[-8:]}; retrying with backoff")
        return ok

    def _short(self) -> bool:
        return len(self.connected_peers()) < self.target

    def _learn_from_peerstore(self, connected: set[str]) -> None:
        store = self.host.get_peerstore()
        for pid in connected - self.bootstrap.keys() - self.book.keys():
            try:
                addrs = [_transport(str(a)) for a in store.addrs(ID.from_base58(pid))]
            except Exception:  # no addresses known yet (identify still running)
                continue
            if addrs:
                self.book[pid] = addrs[:8]

    def _load_book(self) -> dict[str, list[str]]:
        try:
            raw = json.loads(self.book_path.read_text())
            book = {str(k): [str(a) for a in v] for k, v in raw.items() if k != self.me}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError, TypeError) as e:
            log.warning("ignoring unreadable address book %s (%s)", self.book_path, e)
            return {}
        valid = {}
        for pid, addrs in book.items():
            try:
                ID.from_base58(pid)
                valid[pid] = [str(Multiaddr(a)) for a in addrs]
            except Exception:
                log.warning("address book %s: skipping bad entry for %s", self.book_path, pid[:16])
        return valid

    def _save_book(self) -> None:
        if len(self.book) > MAX_BOOK:
            for pid in list(self.book)[: len(self.book) - MAX_BOOK]:
                del self.book[pid]
        try:
            write_atomic(self.book_path, json.dumps(self.book, indent=1).encode())
        except OSError as e:
            log.warning("cannot save address book %s: %s", self.book_path, e.strerror)


def _transport(addr: str) -> str:
    return addr.split("/p2p/")[0]
