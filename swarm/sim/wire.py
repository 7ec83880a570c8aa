"""How snapshots travel between simulated peers: what a reader decodes and what it downloads.

The simulator is handed a `Wire` so swarm/ never depends on storage/: the CLI wires in the real
snapshot codec (`storage.wire.SnapshotWire`: encodings, topk-delta keyframes and every reader's cache
of bases, exactly as a node publishes and reads them); `RawWire`, the default, is lossless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

StateDict = dict[str, torch.Tensor]


class Wire(Protocol):
    def send(self, peer: int, state: StateDict, round: int) -> StateDict:
        """`peer` publishes `state` in `round`: the weights its readers decode from it."""

    def cost(self, reader: int, peer: int) -> int:
        """Bytes `reader` downloads to read `peer`'s latest snapshot, with any base it lacks."""

    def state_dict(self) -> dict[str, Any]:
        """Plain data (tensors, dicts, lists, str, int) to resume the wire from."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def fp32_bytes(state: StateDict) -> int:
    return sum(4 * v.numel() for v in state.values())


class RawWire:
    """Snapshots arrive as sent, each costing `size(state)` bytes (raw fp32 unless told)."""

    def __init__(self, size: Callable[[StateDict], int] = fp32_bytes) -> None:
        self.size = size
        self.sizes: dict[int, int] = {}

    def send(self, peer: int, state: StateDict, round: int) -> StateDict:
        self.sizes[peer] = self.size(state)
        return state

    def cost(self, reader: int, peer: int) -> int:
        return self.sizes[peer]

    def state_dict(self) -> dict[str, Any]:
        return {"sizes": dict(self.sizes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sizes = dict(state["sizes"])
