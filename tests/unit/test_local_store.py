"""LocalStore: content-addressed files, verified reads, pins and a GC that keeps pinned and recent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage import CidMismatch, ContentNotFound, ContentTooLarge, LocalStore, cid_of


def test_put_get_roundtrip_uses_cid_of(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = os.urandom(300_000)
    cid = store.put(data)
    assert cid == cid_of(data) and store.has(cid)
    assert store.get(cid) == data
    assert store.put(data) == cid  # idempotent
    assert LocalStore(tmp_path).get(cid) == data  # persists across instances


def test_missing_too_large_and_corrupted(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(ContentNotFound, match="not in the local store"):
        store.get(cid_of(b"absent"))
    cid = store.put(b"0123456789")
    with pytest.raises(ContentTooLarge, match="cap"):
        store.get(cid, max_size=5)
    (tmp_path / "blocks" / cid).write_bytes(b"0123456788")
    with pytest.raises(CidMismatch, match="corrupted"):
        store.get(cid)


def test_no_temp_files_left_behind(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for i in range(5):
        store.put(bytes([i]) * 100)
    assert sorted(p.name for p in (tmp_path / "blocks").iterdir()) == sorted(
        cid_of(bytes([i]) * 100) for i in range(5))


def test_gc_keeps_pinned_and_recent(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    cids = []
    for i in range(6):
        cid = store.put(f"snapshot {i}".encode())
        os.utime(tmp_path / "blocks" / cid, ns=(i * 10**9, i * 10**9))  # deterministic age order
        cids.append(cid)
    store.pin(cids[0])
    removed = store.gc(keep_recent=2)
    assert sorted(removed) == sorted(cids[1:4])
    assert [store.has(c) for c in cids] == [True, False, False, False, True, True]
    store.unpin(cids[0])
    store.unpin(cids[0])  # unpinning twice is fine
    assert store.gc(keep_recent=2) == [cids[0]]
    with pytest.raises(ContentNotFound, match="put it first"):
        store.pin(cids[1])
