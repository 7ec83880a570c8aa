"""Simulated peers' snapshots through the real codec (storage/wire.py): keyframes by age, what each
reader pays for a base, lossy encodings applied, and a wire that resumes exactly."""

from __future__ import annotations

import torch

from storage import decode, encode
from storage.delta import KEYFRAME_EVERY
from storage.wire import SnapshotWire

StateDict = dict[str, torch.Tensor]


def model(step: int) -> StateDict:
    gen = torch.Generator().manual_seed(step)
    return {"w": torch.randn(40, 30, generator=gen), "b": torch.randn(30, generator=gen)}


def fp32_size(state: StateDict) -> int:
    return len(encode(state, encoding="fp32"))


def test_a_reader_pays_for_a_keyframe_once_and_then_only_for_deltas() -> None:
    wire = SnapshotWire("topk-delta")
    wire.send(0, model(1), 1)  # a keyframe: reader 1 fetches it, reader 2 does not
    keyframe = wire.latest[0][0]
    assert abs(keyframe - fp32_size(model(1))) < 0.02 * keyframe  # a full fp32 snapshot
    assert wire.cost(1, 0) == keyframe
    wire.send(0, model(2), 2)
    delta = wire.latest[0][0]
    assert delta < keyframe / 10
    assert wire.cost(1, 0) == delta  # holds the keyframe it fetched
    assert wire.cost(2, 0) == delta + keyframe  # must fetch the base the delta names
    wire.send(0, model(3), 3)
    assert wire.cost(2, 0) == wire.latest[0][0]


def test_a_delta_decodes_against_the_keyframe_bit_for_bit() -> None:
    wire = SnapshotWire("topk-delta")
    assert torch.equal(wire.send(0, model(1), 1)["w"], model(1)["w"])  # keyframes are lossless
    got = wire.send(0, model(2), 2)
    sent = encode(model(2), encoding="topk-delta", base=model(1), meta={"base_cid": "k"})
    direct = decode(sent, base=model(1)).state_dict
    assert all(torch.equal(got[k], direct[k]) for k in got)
    assert not torch.equal(got["w"], model(2)["w"])  # lossy: only the top changes travel


def test_keyframes_go_by_age_even_when_a_publisher_skips_rounds() -> None:
    wire = SnapshotWire("topk-delta")
    kinds = []
    for r in (1, 3, 1 + KEYFRAME_EVERY, 2 + KEYFRAME_EVERY, 3 + 2 * KEYFRAME_EVERY):
        wire.send(0, model(r), r)
        kinds.append("delta" if wire.latest[0][2] else "keyframe")
    assert kinds == ["keyframe", "delta", "keyframe", "delta", "keyframe"]


def test_lossy_encodings_arrive_as_readers_decode_them_and_cost_their_size() -> None:
    wire = SnapshotWire("int8")
    got = wire.send(5, model(1), 1)
    sent = encode(model(1), encoding="int8", meta={"created_at": 0.0})
    assert wire.cost(0, 5) == wire.cost(1, 5) == len(sent)
    assert all(torch.equal(got[k], decode(sent).state_dict[k]) for k in got)


def test_a_resumed_wire_charges_and_decodes_as_the_uninterrupted_one() -> None:
    def play(wire: SnapshotWire, rounds: range) -> list:
        out = []
        for r in rounds:
            for peer in (0, 1):
                got = wire.send(peer, model(10 * peer + r), r)
                out.append((float(got["w"].sum()), wire.cost(2, peer), wire.cost(3 + r % 2, peer)))
        return out

    whole = SnapshotWire("topk-delta")
    expected = play(whole, range(1, 12))
    first = SnapshotWire("topk-delta")
    head = play(first, range(1, 5))
    resumed = SnapshotWire("topk-delta")
    resumed.load_state_dict(first.state_dict())
    assert head + play(resumed, range(5, 12)) == expected
