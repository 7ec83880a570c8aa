"""IPFS calls that wait (fetches, pins), run a few at a time on worker threads.

Fetches and pins wait up to the fetch timeout when the holder is gone; one after another, a few
departed peers would hold up everyone else's snapshots. Before a call, the announcer's IPFS node is
dialled directly (its announced addresses): with no DHT, that is how our daemon finds the blocks. A
peer behind NAT cannot be dialled; its snapshots reach us through a pinner both of us are connected
to, or over a connection it opened to us.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from node.status import short_id
from p2p.announcement import Announcement
from storage import IpfsStore, StoreError

T = TypeVar("T")
IPFS_WORKERS = 4
# a peer's IPFS address that did not answer (dead daemon, partition) is dialled again after this long
IPFS_REDIAL_S = 30.0

Report = Callable[[str], None]  # one event line for the user


def timed(call: Callable[[Announcement], T], ann: Announcement) -> tuple[T | StoreError, float]:
    """`call(ann)`'s result, or its StoreError, and how long it took (run in an IPFS worker)."""
    started = time.monotonic()
    try:
        result: T | StoreError = call(ann)
    except StoreError as exc:
        result = exc
    return result, time.monotonic() - started


class IpfsWorkers:
    """The worker pool, which announced IPFS addresses are connected, and the pinners known; `call`s
    must touch no node state (they run on the workers)."""

    def __init__(self, store: IpfsStore, timeout_s: float, report: Report) -> None:
        self.store, self.timeout_s, self.report = store, timeout_s, report
        self.pool = ThreadPoolExecutor(IPFS_WORKERS, thread_name_prefix="ipfs")
        # Pinners are dialled on their own thread: queued behind fetches that wait out their timeout,
        # a NATed newcomer found its pinner only rounds later, and nobody could get its snapshots.
        self.pinner_dialer = ThreadPoolExecutor(1, thread_name_prefix="ipfs-pinners")
        self._lock = threading.Lock()
        self.dialled: dict[str, float] = {}  # address -> when to dial it again (inf: connected)
        self.pinners: dict[str, Announcement] = {}  # pinner peer id -> its newest presence
        self._notes: queue.SimpleQueue[str] = queue.SimpleQueue()  # events from the workers

    def submit(self, call: Callable[[Announcement], T], anns: list[Announcement]
               ) -> list[Future[tuple[T | StoreError, float]]]:
        """Start, for each announcement, a dial of the announcer's IPFS node then `call(ann)` on the
        workers (a dial can wait its whole timeout for a host behind NAT; the round must not)."""
        return [self.pool.submit(self._connected_then, call, ann) for ann in anns]

    def _connected_then(self, call: Callable[[Announcement], T], ann: Announcement
                        ) -> tuple[T | StoreError, float]:
        self.connect(ann)
        return timed(call, ann)

    def dial(self, ann: Announcement) -> None:
        """Dial the announcer's IPFS node on a worker, and nothing more."""
        self.pool.submit(self.connect, ann)

    def meet_pinner(self, ann: Announcement) -> None:
        """Keep our daemon connected to a pinner's: a pinner fetches our snapshots over the connection
        we open (we may be behind NAT, where nobody can dial us), and serves us the snapshots of
        peers we cannot dial."""
        if ann.publisher not in self.pinners:
            self.report(f"found pinner {short_id(ann.publisher)}")
        self.pinners[ann.publisher] = ann
        self.pinner_dialer.submit(self.connect, ann)

    def connect(self, ann: Announcement) -> None:
        """Dial each announced address that is not connected and not waiting to be dialled again."""
        now = time.monotonic()
        for addr in ann.addrs:
            with self._lock:
                if self.dialled.get(addr, 0.0) > now:
                    continue
                self.dialled[addr] = now + self.timeout_s  # being dialled: no second dial meanwhile
            ok = self.quietly(f"ipfs connect {addr}", self.store.connect, addr, self.timeout_s)
            with self._lock:
                self.dialled[addr] = math.inf if ok else time.monotonic() + IPFS_REDIAL_S

    def reach(self, ann: Announcement) -> str:
        """How this node gets the announcer's snapshots: "direct" when the two daemons are connected
        (a dial of an announced address succeeds then, whoever opened the connection), else "via
        pinner" (or "inbound", with no pinner known: over another peer's connection)."""
        with self._lock:
            if any(self.dialled.get(a) == math.inf for a in ann.addrs):
                return "direct"
        return "via pinner" if self.pinners else "inbound"

    def quietly(self, what: str, fn: Callable[..., object], *args: object) -> bool:
        """Run a store call whose failure is one event line, not the end of the round."""
        try:
            fn(*args)
            return True
        except StoreError as exc:
            self._notes.put(f"{what} failed: {exc}")
            return False

    def flush_notes(self) -> None:
        """Report the workers' events, on the node's thread (reports touch the node's state)."""
        while not self._notes.empty():
            self.report(self._notes.get_nowait())

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pinner_dialer.shutdown(wait=False, cancel_futures=True)
