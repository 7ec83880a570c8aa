"""Simulated peers' snapshots through the real codec, as a node publishes and reads them.

Each publisher encodes with its own `DeltaEncoder` (under topk-delta: keyframes, then deltas against
them) and each reader keeps a `BaseCache`: a reader pays for a keyframe the first time a delta names
it, or when it fetched the keyframe itself, never again while its cache holds it. Lossy encodings
reach readers as they decode them. The simulator calls this through `swarm.sim.wire.Wire`.
"""

from __future__ import annotations

from typing import Any

from storage.delta import DELTA, Base, BaseCache, DeltaEncoder, StateDict
from storage.snapshot import decode


class SnapshotWire:
    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.encoders: dict[int, DeltaEncoder] = {}
        self.latest: dict[int, tuple[int, str | None, bool]] = {}  # peer -> (bytes, keyframe, a delta?)
        self.keyframe_bytes: dict[int, int] = {}
        self.readers: dict[int, BaseCache] = {}

    def send(self, peer: int, state: StateDict, round: int) -> StateDict:
        encoder = self.encoders.setdefault(peer, DeltaEncoder(self.encoding))
        out = encoder.encode(state, {"created_at": 0.0}, round=round)  # a clock would vary the bytes
        base = encoder.keyframe if out.encoding == DELTA else None
        cap = 2 * sum(4 * v.numel() for v in state.values()) + (1 << 20)
        received = decode(out.data, max_size=cap, base=base.state if base else None, allow_nonfinite=True)
        if base is not None:
            self.latest[peer] = (len(out.data), base.cid, True)
        elif out.keyframe is not None:
            cid = f"peer{peer}-round{round}"  # unique per keyframe, all a CID is needed for here
            encoder.published(out, cid)
            self.keyframe_bytes[peer] = len(out.data)
            self.latest[peer] = (len(out.data), cid, False)
        else:
            self.latest[peer] = (len(out.data), None, False)
        return received.state_dict

    def cost(self, reader: int, peer: int) -> int:
        size, keyframe, delta = self.latest[peer]
        if keyframe is None:
            return size
        cache = self.readers.setdefault(reader, BaseCache(self._held))
        lacks = keyframe not in cache
        cache.base(keyframe)  # held from now on, or used again: most recently used
        return size + self.keyframe_bytes[peer] if delta and lacks else size

    @staticmethod
    def _held(cid: str) -> StateDict:
        """A reader's cache only tracks which bases it holds (and evicts as a node's does): deltas are
        decoded against the publisher's keyframe, which is a reader's base bit for bit."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "keyframes": {p: (e.keyframe.cid, e.keyframe_round, e.keyframe.state)
                          for p, e in self.encoders.items() if e.keyframe is not None},
            "latest": dict(self.latest),
            "keyframe_bytes": dict(self.keyframe_bytes),
            "readers": {r: list(c.bases) for r, c in self.readers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.encoders = {}
        for peer, (cid, round_, keyframe) in state["keyframes"].items():
            encoder = self.encoders[peer] = DeltaEncoder(self.encoding)
            encoder.keyframe, encoder.keyframe_round = Base(cid, keyframe), round_
        self.latest = {p: tuple(v) for p, v in state["latest"].items()}
        self.keyframe_bytes = dict(state["keyframe_bytes"])
        self.readers = {}
        for reader, held in state["readers"].items():
            cache = self.readers[reader] = BaseCache(self._held)
            for cid in held:
                cache.base(cid)
