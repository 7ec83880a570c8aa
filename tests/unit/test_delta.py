"""topk-delta at both ends (storage/delta.py): the publisher's keyframe schedule and pinned set, the
reader's bounded cache of bases, and that a delta rebuilt through them equals a direct decode."""

from __future__ import annotations

import pytest
import torch

from storage import ContentNotFound, cid_of, decode, encode
from storage.delta import BASE_CACHE, KEYFRAME_EVERY, Base, BaseCache, DeltaEncoder, encode_against

StateDict = dict[str, torch.Tensor]


def model(step: int) -> StateDict:
    gen = torch.Generator().manual_seed(step)
    return {"w": torch.randn(30, 20, generator=gen), "b": torch.randn(20, generator=gen),
            "steps": torch.tensor(step)}


class Store:
    """Snapshots by CID, as IPFS would hold them; counts the bases readers fetch."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.fetched: list[str] = []

    def put(self, data: bytes) -> str:
        self.blobs[cid_of(data)] = data
        return cid_of(data)

    def fetch_base(self, cid: str) -> StateDict:
        self.fetched.append(cid)
        if cid not in self.blobs:
            raise ContentNotFound(f"{cid} is not stored")
        return decode(self.blobs[cid]).state_dict


def publish(encoder: DeltaEncoder, store: Store, rounds: range) -> list[tuple[str, str]]:
    """(encoding, CID) of each round's snapshot."""
    out = []
    for r in rounds:
        outgoing = encoder.encode(model(r), {"round": r}, round=r)
        cid = store.put(outgoing.data)
        encoder.published(outgoing, cid)
        out.append((outgoing.encoding, cid))
    return out


def test_a_keyframe_every_few_rounds_and_deltas_against_it_between() -> None:
    store, encoder = Store(), DeltaEncoder("topk-delta")
    sent = publish(encoder, store, range(1, 3 * KEYFRAME_EVERY + 2))
    keyframe_rounds = [r for r, (encoding, _) in enumerate(sent, start=1) if encoding == "fp32"]
    assert keyframe_rounds == [1, 1 + KEYFRAME_EVERY, 1 + 2 * KEYFRAME_EVERY, 1 + 3 * KEYFRAME_EVERY]
    keyframe = ""
    for r, (encoding, cid) in enumerate(sent, start=1):
        snap = decode(store.blobs[cid])
        assert snap.encoding == encoding and snap.meta["round"] == r
        if encoding == "fp32":
            keyframe = cid
        else:
            assert encoding == "topk-delta" and snap.meta["base_cid"] == keyframe


def test_the_first_round_after_a_restart_is_a_keyframe() -> None:
    store, encoder = Store(), DeltaEncoder("topk-delta")
    assert [e for e, _ in publish(encoder, store, range(8, 11))] == ["fp32", "topk-delta", "topk-delta"]


def test_a_keyframe_that_was_not_published_is_sent_again() -> None:
    encoder = DeltaEncoder("topk-delta")
    encoder.encode(model(1), {}, round=1)  # the put failed: published() never called
    assert encoder.encode(model(2), {}, round=2).encoding == "fp32"


def test_only_the_current_keyframe_must_stay_pinned() -> None:
    store, encoder = Store(), DeltaEncoder("topk-delta")
    assert encoder.pinned == set()
    sent = publish(encoder, store, range(1, KEYFRAME_EVERY + 1))
    assert encoder.pinned == {sent[0][1]}
    [(_, newer)] = publish(encoder, store, range(KEYFRAME_EVERY + 1, KEYFRAME_EVERY + 2))
    assert encoder.pinned == {newer}


