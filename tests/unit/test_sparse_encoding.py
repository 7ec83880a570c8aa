"""Sparse models on the wire: storage.snapshot stores a pruned tensor (half or more exact zeros) as
mask bits + kept values (storage/sparse.py) under every encoding but topk-delta: exact and compact."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from storage import sparse
from storage.snapshot import SnapshotError, decode, encode
from swarm.models import build_model
from swarm.pruning import apply_mask, full_mask, mask_of, prune

torch.set_num_threads(1)


def pruned_cnn(density: float) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = build_model("fashion-cnn").state_dict()
    mask = full_mask(state)
    for _ in range(20):
        mask = prune(state, mask, rate=0.5, target_density=density)
    return apply_mask(state, mask)


@pytest.mark.parametrize("encoding", ["fp32", "fp16", "int8"])
def test_pruned_model_round_trips_exactly_and_keeps_its_mask(encoding: str) -> None:
    state = pruned_cnn(0.1)
    state["head.1.weight"].view(-1)[torch.nonzero(state["head.1.weight"].view(-1))[0]] = -0.0
    snap = decode(encode(state, encoding=encoding, meta={"round": 3}))
    assert snap.meta["round"] == 3
    assert float(mask_of(state)["head.1.weight"].float().mean()) < 0.1  # the big layer is stored sparse
    for k, v in mask_of(state).items():
        if encoding != "fp32" and float(v.float().mean()) > 0.5:
            continue  # the codec stores tensors with at least half zeros sparse; denser ones go lossy
        got = snap.state_dict[k]
        assert torch.equal(got.view(torch.int32), state[k].view(torch.int32)), k  # bit for bit, -0.0 too
        assert torch.equal(mask_of(snap.state_dict)[k], v)


def test_pruned_model_is_much_smaller_on_the_wire() -> None:
    dense = build_model("fashion-cnn").state_dict()
    state = pruned_cnn(0.1)
    # 10% of the values at 4 bytes + 1 bit per entry: about 7x fewer bytes before compression
    assert len(encode(state, encoding="fp32")) < len(encode(dense, encoding="fp32")) / 4


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=200),
       st.integers(0, 2**31 - 1))
def test_split_join_round_trips_any_values(values: list[float], seed: int) -> None:
    t = torch.tensor(values, dtype=torch.float32)
    t[torch.rand(len(values), generator=torch.Generator().manual_seed(seed)) < 0.5] = 0.0
    bits, kept = sparse.split(t)
    assert sparse.kept_count(bits, t.numel(), "t") == len(kept) == int((t.view(torch.int32) != 0).sum())
    assert torch.equal(sparse.join(bits, kept, list(t.shape)).view(torch.int32), t.view(torch.int32))
    state = {"a.weight": t.reshape(1, -1), "n": torch.arange(3)}
    got = decode(encode(state)).state_dict
    assert torch.equal(got["a.weight"].view(torch.int32), state["a.weight"].view(torch.int32))


def test_malformed_masks_raise_snapshot_error() -> None:
    bits, _ = sparse.split(torch.tensor([1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 4.0]))
    with pytest.raises(SnapshotError, match="mask has 1 bytes"):
        sparse.kept_count(bits[:1], 10, "t")
    with pytest.raises(SnapshotError, match="past the end"):
        sparse.kept_count(bits[:1] + bytes([0xFF]), 10, "t")
    assert sparse.kept_count(np.packbits(np.ones(10, bool)).tobytes(), 10, "t") == 10
