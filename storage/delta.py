"""topk-delta at both ends: which snapshot a publisher sends in full, and the bases a reader keeps.

A topk-delta snapshot carries only the entries that moved most since its base, a full snapshot the
reader must hold (or fetch) to rebuild the weights. The node's publisher sends a full fp32 snapshot,
a keyframe, every KEYFRAME_EVERY rounds and deltas against it in between: deltas never chain, so a
reader that missed some loses nothing, and only the keyframe must stay pinned while deltas name it.
Readers keep the few bases they decoded lately, as every delta between two keyframes names the
same one (`BaseCache`). The simulator's peers publish and read through the same two
(`storage.wire`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from storage.snapshot import Snapshot, encode

StateDict = dict[str, torch.Tensor]
DELTA = "topk-delta"
KEYFRAME_ENCODING = "fp32"  # lossless: the reader's base is bit for bit the publisher's
KEYFRAME_EVERY = 5
BASE_CACHE = 16  # bases a reader keeps: one per publisher whose deltas it merges is enough


@dataclass(frozen=True)
class Base:
    """A full snapshot readers hold: its CID and the state dict it decodes to."""

    cid: str
    state: StateDict


@dataclass(frozen=True)
class Outgoing:
    """An encoded snapshot to publish, in the encoding it actually got (a keyframe's is fp32)."""

    data: bytes
    encoding: str
    keyframe: StateDict | None = None  # a keyframe's state: the base of the deltas that follow it
    round: int = 0  # the round it was encoded for (DeltaEncoder)


def encode_against(state: StateDict, base: Base | None, *, encoding: str, meta: dict[str, Any] | None = None,
                   allow_nonfinite: bool = False) -> Outgoing:
    """`state` in `encoding`. topk-delta goes out as the changes since `base`, or in full (a keyframe)
    when there is none; other encodings ignore `base`."""
    if encoding != DELTA:
        data = encode(state, encoding=encoding, meta=meta, allow_nonfinite=allow_nonfinite)
        return Outgoing(data, encoding)
    if base is None:
        data = encode(state, encoding=KEYFRAME_ENCODING, meta=meta, allow_nonfinite=allow_nonfinite)
        return Outgoing(data, KEYFRAME_ENCODING, keyframe=state)
    data = encode(state, encoding=DELTA, meta={**(meta or {}), "base_cid": base.cid}, base=base.state,
                  allow_nonfinite=allow_nonfinite)
    return Outgoing(data, DELTA)


class DeltaEncoder:
    """A publisher's snapshots round by round: under topk-delta a keyframe first (in round 1, or the
    first round after a restart), then deltas against it until it is KEYFRAME_EVERY rounds old. By age,
    not by round number, so a publisher that skips rounds (a simulated peer nobody fetched) never
    sends a delta against a keyframe older than that either."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.keyframe: Base | None = None
        self.keyframe_round = 0

    def encode(self, state: StateDict, meta: dict[str, Any], *, round: int) -> Outgoing:
        due = self.keyframe is None or round - self.keyframe_round >= KEYFRAME_EVERY
        out = encode_against(state, None if due else self.keyframe, encoding=self.encoding, meta=meta)
        return replace(out, round=round)

    def published(self, outgoing: Outgoing, cid: str) -> str | None:
        """`outgoing` is stored under `cid`: a keyframe becomes the base of the deltas that follow.
        Returns the CID of the keyframe it replaced, which no delta names any more (the publisher
        may unpin it)."""
        if outgoing.keyframe is None:
            return None
        replaced = self.keyframe.cid if self.keyframe is not None and self.keyframe.cid != cid else None
        self.keyframe, self.keyframe_round = Base(cid, outgoing.keyframe), outgoing.round
        return replaced

    @property
    def pinned(self) -> set[str]:
        """CIDs to keep pinned however old they are: the keyframe the coming deltas name."""
        return {self.keyframe.cid} if self.keyframe is not None else set()


class BaseCache:
    """A reader's bases: the state dicts of the keyframes deltas named lately (the BASE_CACHE most
    recently used), each fetched with `fetch(cid)` the first time a delta names it."""

    def __init__(self, fetch: Callable[[str], StateDict]) -> None:
        self.fetch = fetch
        self.bases: OrderedDict[str, StateDict] = OrderedDict()

    def state_of(self, snapshot: Snapshot) -> StateDict:
        """The full weights of `snapshot`: a delta's changes written into its base, else as decoded."""
        if not snapshot.sparse:
            return snapshot.state_dict
        return snapshot.apply(self.base(snapshot.meta["base_cid"]))

    def base(self, cid: str) -> StateDict:
        if cid in self.bases:
            self.bases.move_to_end(cid)
            return self.bases[cid]
        state = self.bases[cid] = self.fetch(cid)
        while len(self.bases) > BASE_CACHE:
            self.bases.popitem(last=False)
        return state

    def __contains__(self, cid: str) -> bool:
        return cid in self.bases
