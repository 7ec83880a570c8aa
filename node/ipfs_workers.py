"""IPFS calls that wait (fetches, pins), run a few at a time on worker threads.

Fetches and pins wait up to the fetch timeout when the holder is gone; one after another, a few
departed peers would hold up everyone else's snapshots. Before a call, the announcer's IPFS node is
dialled directly (its announced addresses): with no DHT, that is how our daemon finds the blocks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

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
    """The worker pool and which announced IPFS addresses are connected; `call`s must touch no node
    state (they run on the workers)."""

    def __init__(self, store: IpfsStore, timeout_s: float, report: Report) -> None:
        self.store, self.timeout_s, self.report = store, timeout_s, report
        self.pool = ThreadPoolExecutor(IPFS_WORKERS, thread_name_prefix="ipfs")
        self.dialled: dict[str, float] = {}  # address -> when to dial it again (inf: connected)

    def submit(self, call: Callable[[Announcement], T], anns: list[Announcement]
               ) -> list[Future[tuple[T | StoreError, float]]]:
        """Connect to each announcer's IPFS node, then start `call(ann)` for each on the workers."""
        for ann in anns:
            self.connect(ann)
        return [self.pool.submit(timed, call, ann) for ann in anns]

    def connect(self, ann: Announcement) -> None:
        now = time.monotonic()
        for addr in ann.addrs:
            if self.dialled.get(addr, 0.0) <= now:
                ok = self.quietly(f"ipfs connect {addr}", self.store.connect, addr, self.timeout_s)
                self.dialled[addr] = math.inf if ok else now + IPFS_REDIAL_S

    def quietly(self, what: str, fn: Callable[..., object], *args: object) -> bool:
        """Run a store call whose failure is one event line, not the end of the round."""
        try:
            fn(*args)
            return True
        except StoreError as exc:
            self.report(f"{what} failed: {exc}")
            return False

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
