"""What a node shows about itself: the status record it publishes locally and its rich rendering.

The node writes `status.json` into its data dir (atomically) after every event; the live view of
`swarm-node join` and `swarm-node status --data-dir DIR` render the very same record, so a
second terminal sees what the first one shows, without any port beyond the file system.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from rich.console import Group
from rich.panel import Panel
from rich.table import Table

STATUS_FILE = "status.json"
MAX_EVENTS = 12


class Emit(Protocol):
    """How a node's parts report an event: one line for the user, plus fields for `--headless` JSON."""

    def __call__(self, message: str, /, **fields: object) -> None: ...


def short_id(peer_id: str | None, keep: int = 8) -> str:
    """Peer ids in logs and tables: the last characters are the ones that differ."""
    if not peer_id:
        return "-"
    return "…" + peer_id[-keep:] if len(peer_id) > keep else peer_id


@dataclass
class PeerRow:
    peer_id: str
    cid: str = ""
    round: int = 0
    similarity: float | None = None
    weight: float | None = None
    last_seen: float = 0.0
    fetch_ms: float | None = None
    merged: bool = False
    reach: str = ""  # direct, via pinner, inbound; "" until a snapshot of it arrived
    epsilon: float | None = None  # the DP epsilon its announcement says it spent; None: no DP


@dataclass
class NodeStatus:
    peer_id: str = ""
    swarm: str = ""
    role: str = "trainer"
    device: str = "cpu"
    round: int = 0
    rounds: int | None = None
    loss: float | None = None
    val_acc: float | None = None
    epsilon: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    ipfs: str = "starting"
    ipfs_api: str = ""
    ipfs_addrs: list[str] = field(default_factory=list)
    addrs: list[str] = field(default_factory=list)  # the libp2p addresses peers are told to dial
    gossip_peers: int = 0
    pinners: int = 0  # pinners our IPFS daemon keeps connected to
    state: str = "starting"
    pid: int = 0
    updated_at: float = 0.0
    peers: list[PeerRow] = field(default_factory=list)
    # the last merge (node.provenance.Provenance.record): round, self CID, weights and similarity by CID
    last_merge: dict[str, Any] | None = None
    events: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))

    def event(self, message: str) -> None:
        self.events.append((time.time(), message))

    def to_json(self) -> str:
        # list() copies the deque in one C call; asdict's deep copy of it runs Python code, which the
        # SIGTERM handler (it logs an event) can cut into: "deque mutated during iteration".
        events = list(self.events)
        record = asdict(replace(self, events=deque()))
        record["events"] = events
        return json.dumps(record)

    @classmethod
    def from_json(cls, text: str) -> NodeStatus:
        record: dict[str, Any] = json.loads(text)
        # Rows of older or newer nodes: missing fields take their defaults, unknown ones are dropped.
        peers = [PeerRow(**{k: v for k, v in row.items() if k in PeerRow.__dataclass_fields__})
                 for row in record.pop("peers", [])]
        events = deque((tuple(e) for e in record.pop("events", [])), maxlen=MAX_EVENTS)
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        return cls(**known, peers=peers, events=events)


def read_status(data_dir: Path) -> NodeStatus:
    """The last status a node wrote into `data_dir`; raises FileNotFoundError if none is there."""
    return NodeStatus.from_json((Path(data_dir) / STATUS_FILE).read_text())


def read_status_or_none(data_dir: Path) -> NodeStatus | None:
    """The last status a node wrote into `data_dir`, or None when there is none (yet) or it cannot be read."""
    try:
        return read_status(data_dir)
    except (OSError, ValueError):
        return None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ago(ts: float, now: float) -> str:
    if not ts:
        return "-"
    seconds = max(0.0, now - ts)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def render(status: NodeStatus, now: float | None = None) -> Group:
    """The live view: this node, its peer table, the latest events."""
    now = time.time() if now is None else now
    rounds = f"{status.round}/{status.rounds}" if status.rounds else str(status.round)
    me = Table.grid(padding=(0, 2))
    me.add_row("peer", short_id(status.peer_id, 12), "swarm", status.swarm, "role", status.role)
    me.add_row("device", status.device, "round", rounds, "state", status.state)
    me.add_row("loss", _fmt(status.loss, ".4f"), "val acc", _fmt(status.val_acc, ".3f"),
               "epsilon", "off (no DP)" if status.epsilon is None else f"{status.epsilon:.2f}")
    me.add_row("bytes in", f"{status.bytes_in:,}", "bytes out", f"{status.bytes_out:,}",
               "ipfs / gossip", f"{status.ipfs} / {status.gossip_peers} peers")
    me.add_row("dial me at", status.addrs[0] if status.addrs else "-", "pinners", str(status.pinners))
    peers = Table(title="peers", expand=True)
    for column in ("peer", "last CID", "round", "epsilon", "similarity", "weight", "last seen", "fetch",
                   "reached", "merged"):
        peers.add_column(column)
    for row in sorted(status.peers, key=lambda r: -(r.similarity or 0.0)):
        peers.add_row(
            short_id(row.peer_id), row.cid[-10:] if row.cid else "-", str(row.round),
            "no DP" if row.epsilon is None else f"{row.epsilon:.2f}", _fmt(row.similarity, ".3f"),
            _fmt(row.weight, ".2f"), _ago(row.last_seen, now),
            "-" if row.fetch_ms is None else f"{row.fetch_ms:.0f} ms", row.reach or "-",
            "yes" if row.merged else "",
        )
    events = "\n".join(time.strftime("%H:%M:%S ", time.localtime(t)) + msg for t, msg in status.events)
    title = f"swarm-node {short_id(status.peer_id)} (pid {status.pid})"
    return Group(Panel(me, title=title), peers, Panel(events or "no events yet", title="events"))
