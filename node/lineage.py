"""Lineage: a snapshot's ancestry, walked breadth-first through its parents (the neighbours' snapshots
merged into it and its publisher's own previous snapshot, node.provenance) with the merge weight and
similarity each one got.

Everything read is untrusted metadata, so the walk is bounded whatever it says: at most
`MAX_PARENTS_FOLLOWED` parents per snapshot (the count dropped is kept), `max_nodes` fetches,
`depth` generations, each fetch given `timeout` seconds (a fetch that does not return by then is
abandoned on its daemon thread). Up to `PARALLEL_FETCHES` snapshots are fetched at once, so even a
lineage whose ancestors are all gone ends within about `max_nodes / PARALLEL_FETCHES * timeout`.
A CID that is not one, a fetch that fails and a snapshot that does not decode become nodes marked
as such, never errors; edges closing a cycle are flagged once.

The walk takes a small fetch function (CID, timeout -> meta); `SnapshotSources` is the real one:
local snapshot caches first (node.publisher.SNAPSHOT_CACHE in data dirs), then IPFS.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from node.provenance import ProvenanceError, read_provenance
from storage.cid import normalize_cid
from storage.errors import BadContent, ContentNotFound, FetchTimeout, InvalidCid, StoreError, StoreUnavailable

MAX_PARENTS_FOLLOWED = 16  # announcements carry at most 16 parents (p2p.announcement.MAX_PARENTS)
DEFAULT_DEPTH = 6
DEFAULT_MAX_NODES = 200
DEFAULT_TIMEOUT_S = 10.0
PARALLEL_FETCHES = 8
_MAX_SHOWN_CHARS = 128  # an invalid "CID" is shown cut to this

# (cid, timeout in seconds) -> the snapshot's meta; raises StoreError when it cannot be had
FetchMeta = Callable[[str, float], dict[str, Any]]

OK, MISSING, UNREADABLE, INVALID, NOT_FOLLOWED = "ok", "missing", "unreadable", "invalid", "not followed"


@dataclass
class Edge:
    """A parent of a snapshot, with what its merger said of it."""

    cid: str
    weight: float | None = None  # its merge weight (None: an older publisher did not record it)
    similarity: float | None = None  # the similarity the merger gave it, when it scored it
    self_parent: bool = False  # the merger's own previous snapshot
    cycle: bool = False  # this edge closes a cycle (only hostile or forged metadata can make one)


@dataclass
class Ancestor:
    """One snapshot of the lineage; `status` says whether its meta could be read."""

    cid: str
    depth: int
    status: str = NOT_FOLLOWED
    note: str = ""
    peer_id: str | None = None
    round: int | None = None
    samples: int | None = None
    dp_epsilon: float | None = None
    train_loss: float | None = None
    parents: list[Edge] = field(default_factory=list)
    parents_dropped: int = 0  # parents beyond MAX_PARENTS_FOLLOWED, not followed


@dataclass
class Lineage:
    root: str
    nodes: dict[str, Ancestor]
    depth: int
    max_nodes: int
    fetched: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "depth": self.depth, "max_nodes": self.max_nodes, "fetched": self.fetched,
                "cycles": sum(e.cycle for n in self.nodes.values() for e in n.parents),
                "nodes": {cid: asdict(node) for cid, node in self.nodes.items()}}


class LineageTimeout(FetchTimeout):
    """A fetch did not return within its time."""


def _key(cid: str) -> tuple[str, str]:
    """(the node key, why it is invalid or ""): valid CIDs in canonical form."""
    try:
        return normalize_cid(cid), ""
    except InvalidCid as exc:
        return cid[:_MAX_SHOWN_CHARS], str(exc)[:200]


def _fetch_all(fetch: FetchMeta, cids: list[str], timeout: float) -> list[dict[str, Any] | StoreError]:
    """`fetch(cid, timeout)` of each CID at once, each on a daemon thread that is abandoned if it has
    not returned after `timeout`: the meta, or the StoreError that says why there is none."""
    boxes: list[dict[str, Any]] = [{} for _ in cids]

    def run(cid: str, box: dict[str, Any]) -> None:
        try:
            box["meta"] = fetch(cid, timeout)
        except Exception as exc:  # handed to the caller below, in its own thread
            box["error"] = exc

    workers = [threading.Thread(target=run, args=(cid, box), name="lineage-fetch", daemon=True)
               for cid, box in zip(cids, boxes, strict=True)]
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.start()
    out: list[dict[str, Any] | StoreError] = []
    for worker, box in zip(workers, boxes, strict=True):
        worker.join(max(deadline - time.monotonic(), 0.0))
        if worker.is_alive():
            out.append(LineageTimeout(f"not found within {timeout:g} s (--timeout)"))
        elif "error" in box:
            if not isinstance(box["error"], StoreError):
                raise box["error"]  # a bug in the fetch function, not a missing snapshot
            out.append(box["error"])
        elif not isinstance(box["meta"], dict):
            out.append(BadContent(f"its meta is a {type(box['meta']).__name__}, not a map"))
        else:
            out.append(box["meta"])
    return out


def _typed(meta: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = meta.get(key)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _fill(node: Ancestor, meta: dict[str, Any]) -> None:
    """The node's fields and parent edges from its meta, whatever that holds."""
    node.status = OK
    node.peer_id = _typed(meta, "peer_id", str)
    node.round = _typed(meta, "round", int)
    node.samples = _typed(meta, "samples", int)
    node.dp_epsilon = _typed(meta, "dp_epsilon", (int, float))
    node.train_loss = _typed(meta, "train_loss", (int, float))
    notes = []
    raw_parents = meta.get("parents", [])
    if not isinstance(raw_parents, list):
        notes.append(f"'parents' is a {type(raw_parents).__name__}, not a list: ignored")
        raw_parents = []
    try:
        weights, similarity = read_provenance(meta)
    except ProvenanceError as exc:
        notes.append(f"{exc}: merge weights unknown")
        weights, similarity = {}, {}
    named = [p if isinstance(p, str) else repr(p) for p in raw_parents]
    listed = set(named)
    # The self parent first: the key of parent_weights that `parents` does not list.
    ordered = [c for c in weights if c not in listed] + named
    unique = list(dict.fromkeys(ordered))
    # Only the followed ones are parsed as CIDs: parsing costs about a millisecond each.
    node.parents = [Edge(_key(cid)[0], weights.get(cid), similarity.get(cid), cid not in listed)
                    for cid in unique[:MAX_PARENTS_FOLLOWED]]
    node.parents_dropped = len(unique) - len(node.parents)
    if node.parents_dropped:
        notes.append(f"{len(unique)} parents listed, the first {MAX_PARENTS_FOLLOWED} followed")
    node.note = "; ".join(notes)


