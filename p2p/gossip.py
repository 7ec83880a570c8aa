"""The gossip service: a libp2p host + gossipsub in its own trio thread, behind a small thread-safe API.

    svc = GossipService(GossipConfig(swarm_id="demo", data_dir=path, bootstrap=[addr]))
    svc.start()                       # returns when listening; raises GossipStartError
    svc.publish(announcement)         # non-blocking
    for ann in svc.drain(): ...       # validated announcements of other peers
    svc.peers(); svc.events(); svc.stats(); svc.stop()

Peers the validator bans for flooding are cut off by p2p/bans.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from p2p.addresses import LOOPBACK_LISTEN, AddressError, parse_tcp
from p2p.announcement import Announcement, AnnouncementError, topic_for
from p2p.bans import BanEnforcer
from p2p.connections import PeerKeeper, parse_peer_addr
from p2p.errors import P2PError
from p2p.host import MeshParams, build_host, build_pubsub, gossiping, innermost_error, quiet_libp2p_logs
from p2p.identity import KEY_FILE, load_or_create, peer_id_of
from p2p.validator import AnnounceValidator, ValidationPolicy

log = logging.getLogger(__name__)

MAX_EVENTS = 200
OUTBOX_SIZE = 1000
SEND_GRACE_S = 0.5  # on stop, after the last publish: time for py-libp2p to write it to the peers


class GossipError(P2PError, RuntimeError):
    """The gossip service was used wrongly (e.g. publish before start); the message says what to do."""


class GossipStartError(GossipError):
    """The service could not start listening; the message names the cause."""


@dataclass
class GossipConfig:
    swarm_id: str
    data_dir: Path
    listen: str = LOOPBACK_LISTEN
    announce: list[str] = field(default_factory=list)  # replaces the advertised addresses (a forwarded port)
    bootstrap: list[str] = field(default_factory=list)
    static_peers: list[str] = field(default_factory=list)
    target_peers: int = 6
    policy: ValidationPolicy = field(default_factory=ValidationPolicy)
    mesh: MeshParams = field(default_factory=MeshParams)
    inbox_size: int = 10_000
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    flush_timeout_s: float = 2.0  # on stop: how long announcements still queued may take to go out
    on_announcement: Callable[[Announcement], None] | None = None


class GossipService:
    def __init__(self, config: GossipConfig):
        self.config = config
        self.topic = topic_for(config.swarm_id)
        for addr in [*config.bootstrap, *config.static_peers]:
            parse_peer_addr(addr)  # fail early, in the caller's thread, with a clear message
        self.peer_id = ""
        self.addrs: list[str] = []
        self._validator = AnnounceValidator(config.policy)
        self._inbox: queue.Queue[Announcement] = queue.Queue(config.inbox_size)
        self._events: deque[tuple[float, str]] = deque(maxlen=MAX_EVENTS)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._peers: list[str] = []
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._outbox: trio.MemorySendChannel[bytes] | None = None
        self._ready = threading.Event()
        self._flushed = threading.Event()  # the send loop has sent all that was queued before stop()
        self._error: BaseException | None = None

    # -- public, thread-safe ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the host; return once it listens. Raise GossipStartError (or IdentityError) on failure."""
        if self._thread is not None:
            raise GossipError("gossip service already started; create a new GossipService to restart")
        quiet_libp2p_logs()
        data_dir = Path(self.config.data_dir)
        key_pair = load_or_create(data_dir / KEY_FILE)
        self.peer_id = peer_id_of(key_pair)
        try:
            listen = parse_tcp(self.config.listen, "--listen")
            for addr in self.config.announce:
                parse_tcp(addr, "--announce-addr")
        except AddressError as e:
            raise GossipStartError(str(e)) from None
        self._thread = threading.Thread(target=self._run_thread, args=(key_pair, listen, data_dir),
                                        name="gossip", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.config.start_timeout_s):
            self.stop()
            raise GossipStartError(f"libp2p host did not start within {self.config.start_timeout_s} s")
        if self._error is not None:
            self._thread.join(self.config.stop_timeout_s)
            raise GossipStartError(f"cannot listen on {self.config.listen}: {self._error}") from None

    def stop(self) -> None:
        """Send what is queued (bounded by flush_timeout_s), close the host and wait for the thread
        (bounded by stop_timeout_s). Idempotent."""
        token, cancel = self._token, self._cancel
        if token is not None and cancel is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._close_outbox)
                self._flushed.wait(self.config.flush_timeout_s)
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(cancel.cancel)
        if self._thread is not None:
            self._thread.join(self.config.stop_timeout_s)
            if self._thread.is_alive():
                log.warning("gossip thread did not stop within %.0f s", self.config.stop_timeout_s)
        rejected = self._validator.rejects()
        if rejected:
            with self._lock:
                bans = self._counts["bans"]
            log.warning("gossip stopped: rejected %d announcement(s) %s, %d ban(s)", sum(rejected.values()),
                        dict(sorted(rejected.items())), bans)

    def publish(self, announcement: Announcement) -> None:
        """Queue an announcement for sending; never blocks. Raises AnnouncementError if it is invalid."""
        token = self._token
        if token is None or not self._ready.is_set():
            raise GossipError("gossip service is not running: call start() first")
        if announcement.publisher != self.peer_id:
            raise AnnouncementError(f"publisher must be this node's peer id {self.peer_id}, "
                                    "or peers drop the announcement as forged")
        data = announcement.to_bytes()
        try:
            token.run_sync_soon(self._enqueue, data)
        except trio.RunFinishedError:
            raise GossipError("gossip service has stopped") from None

    def drain(self) -> list[Announcement]:
        """All validated announcements from other peers received since the last call."""
        out = []
        while True:
            try:
                out.append(self._inbox.get_nowait())
            except queue.Empty:
                return out

    def peers(self) -> list[str]:
        """Peer ids of connected swarm peers (bootstraps excluded), refreshed every 0.5 s."""
        with self._lock:
            return list(self._peers)

    def events(self) -> list[tuple[float, str]]:
        """Recent (unix time, one-line text) events, oldest first."""
        with self._lock:
            return list(self._events)

    def stats(self) -> dict[str, Any]:
        """Counters (published, received, ...), `peers`, `topic_peers` (peers subscribed to our topic,
        bootstraps included) and `rejected` by cause."""
        with self._lock:
            counts = dict(self._counts)
            n_peers = len(self._peers)
        return {**counts, "peers": n_peers, "rejected": self._validator.rejects()}

    # -- trio thread --------------------------------------------------------------------------------

    def _run_thread(self, key_pair: Any, listen: Multiaddr, data_dir: Path) -> None:
        try:
            trio.run(self._main, key_pair, listen, data_dir)
        except BaseException as group:  # reported to start(), or logged if it happens later
            e = innermost_error(group)
            if not self._ready.is_set():
                self._error = e
            else:
                log.error("gossip service stopped: %s: %s", type(e).__name__, e)
        finally:
            self._ready.set()

    async def _main(self, key_pair: Any, listen: Multiaddr, data_dir: Path) -> None:
        host = build_host(key_pair, self.config.announce)
        pubsub, router = build_pubsub(host, self.config.mesh)
        send, receive = trio.open_memory_channel[bytes](OUTBOX_SIZE)
        with trio.CancelScope() as cancel:
            self._cancel = cancel
            self._token = trio.lowlevel.current_trio_token()
            async with gossiping(host, pubsub, router, [listen]) as addrs:
                keeper = PeerKeeper(host, self.config.swarm_id, self.config.bootstrap, data_dir,
                                    self.config.target_peers, self._event, self.config.static_peers)
                bans = BanEnforcer(host, pubsub, self._validator, event=self._event, count=self._count,
                                   on_ban=keeper.hold_off)
                pubsub.set_topic_validator(self.topic, bans.validate, False)
                sub = await pubsub.subscribe(self.topic)
                self.addrs = [str(a) for a in addrs]
                self._outbox = send
                self._event(f"listening on {', '.join(self.addrs)}")
                self._ready.set()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._receive_loop, sub)
                    nursery.start_soon(self._send_loop, pubsub, receive)
                    nursery.start_soon(keeper.run)
                    nursery.start_soon(self._watch_peers, keeper, pubsub)
                    nursery.start_soon(bans.run)

    def _enqueue(self, data: bytes) -> None:
        try:
            if self._outbox is None:
                raise trio.WouldBlock
            self._outbox.send_nowait(data)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._count("publish_dropped")

    def _close_outbox(self) -> None:
        if self._outbox is None:
            self._flushed.set()
        else:
            self._outbox.close()  # the send loop ends once it has sent what is queued

    async def _send_loop(self, pubsub: Any, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        last_published = -math.inf
        async for data in receive:
            try:
                await pubsub.publish(self.topic, data)
                self._count("published")
                last_published = trio.current_time()
            except Exception as e:  # keep serving; one failed publish must not end the service
                self._count("publish_failed")
                log.warning("publish failed: %s: %s", type(e).__name__, e)
        # py-libp2p's publish returns before the message is on the wire: give it time to leave.
        await trio.sleep_until(last_published + SEND_GRACE_S)
        self._flushed.set()

    async def _receive_loop(self, sub: Any) -> None:
        # Drained in its own task: py-libp2p drops silently once 32 messages wait in a subscription.
        own_id = ID.from_base58(self.peer_id).to_bytes()
        while True:
            msg = await sub.get()
            if msg.from_id == own_id:
                continue
            try:
                ann = Announcement.from_bytes(msg.data)
            except AnnouncementError:  # cannot happen after validation, but never trust that
                continue
            self._count("received")
            try:
                self._inbox.put_nowait(ann)
            except queue.Full:
                self._count("inbox_dropped")
            if self.config.on_announcement is not None:
                try:
                    self.config.on_announcement(ann)
                except Exception as e:
                    log.warning("on_announcement callback failed: %s: %s", type(e).__name__, e)

    async def _watch_peers(self, keeper: PeerKeeper, pubsub: Any) -> None:
        before: set[str] = set()
        while True:
            now = set(keeper.connected_peers())
            for pid in sorted(now - before):
                self._event(f"peer …{pid[-8:]} connected")
            for pid in sorted(before - now):
                self._event(f"peer …{pid[-8:]} disconnected")
            with self._lock:
                self._peers = sorted(now)
                self._counts["topic_peers"] = len(pubsub.peer_topics.get(self.topic, ()))
            before = now
            await trio.sleep(0.5)

    def _event(self, text: str, level: int = logging.INFO) -> None:
        log.log(level, "%s", text)
        with self._lock:
            self._events.append((time.time(), text))

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1
