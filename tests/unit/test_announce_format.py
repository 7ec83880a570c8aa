"""Announcement wire format: round trip, size limit, and a specific error for every kind of garbage."""

from __future__ import annotations

import contextlib
import dataclasses
import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.gossip_peer import cid_for

from p2p.announcement import (
    MAX_ADDR_LEN,
    MAX_ADDRS,
    MAX_PARENTS,
    MAX_SIZE,
    Announcement,
    AnnouncementError,
    topic_for,
)

CID = cid_for(b"snapshot")
INT64 = st.integers(-(2**63), 2**64 - 1)  # what msgpack can encode
PEER = "12D3KooWDDxDSjpcQYjbE3KFCAD722Q3WKL9vBcGUURjqAfQ52ke"


def make(**changes: object) -> Announcement:
    ann = Announcement(cid=CID, publisher=PEER, round=3, schema="cnn-abc123", samples=600, loss=0.42,
                       encoding="fp16", size=123_456, timestamp=1_700_000_000.5, parents=(cid_for(b"p"),),
                       dp_epsilon=1.5, role="trainer", addrs=("/ip4/127.0.0.1/tcp/4001/p2p/" + PEER,))
    return dataclasses.replace(ann, **changes)


def test_round_trip_keeps_every_field() -> None:
    ann = make()
    assert Announcement.from_bytes(ann.to_bytes()) == ann
    assert Announcement.from_bytes(make(loss=None, dp_epsilon=None).to_bytes()).loss is None


def test_wire_form_is_a_versioned_msgpack_map() -> None:
    wire = msgpack.unpackb(make().to_bytes())
    assert wire["v"] == 1 and wire["cid"] == CID and wire["parents"] == [cid_for(b"p")]


@pytest.mark.parametrize("changes, field", [
    ({"cid": "not-a-cid"}, "cid"), ({"round": -1}, "round"), ({"samples": 1.5}, "samples"),
    ({"loss": math.nan}, "loss"), ({"dp_epsilon": -1.0}, "dp_epsilon"), ({"encoding": "fp 32"}, "encoding"),
    ({"parents": ("Qm-broken",)}, "parent"), ({"addrs": ("no-slash",)}, "addrs"),
    ({"timestamp": math.inf}, "timestamp"),
])
def test_out_of_range_fields_are_named(changes: dict[str, object], field: str) -> None:
    with pytest.raises(AnnouncementError, match=field):
        make(**changes).to_bytes()


def test_largest_valid_announcement_fits_and_oversized_is_refused() -> None:
    largest = make(addrs=tuple("/" + "x" * (MAX_ADDR_LEN - 1) for _ in range(MAX_ADDRS)),
                   parents=tuple(cid_for(bytes([i])) for i in range(MAX_PARENTS)), schema="s" * 128,
                   publisher="p" * 128, encoding="e" * 64, role="r" * 64, labels="l" * 64,
                   round=2**64 - 1, samples=2**64 - 1, size=2**64 - 1)
    assert len(largest.to_bytes()) <= MAX_SIZE
    with pytest.raises(AnnouncementError, match="limit"):
        Announcement.from_bytes(b"\x80" * (MAX_SIZE + 1))


@pytest.mark.parametrize("data, reason", [
    (b"", "msgpack"), (b"\xc1", "msgpack"), (msgpack.packb([1, 2]), "map"),
    (msgpack.packb({"v": 2}), "version"), (msgpack.packb({"v": 1, "cid": CID}), "lacks"),
    (msgpack.packb({1: 2}), "msgpack"),
])
def test_garbage_raises_announcement_error(data: bytes, reason: str) -> None:
    with pytest.raises(AnnouncementError, match=reason):
        Announcement.from_bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(AnnouncementError):
        Announcement.from_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "cid", "publisher", "round", "loss", "parents", "addrs", "x"]),
                       st.one_of(INT64, st.text(max_size=20), st.floats(), st.none(),
                                 st.lists(INT64, max_size=3))))
def test_random_maps_never_raise_anything_else(wire: dict[str, object]) -> None:
    with contextlib.suppress(AnnouncementError):
        Announcement.from_bytes(msgpack.packb(wire))


def test_topic_names_the_swarm_and_refuses_odd_ids() -> None:
    assert topic_for("fashion-1") == "/swarm/fashion-1/announce/1"
    with pytest.raises(AnnouncementError, match="swarm id"):
        topic_for("a/b")
