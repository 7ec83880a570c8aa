"""The snapshot format: a model's weights + metadata as one versioned, checksummed, zstd-compressed blob.

Byte layout (docs/snapshot-format.md): one zstd frame (content size in its header) holding a msgpack
map `{"format": "swarm-snapshot", "version", "encoding", "schema", "meta", "tensors": [record, ...]}`
followed by 32 raw bytes, the SHA-256 of that map's bytes. Every tensor is a record with its name,
dtype, shape, codec and payload (`data`, packed last so the encoder streams it without a copy).
Everything received is untrusted: `decode` bounds the decompressed size before allocating it, bounds
msgpack lengths and nesting, checks every length against its shape and raises `SnapshotError` for
anything malformed.

The tensor codecs and which encoding uses which are storage/codecs.py; this module frames them.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import torch
import zstandard

from storage.codecs import (
    DEFAULT_TOPK,
    DTYPE_NAMES,
    DTYPES,
    ENCODINGS,
    ITEMSIZES,
    Changes,
    Encoding,
    Record,
    Source,
    require_field,
)
from storage.defaults import DEFAULT_MAX_SIZE
from storage.errors import SnapshotError

MAGIC = "swarm-snapshot"
VERSION = 1
ZSTD_LEVEL = 1  # measured: level 1 beats 3 on both ratio and speed for shuffled float planes

# Meta fields with a fixed type; other keys are allowed with scalar values (forward compatibility).
META_TYPES: dict[str, tuple[type, ...]] = {
    "peer_id": (str,), "round": (int,), "samples": (int,), "train_loss": (float, int, type(None)),
    "parents": (list,), "dp_epsilon": (float, int, type(None)), "created_at": (float, int),
    "base_cid": (str,),
}
_SCALARS = (str, int, float, bool, type(None))

_MAX_TENSORS = 100_000
_BLOCK_PER_PLANE = 4096  # smaller planes share zstd blocks (each block costs a header + table)
_MAX_DIMS = 16
_MAX_META_STR = 4096


@dataclass(frozen=True)
class Snapshot:
    """A decoded snapshot. For `topk-delta` decoded without a base, `state_dict` needs `apply(base)`."""

    encoding: str
    meta: dict[str, Any]
    schema: str
    tensors: dict[str, torch.Tensor]
    # topk-delta only: name -> (flat int64 indices, new values at them, shape) of the sparse tensors
    sparse: dict[str, Changes] = field(default_factory=dict)

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.sparse:
            raise SnapshotError(
                f"this topk-delta snapshot holds only changes to base {self.meta.get('base_cid')}: "
                "decode(data, base=<that snapshot's state_dict>) or call snapshot.apply(base)"
            )
        return self.tensors

    def apply(self, base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The full state dict: `base` with this snapshot's changes written in."""
        if schema_fingerprint(base) != self.schema:
            raise SnapshotError("base state_dict has a different schema (names/shapes/dtypes) "
                                "than the snapshot")
        out: dict[str, torch.Tensor] = {}
        for name, ref in base.items():
            if name in self.sparse:
                idx, values, shape = self.sparse[name]
                flat = ref.detach().cpu().reshape(-1).clone()
                flat[idx] = values
                out[name] = flat.reshape(shape)
            else:
                out[name] = self.tensors[name]
        return out


def schema_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """A short hash of the sorted (name, dtype, shape) triples: equal iff the models are compatible."""
    lines = []
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            raise SnapshotError(f"state_dict[{name!r}] is a {type(t).__name__}, not a tensor")
        if t.dtype not in DTYPE_NAMES:
            raise SnapshotError(f"state_dict[{name!r}] has unsupported dtype {t.dtype}; "
                                f"use one of {sorted(DTYPES)}")
        lines.append(f"{name}\t{DTYPE_NAMES[t.dtype]}\t{','.join(map(str, t.shape))}\n")
    return _schema_hash(lines)


