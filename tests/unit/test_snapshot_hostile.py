"""Hostile snapshot input: every malformed blob raises SnapshotError quickly, with bounded memory."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import pytest
import torch
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import SnapshotError, decode, encode

torch.set_num_threads(1)
SMALL = {"conv.weight": torch.randn(4, 2, 3, 3), "conv.bias": torch.randn(4), "bn.count": torch.tensor(5),
         "mask": torch.tensor([True, False])}
GOOD = encode(SMALL, meta={"peer_id": "p", "round": 1})


def _unwrap(data: bytes) -> dict[str, Any]:
    plain = zstandard.ZstdDecompressor().decompress(data)
    return msgpack.unpackb(plain[:-32], raw=False)


def _wrap_plain(plain: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(plain + hashlib.sha256(plain).digest())


def _wrap(doc: Any) -> bytes:
    return _wrap_plain(msgpack.packb(doc, use_bin_type=True))


def _with(change: dict[str, Any] | None = None, tensor0: dict[str, Any] | None = None) -> bytes:
    doc = _unwrap(GOOD)
    doc["tensors"][0].update(tensor0 or {})
    doc.update(change or {})
    return _wrap(doc)


def test_unwrap_helper_reproduces_a_valid_snapshot() -> None:
    # Guards the helpers below: an unmodified re-wrap must decode, so each rejection is due to its change.
    assert torch.equal(decode(_with()).state_dict["conv.weight"], SMALL["conv.weight"])


@pytest.mark.parametrize(("blob", "message"), [
    (_with({"version": 2}), "version 2 is not supported"),
    (_with({"format": "other"}), "not a swarm snapshot"),
    (_with({"encoding": "fp8"}), "unknown encoding"),
    (_with(tensor0={"dtype": "complex64"}), "unknown dtype"),
    (_with(tensor0={"shape": [4, 2, 3, 4]}), "needs"),
    (_with(tensor0={"shape": [-1]}), "invalid shape"),
    (_with(tensor0={"shape": [2**40, 2**40]}), "size cap"),
    (_with(tensor0={"codec": "int8"}), "not valid"),
    (_with(tensor0={"data": b"\x00" * 3}), "needs"),
    (_with(tensor0={"name": "conv.bias"}), "twice"),
    (_with(tensor0={"name": 5}), "name"),
    (_with({"schema": "0" * 32}), "fingerprint"),
    (_with({"meta": {"round": "x"}}), "round"),
    (_with({"meta": [1, 2]}), "meta"),
    (_with({"tensors": {"a": 1}}), "tensors"),
    (_wrap([1, 2, 3]), "not a swarm snapshot"),
    (_wrap_plain(b"\x91" * 5000 + b"\xc0"), "malformed msgpack"),
    (_wrap_plain(b"\xdd\xff\xff\xff\xff"), "malformed msgpack"),
    (_wrap_plain(b"\xc6\xff\xff\xff\xf0abc"), "malformed msgpack"),
    (_wrap_plain(msgpack.packb({"format": "swarm-snapshot"}) + b"\x00"), "malformed msgpack"),
    (zstandard.ZstdCompressor().compress(b"\x80" * 40), "checksum"),
    (b"", "not a zstd frame"),
    (b"\x28\xb5\x2f\xfd" + b"\x00" * 20, "zstd"),
    (GOOD + b"\x00", "zstd"),
    ("not bytes", "must be bytes"),
])
def test_malformed_input_is_rejected(blob: Any, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        decode(blob)


def test_topk_index_out_of_range_is_rejected() -> None:
    good = encode({"w": torch.arange(10.0)}, encoding="topk-delta", base={"w": torch.zeros(10)},
                  topk=0.2, meta={"base_cid": "b"})
    doc = _unwrap(good)
    doc["tensors"][0]["index"] = (100).to_bytes(4, "little") + (1).to_bytes(4, "little")
    with pytest.raises(SnapshotError, match="out of range"):
        decode(_wrap(doc))
    doc["tensors"][0]["index"] = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # repeated index
    with pytest.raises(SnapshotError, match="strictly increasing"):
        decode(_wrap(doc))


def test_int8_bad_parameters_rejected() -> None:
    doc = _unwrap(encode(SMALL, encoding="int8"))
    doc["tensors"][0]["scale"] = doc["tensors"][0]["scale"][:-4]
    with pytest.raises(SnapshotError, match="int8"):
        decode(_wrap(doc))


def test_zip_bomb_rejected_before_decompressing() -> None:
    cobj = zstandard.ZstdCompressor(level=1).compressobj(size=512 * 1024 * 1024)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(cobj.compress(zeros) for _ in range(512)) + cobj.flush()
    assert len(bomb) < 100_000
    with pytest.raises(SnapshotError, match=r"over the \d+ byte cap"):
        decode(bomb, max_size=64 * 1024 * 1024)
    unsized = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(bytes(10_000_000))
    with pytest.raises(SnapshotError, match="does not declare its size"):
        decode(unsized)


def test_oversized_input_rejected() -> None:
    with pytest.raises(SnapshotError, match="over the 100 byte cap"):
        decode(GOOD, max_size=100)


def test_every_corrupted_content_byte_is_detected() -> None:
    plain = zstandard.ZstdDecompressor().decompress(GOOD)
    for i in range(len(plain)):
        bad = bytearray(plain)
        bad[i] ^= 0x01
        with pytest.raises(SnapshotError):
            decode(zstandard.ZstdCompressor().compress(bytes(bad)))


def test_every_truncation_is_rejected() -> None:
    for n in range(len(GOOD)):
        with pytest.raises(SnapshotError):
            decode(GOOD[:n])


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_rejected(blob: bytes) -> None:
    with pytest.raises(SnapshotError):
        decode(blob)


@settings(max_examples=300, deadline=2000)
@given(st.integers(0, len(GOOD) - 1), st.integers(1, 255))
def test_flipped_compressed_byte_is_detected_or_harmless(pos: int, mask: int) -> None:
    bad = bytearray(GOOD)
    bad[pos] ^= mask
    try:
        snap = decode(bytes(bad))
    except SnapshotError:
        return
    # A few zstd header bits (e.g. the window size) do not change the content: then it must be identical.
    for name, t in SMALL.items():
        assert torch.equal(snap.state_dict[name], t)


@settings(max_examples=100, deadline=2000)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
                    | st.text(max_size=20) | st.binary(max_size=40),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=30))
def test_arbitrary_msgpack_documents_rejected(doc: Any) -> None:
    with pytest.raises(SnapshotError):
        decode(_wrap(doc))


def test_sparse_mask_of_wrong_length_rejected() -> None:
    w = torch.zeros(100)
    w[::10] = 1.0
    doc = _unwrap(encode({"w": w}))
    assert doc["tensors"][0]["codec"] == "sparse"
    doc["tensors"][0]["mask"] = doc["tensors"][0]["mask"][:-1]
    with pytest.raises(SnapshotError, match="sparse mask"):
        decode(_wrap(doc))
    doc["tensors"][0]["mask"] = b"\xff" * 13  # 104 bits set for 100 entries
    with pytest.raises(SnapshotError, match="past the end"):
        decode(_wrap(doc))
