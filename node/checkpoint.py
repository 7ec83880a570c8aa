"""Checkpoints: everything a node needs to resume after `kill -9`, written atomically every round.

A checkpoint holds the model and optimizer state, the round, the peer table, the strategy state
(DAC priors, PANM bag), the privacy accountant, the best model on the validation split so far, a
sparse model's personal pruning mask, the peer models PANM's metric compares with (`PeerHistory`) and
the random states of neighbour choice and batch order: a resumed node without DP chooses, trains and
scores as it would have had it never stopped (DP noise draws are not kept).
It is loaded with `weights_only=True`: a checkpoint file is data, never code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from storage.atomic import write_atomic

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used; the message says what to do."""


@dataclass
class Checkpoint:
    peer_id: str
    round: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    strategy: dict[str, Any] = field(default_factory=dict)
    peers: list[dict[str, Any]] = field(default_factory=list)
    privacy: dict[str, Any] = field(default_factory=dict)
    last_cid: str = ""
    best: dict[str, Any] = field(default_factory=dict)  # the best model on validation: model, loss, round
    merge: dict[str, Any] = field(default_factory=dict)  # the merge that made `model` (Provenance.record)
    mask: dict[str, torch.Tensor] = field(default_factory=dict)  # a sparse model's personal pruning mask
    # The peers' last two models scored, per peer (PANM's metric reads a peer's step between them)
    history: dict[str, Any] = field(default_factory=dict)
    draws: dict[str, Any] = field(default_factory=dict)  # random states: the strategy's, the batch order's


def save(data_dir: Path, checkpoint: Checkpoint) -> None:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **checkpoint.__dict__}, buffer)
    write_atomic(Path(data_dir) / CHECKPOINT_FILE, buffer.getvalue())


def load(data_dir: Path) -> Checkpoint | None:
    """The node's checkpoint, or None when it starts fresh."""
    path = Path(data_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({exc.__class__.__name__}); move it away to start fresh"
        ) from exc
    if not isinstance(record, dict) or record.pop("format", None) != FORMAT:
        raise CheckpointError(f"checkpoint {path} has an unknown format; move it away to start fresh")
    try:
        return Checkpoint(**record)
    except TypeError as exc:
        raise CheckpointError(
            f"checkpoint {path} is incomplete ({exc}); move it away to start fresh"
        ) from exc