def _schema_hash(lines: list[str]) -> str:
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:32]


def _finite(t: torch.Tensor) -> bool:
    """All values finite; the sum is a cheap first test (NaN/inf propagate), exact check if it overflows."""
    if not t.dtype.is_floating_point or t.numel() == 0:
        return True
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


# ---------------------------------------------------------------- encode

def _record(name: str, src: Source, encoding: Encoding) -> dict[str, Any]:
    t = src.tensor
    codec = encoding.codec_for(src)
    return {"name": name, "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "codec": codec.name,
            **codec.encode(src)}


def _check_meta(meta: dict[str, Any]) -> None:
    if not isinstance(meta, dict):
        raise SnapshotError(f"meta must be a map, got {type(meta).__name__}")
    for key, value in meta.items():
        if not isinstance(key, str) or len(key) > 64:
            raise SnapshotError(f"meta key {key!r} must be a string of at most 64 characters")
        wanted = META_TYPES.get(key, _SCALARS)
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            raise SnapshotError(f"meta[{key!r}] = {value!r} has type {type(value).__name__}; expected "
                                f"{' or '.join(w.__name__ for w in wanted)}")
        if isinstance(value, str) and len(value) > _MAX_META_STR:
            raise SnapshotError(f"meta[{key!r}] is longer than {_MAX_META_STR} characters")
        if isinstance(value, int) and not -(2**63) <= value < 2**64:
            raise SnapshotError(f"meta[{key!r}] = {value} does not fit in 64 bits")
        if isinstance(value, float) and not math.isfinite(value):
            raise SnapshotError(f"meta[{key!r}] is {value}; use a finite number or leave it out")
    parents = meta.get("parents", [])
    if len(parents) > 1024 or not all(isinstance(p, str) and len(p) <= 256 for p in parents):
        raise SnapshotError("meta['parents'] must be a list of at most 1024 CID strings")


