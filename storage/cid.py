"""CIDs exactly as `ipfs add --cid-version=1` assigns them (default chunker, raw leaves, balanced DAG).

Data up to one chunk (256 KiB) is a single raw block: its CID is `raw` + sha2-256 of the bytes. Larger
data is split into 256 KiB raw leaves under a balanced tree of dag-pb nodes (at most 174 links each)
whose Data field is a UnixFS `File` message; the CID is that of the root node. The two protobuf
messages are tiny, so they are encoded here by hand (field order as the dag-pb spec requires: Links
before Data).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from multiformats import CID, multihash

from storage.errors import InvalidCid

CHUNK_SIZE = 262_144
MAX_LINKS = 174
_UNIXFS_FILE = 2


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


@dataclass(frozen=True)
class _Node:
    cid: CID
    tsize: int  # cumulative serialized size of the node and everything below it (dag-pb Tsize)
    filesize: int  # file bytes under this node (UnixFS blocksizes)


def _cid(codec: str, block: bytes | memoryview) -> CID:
    return CID("base32", 1, codec, multihash.wrap(hashlib.sha256(block).digest(), "sha2-256"))


def _parent(children: list[_Node]) -> _Node:
    unixfs = _field_varint(1, _UNIXFS_FILE) + _field_varint(3, sum(c.filesize for c in children))
    unixfs += b"".join(_field_varint(4, c.filesize) for c in children)
    links = b"".join(
        _field_bytes(2, _field_bytes(1, bytes(c.cid)) + _field_bytes(2, b"") + _field_varint(3, c.tsize))
        for c in children
    )
    block = links + _field_bytes(1, unixfs)
    filesize = sum(c.filesize for c in children)
    return _Node(_cid("dag-pb", block), len(block) + sum(c.tsize for c in children), filesize)


def cid_of(data: bytes | bytearray | memoryview) -> str:
    """The base32 CIDv1 that `ipfs add --cid-version=1` (raw leaves, 256 KiB chunks) gives `data`."""
    view = memoryview(data).cast("B")
    if len(view) <= CHUNK_SIZE:
        return str(_cid("raw", view))
    chunks = [view[i : i + CHUNK_SIZE] for i in range(0, len(view), CHUNK_SIZE)]
    level = [_Node(_cid("raw", chunk), len(chunk), len(chunk)) for chunk in chunks]
    while len(level) > 1:
        level = [_parent(level[i : i + MAX_LINKS]) for i in range(0, len(level), MAX_LINKS)]
    return str(level[0].cid)


def normalize_cid(cid: str) -> str:
    """`cid` in the canonical base32 CIDv1 form; CIDv0 (`Qm...`) and other bases are converted."""
    try:
        parsed = CID.decode(cid.strip())
    except Exception as exc:
        raise InvalidCid(f"{cid!r} is not a CID: {exc}; pass a CIDv1 such as bafk...") from None
    return str(parsed.set(base="base32", version=1))