def test_a_replaced_keyframe_is_named_so_its_publisher_can_unpin_it() -> None:
    store, encoder = Store(), DeltaEncoder("topk-delta")
    first = encoder.encode(model(1), {}, round=1)
    assert encoder.published(first, store.put(first.data)) is None  # nothing replaced
    delta = encoder.encode(model(2), {}, round=2)
    assert encoder.published(delta, store.put(delta.data)) is None  # a delta replaces no keyframe
    old = next(iter(encoder.pinned))
    keyframe = encoder.encode(model(3), {}, round=1 + KEYFRAME_EVERY)
    assert encoder.published(keyframe, store.put(keyframe.data)) == old


@pytest.mark.parametrize("encoding", ["fp32", "fp16", "int8"])
def test_other_encodings_send_every_snapshot_whole(encoding: str) -> None:
    store, encoder = Store(), DeltaEncoder(encoding)
    sent = publish(encoder, store, range(1, KEYFRAME_EVERY + 3))
    assert {e for e, _ in sent} == {encoding} and encoder.pinned == set()
    assert all("base_cid" not in decode(store.blobs[cid]).meta for _, cid in sent)


def test_a_delta_rebuilt_from_the_cached_base_equals_the_direct_decode() -> None:
    store, encoder = Store(), DeltaEncoder("topk-delta")
    [(_, keyframe), (_, delta)] = publish(encoder, store, range(1, 3))
    cache = BaseCache(store.fetch_base)
    rebuilt = cache.state_of(decode(store.blobs[delta]))
    direct = decode(encode(model(2), encoding="topk-delta", base=model(1), meta={"base_cid": keyframe}),
                    base=model(1)).state_dict
    assert rebuilt.keys() == direct.keys()
    assert all(torch.equal(rebuilt[k], direct[k]) for k in direct)
    assert not torch.equal(rebuilt["w"], model(1)["w"])  # the changes were written in
    assert store.fetched == [keyframe]


def test_a_full_snapshot_needs_no_base() -> None:
    store = Store()
    cache = BaseCache(store.fetch_base)
    full = decode(encode(model(3)))
    assert all(torch.equal(cache.state_of(full)[k], v) for k, v in model(3).items())
    assert store.fetched == []


def test_bases_are_fetched_once_and_the_least_recently_used_goes_first() -> None:
    store = Store()
    cids = [store.put(encode(model(i), meta={"created_at": 0.0})) for i in range(BASE_CACHE + 1)]
    cache = BaseCache(store.fetch_base)
    for cid in cids[:BASE_CACHE]:
        cache.base(cid)
    cache.base(cids[0])  # used again: now the most recent
    assert store.fetched == cids[:BASE_CACHE]
    cache.base(cids[BASE_CACHE])  # one too many: cids[1], the least recently used, is dropped
    assert len(cache.bases) == BASE_CACHE and cids[1] not in cache.bases and cids[0] in cache.bases
    assert torch.equal(cache.base(cids[0])["w"], model(0)["w"])
    cache.base(cids[1])
    assert store.fetched == [*cids, cids[1]]


def test_a_base_that_cannot_be_fetched_is_an_error_and_not_cached() -> None:
    store = Store()
    delta = decode(encode(model(2), encoding="topk-delta", base=model(1), meta={"base_cid": "bafk-gone"}))
    cache = BaseCache(store.fetch_base)
    with pytest.raises(ContentNotFound):
        cache.state_of(delta)
    assert cache.bases == {}


def test_without_a_base_topk_delta_goes_out_whole_and_other_encodings_ignore_the_base() -> None:
    full = encode_against(model(1), None, encoding="topk-delta")
    assert full.encoding == "fp32" and decode(full.data).encoding == "fp32"
    assert full.keyframe is not None and torch.equal(full.keyframe["w"], model(1)["w"])
    base = Base("bafk-base", model(1))
    assert decode(encode_against(model(2), base, encoding="topk-delta").data).meta["base_cid"] == "bafk-base"
    int8 = encode_against(model(2), base, encoding="int8")
    assert (int8.encoding, int8.keyframe) == ("int8", None) and decode(int8.data).encoding == "int8"