def encode(state_dict: dict[str, torch.Tensor], *, encoding: str = "fp32", meta: dict[str, Any] | None = None,
           base: dict[str, torch.Tensor] | None = None, topk: float = DEFAULT_TOPK,
           allow_nonfinite: bool = False) -> bytes:
    """Encode `state_dict` as a snapshot; `topk-delta` needs `base` (same schema) and meta['base_cid']."""
    if encoding not in ENCODINGS:
        raise SnapshotError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    spec = ENCODINGS[encoding]
    schema = schema_fingerprint(state_dict)
    meta = {"created_at": time.time(), "parents": [], **(meta or {})}
    _check_meta(meta)
    if spec.needs_base:
        if base is None or "base_cid" not in meta:
            raise SnapshotError("topk-delta needs base=<base state_dict> and meta['base_cid'] = its CID")
        if schema_fingerprint(base) != schema:
            raise SnapshotError("topk-delta base has a different schema (names/shapes/dtypes) "
                                "than state_dict")
        if not 0 < topk <= 1:
            raise SnapshotError(f"topk={topk} must be a fraction in (0, 1]")
    finite = {name: _finite(t) for name, t in state_dict.items()}
    if not allow_nonfinite and not all(finite.values()):
        name = next(n for n, ok in finite.items() if not ok)
        raise SnapshotError(f"tensor {name!r} has NaN or inf values; the model diverged "
                            "(pass allow_nonfinite=True to publish it anyway)")
    records = [_record(name, Source(t, finite[name], None if base is None else base[name], topk), spec)
               for name, t in state_dict.items()]
    head = {"format": MAGIC, "version": VERSION, "encoding": encoding, "schema": schema, "meta": meta}
    pieces = _pack_streamed(head, records)
    digest = hashlib.sha256()
    for piece, _ in pieces:
        digest.update(piece)
    total = sum(len(piece) for piece, _ in pieces) + digest.digest_size
    cobj = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj(size=total)
    out = []
    for piece, end_block in pieces:
        out.append(cobj.compress(piece))
        if end_block:
            out.append(cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    out += [cobj.compress(digest.digest()), cobj.flush()]
    return b"".join(out)


Piece = tuple[bytes | memoryview, bool]


def _pack_streamed(head: dict[str, Any], records: list[dict[str, Any]]) -> list[Piece]:
    """msgpack of `{**head, "tensors": records}` as (piece, end zstd block after it) pairs.

    The big `data` payloads are not copied. Each large byte plane gets zstd blocks of its own: a
    block's Huffman table then fits one kind of byte (exponents compress, low mantissa bytes do not)
    instead of a mix. Only the encoder does this; the bytes decode the same either way. Everything
    between payloads is gathered into one piece: each piece costs a hash and a compressor call.
    """
    packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    pieces: list[Piece] = []
    small = bytearray(packer.pack_map_header(len(head) + 1))
    for kv in head.items():
        small += packer.pack(kv[0]) + packer.pack(kv[1])
    small += packer.pack("tensors") + packer.pack_array_header(len(records))
    for rec in records:
        data = memoryview(rec.pop("data")).cast("B")
        planes = rec.pop("_planes", 1)
        small += packer.pack_map_header(len(rec) + 1)
        for kv in rec.items():
            small += packer.pack(kv[0]) + packer.pack(kv[1])
        small += packer.pack("data") + b"\xc6" + len(data).to_bytes(4, "big")  # bin 32
        plane = len(data) // planes
        if plane >= _BLOCK_PER_PLANE:
            pieces.append((bytes(small), True))  # end the block holding the record header
            pieces += [(data[i:i + plane], True) for i in range(0, len(data), plane)]
            small = bytearray()
        elif len(data) >= _BLOCK_PER_PLANE:
            pieces += [(bytes(small), False), (data, False)]
            small = bytearray()
        else:
            small += data
    pieces.append((bytes(small), False))
    return pieces


def with_meta(data: bytes, updates: dict[str, Any], *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """The snapshot `data` with `updates` merged into its meta, every tensor record byte for byte as it
    was (any encoding; nothing is decoded or quantised again). For stamping a snapshot made elsewhere
    with its publisher (`swarm-node publish`). Raises SnapshotError if `data` is not a valid snapshot."""
    decode(data, max_size=max_size)  # every check decode makes, before the bytes are trusted
    doc = _unpack(memoryview(_decompress(bytes(data), max_size))[:-32], max_size)
    meta = {**doc["meta"], **updates}
    _check_meta(meta)
    body = msgpack.packb({**doc, "meta": meta}, use_bin_type=True)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(body + hashlib.sha256(body).digest())


# ---------------------------------------------------------------- decode

def _unpack(data: bytes | memoryview, max_size: int) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=max_size,
                               max_str_len=1 << 20, max_array_len=_MAX_TENSORS * 2, max_map_len=4096,
                               max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise SnapshotError(f"not a valid snapshot: malformed msgpack ({type(exc).__name__}: {exc})") \
            from None


def _decompress(data: bytes, max_size: int) -> bytes:
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as exc:
        raise SnapshotError(f"not a snapshot: not a zstd frame ({exc})") from None
    size = params.content_size
    if size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
        raise SnapshotError("not a snapshot: the zstd frame does not declare its size (snapshots always do)")
    if size > max_size:
        raise SnapshotError(f"snapshot would decompress to {size} bytes, over the {max_size} byte cap; "
                            "raise max_size if the sender is trusted")
    try:
        out = zstandard.ZstdDecompressor().decompress(data, max_output_size=max_size, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise SnapshotError(f"corrupted snapshot: zstd failed ({exc})") from None
    if len(out) != size:
        raise SnapshotError("corrupted snapshot: decompressed size differs from the frame header")
    return out


def _decode_tensor(fields: Any, encoding: Encoding, max_size: int) -> tuple[Record, torch.Tensor | Changes]:
    if not isinstance(fields, dict):
        raise SnapshotError("malformed snapshot: a tensor record is not a map")
    name = require_field(fields, "name", str, "tensor")
    where = f"tensor {name!r}"
    dtype = require_field(fields, "dtype", str, where)
    if dtype not in DTYPES:
        raise SnapshotError(f"{where} has unknown dtype {dtype!r}; this build reads {', '.join(DTYPES)}")
    shape = require_field(fields, "shape", list, where)
    valid_dims = all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    if len(shape) > _MAX_DIMS or not valid_dims:
        raise SnapshotError(f"{where} has an invalid shape {shape!r}")
    numel = math.prod(shape)
    if numel * ITEMSIZES[dtype] > max_size:
        raise SnapshotError(f"{where} claims {numel} elements, over the size cap")
    codec_name = require_field(fields, "codec", str, where)
    data = require_field(fields, "data", bytes, where)
    codec = encoding.allowed(codec_name, dtype)
    if codec is None:
        raise SnapshotError(f"{where}: codec {codec_name!r} is not valid for dtype {dtype} "
                            f"in a {encoding.name} snapshot")
    rec = Record(fields, name, dtype, shape, numel, data)
    return rec, codec.decode(rec)


def decode(data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE,
           base: dict[str, torch.Tensor] | None = None, allow_nonfinite: bool = False) -> Snapshot:
    """Decode and validate a snapshot; any malformed input raises `SnapshotError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SnapshotError(f"snapshot data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise SnapshotError(f"snapshot is {len(data)} bytes, over the {max_size} byte cap")
    plain = memoryview(_decompress(data, max_size))
    if len(plain) < 32 or hashlib.sha256(plain[:-32]).digest() != plain[-32:]:
        raise SnapshotError("corrupted snapshot: the checksum does not match the content")
    doc = _unpack(plain[:-32], max_size)
    if not isinstance(doc, dict) or doc.get("format") != MAGIC:
        raise SnapshotError("not a swarm snapshot: the content is not a map with format 'swarm-snapshot'")
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        raise SnapshotError(f"snapshot format version {version!r} is not supported "
                            f"(this build reads {VERSION}); upgrade swarm-node if it is newer")
    encoding = require_field(doc, "encoding", str, "body")
    if encoding not in ENCODINGS:
        raise SnapshotError(f"snapshot uses unknown encoding {encoding!r}; "
                            f"this build reads {', '.join(ENCODINGS)}")
    spec = ENCODINGS[encoding]
    schema = require_field(doc, "schema", str, "body")
    meta = require_field(doc, "meta", dict, "body")
    _check_meta(meta)
    if spec.needs_base and "base_cid" not in meta:
        raise SnapshotError(f"malformed snapshot: {encoding} without meta['base_cid']")
    records = require_field(doc, "tensors", list, "body")

    tensors: dict[str, torch.Tensor] = {}
    changes: dict[str, Changes] = {}
    lines = []
    for fields in records:
        rec, value = _decode_tensor(fields, spec, max_size)
        if rec.name in tensors or rec.name in changes:
            raise SnapshotError(f"malformed snapshot: tensor {rec.name!r} appears twice")
        values = value[1] if isinstance(value, tuple) else value
        if not allow_nonfinite and not _finite(values):
            raise SnapshotError(f"tensor {rec.name!r} has NaN or inf values; dropped "
                                "(pass allow_nonfinite=True to accept it)")
        if isinstance(value, tuple):
            changes[rec.name] = value
        else:
            tensors[rec.name] = value
        lines.append((rec.name, f"{rec.name}\t{rec.dtype}\t{','.join(map(str, rec.shape))}\n"))
    if _schema_hash([line for _, line in sorted(lines)]) != schema:
        raise SnapshotError("malformed snapshot: the schema fingerprint does not match its tensors")
    snap = Snapshot(encoding, meta, schema, tensors, changes)
    if changes and base is not None:
        return Snapshot(encoding, meta, schema, snap.apply(base))
    return snap