def walk(root: str, fetch: FetchMeta, *, depth: int = DEFAULT_DEPTH, max_nodes: int = DEFAULT_MAX_NODES,
         timeout: float = DEFAULT_TIMEOUT_S) -> Lineage:
    """The lineage of `root` to `depth` generations, fetching at most `max_nodes` snapshots."""
    key = _key(root)[0]
    lineage = Lineage(key, {key: Ancestor(key, 0)}, depth, max_nodes)
    queue = deque([key])
    while queue:
        batch: list[Ancestor] = []
        while queue and len(batch) < PARALLEL_FETCHES:
            node = lineage.nodes[queue.popleft()]
            invalid = _key(node.cid)[1]
            if invalid:
                node.status, node.note = INVALID, invalid
            elif lineage.fetched >= max_nodes:
                node.note = f"--max-nodes {max_nodes} reached"
            else:
                lineage.fetched += 1
                batch.append(node)
        for node, got in zip(batch, _fetch_all(fetch, [n.cid for n in batch], timeout), strict=True):
            if isinstance(got, StoreError):
                node.status, node.note = UNREADABLE if isinstance(got, BadContent) else MISSING, str(got)
                continue
            _fill(node, got)
            for edge in node.parents:
                if edge.cid not in lineage.nodes:
                    lineage.nodes[edge.cid] = Ancestor(edge.cid, node.depth + 1)
                    if node.depth < depth:
                        queue.append(edge.cid)
                    else:
                        lineage.nodes[edge.cid].note = f"beyond --depth {depth}"
    _flag_cycles(lineage)
    return lineage


def _flag_cycles(lineage: Lineage) -> None:
    """Flag the edges that go back to a snapshot on the current path of a depth-first walk from the
    root: every cycle has one, and without them the graph has none."""
    on_path: set[str] = set()
    done: set[str] = set()
    stack: list[tuple[str, int]] = [(lineage.root, 0)]
    on_path.add(lineage.root)
    while stack:
        cid, i = stack.pop()
        parents = lineage.nodes[cid].parents
        if i == len(parents):
            on_path.discard(cid)
            done.add(cid)
            continue
        stack.append((cid, i + 1))
        edge = parents[i]
        if edge.cid in on_path:
            edge.cycle = True
        elif edge.cid not in done:
            on_path.add(edge.cid)
            stack.append((edge.cid, 0))


def snapshot_caches(data_dirs: list[Path]) -> list[Path]:
    """The snapshot caches of `data_dirs`: a node's data dir, or a folder of them (a demo's work dir)."""
    from node.publisher import SNAPSHOT_CACHE

    found: list[Path] = []
    for directory in data_dirs:
        own = directory / SNAPSHOT_CACHE
        below = sorted(p for p in directory.glob(f"*/{SNAPSHOT_CACHE}") if p.is_dir())
        found += [own] if own.is_dir() else below
    return found


class SnapshotSources:
    """The real fetch function: local snapshot caches first, then the IPFS API (dropped, with one
    message, the first time it cannot be reached), then `given` (a snapshot file named on the command
    line, by its CID)."""

    def __init__(self, caches: list[Path], ipfs_api: str | None, *, max_size: int,
                 given: dict[str, bytes] | None = None) -> None:
        from storage import IpfsStore, LocalStore

        self.caches = [LocalStore(c) for c in caches]
        self.ipfs = IpfsStore(ipfs_api) if ipfs_api else None
        self.max_size = max_size
        self.given = given or {}
        self.ipfs_down = ""

    def _bytes(self, cid: str, timeout: float) -> bytes:
        if cid in self.given:
            return self.given[cid]
        for cache in self.caches:
            if cache.has(cid):
                return cache.get(cid, max_size=self.max_size)
        if self.ipfs is None:
            raise ContentNotFound(self.ipfs_down or "not in the local snapshot caches (--data-dir) "
                                  "and no IPFS API to ask (--ipfs-api)")
        try:
            return self.ipfs.get(cid, max_size=self.max_size, timeout=timeout)
        except FetchTimeout:
            raise
        except StoreUnavailable as exc:
            self.ipfs = None
            self.ipfs_down = f"not in the local snapshot caches; IPFS not asked: {exc}"
            raise ContentNotFound(self.ipfs_down) from None

    def __call__(self, cid: str, timeout: float) -> dict[str, Any]:
        from storage import decode

        meta: dict[str, Any] = decode(self._bytes(cid, timeout), max_size=self.max_size).meta
        return meta
