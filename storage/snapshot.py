"""The snapshot format: a model's weights + metadata as one versioned, checksummed, zstd-compressed blob.

Byte layout (docs/snapshot-format.md): one zstd frame (content size in its header) holding a msgpack
map `{"format": "swarm-snapshot", "version", "encoding", "schema", "meta", "tensors": [record, ...]}`
followed by 32 raw bytes, the SHA-256 of that map's bytes. Every tensor is a record with its name,
dtype, shape, codec and payload (`data`, packed last so the encoder streams it without a copy).
Everything received is untrusted: `decode` bounds the decompressed size before allocating it, bounds
msgpack lengths and nesting, checks every length against its shape and raises `SnapshotError` for
anything malformed.

Codecs per tensor (integer and bool tensors are always `raw`, hence exact under every encoding):
  raw      little-endian bytes as they are
  shuffle  byte planes: all least significant bytes first, ... (lossless; floats compress better)
  fp16     values cast to float16, then byte planes (2)
  int8     per-channel (dim 0) affine: x = lo[c] + q * scale[c], q uint8
  topk     the k entries that moved most from the base: flat uint32 indices (delta-coded) + new values
  sparse   a pruned tensor (>= half exact zeros), any encoding but topk-delta: mask bits + kept values
           byte-shuffled, lossless so the pruning mask survives (storage/sparse.py)
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import torch
import zstandard

from storage import sparse
from storage.defaults import DEFAULT_MAX_SIZE
from storage.errors import SnapshotError

MAGIC = "swarm-snapshot"
VERSION = 1
ENCODINGS = ("fp32", "fp16", "int8", "topk-delta")
DEFAULT_TOPK = 0.01
ZSTD_LEVEL = 1  # measured: level 1 beats 3 on both ratio and speed for shuffled float planes
FP16_MAX = 65504.0

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "bool": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
_ITEMSIZES = {k: torch.empty((), dtype=v).element_size() for k, v in DTYPES.items()}
_FLOATS = {"float32", "float64", "float16", "bfloat16"}

# Meta fields with a fixed type; other keys are allowed with scalar values (forward compatibility).
META_TYPES: dict[str, tuple[type, ...]] = {
    "peer_id": (str,), "round": (int,), "samples": (int,), "train_loss": (float, int, type(None)),
    "parents": (list,), "dp_epsilon": (float, int, type(None)), "created_at": (float, int),
    "base_cid": (str,),
}
_SCALARS = (str, int, float, bool, type(None))

_LOSSY_CODEC = {"fp32": "shuffle", "fp16": "fp16", "int8": "int8", "topk-delta": "topk"}
_MAX_TENSORS = 100_000
_SPARSE_MIN = 64  # below this a mask costs more than it saves
_BLOCK_PER_PLANE = 4096  # smaller planes share zstd blocks (each block costs a header + table)
_MAX_DIMS = 16
# Up to this size numpy's introselect picks the top k 5x faster than torch.topk (per-call overhead);
# on millions of entries with many ties at the k-th value (a big model's delta after a few steps) it
# slows 10x, while torch.topk stays steady.
_SELECT_WITH_NUMPY = 1 << 16
_MAX_META_STR = 4096


@dataclass(frozen=True)
class Snapshot:
    """A decoded snapshot. For `topk-delta` decoded without a base, `state_dict` needs `apply(base)`."""

    encoding: str
    meta: dict[str, Any]
    schema: str
    tensors: dict[str, torch.Tensor]
    # topk-delta only: name -> (flat int64 indices, new values at them, shape) of the sparse tensors
    sparse: dict[str, tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]] = field(default_factory=dict)

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
        if t.dtype not in _DTYPE_NAMES:
            raise SnapshotError(f"state_dict[{name!r}] has unsupported dtype {t.dtype}; "
                                f"use one of {sorted(DTYPES)}")
        lines.append(f"{name}\t{_DTYPE_NAMES[t.dtype]}\t{','.join(map(str, t.shape))}\n")
    return _schema_hash(lines)


def _schema_hash(lines: list[str]) -> str:
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:32]


# ---------------------------------------------------------------- byte helpers

def _as_bytes(t: torch.Tensor) -> np.ndarray:
    """The tensor's little-endian bytes as a flat uint8 array (a view when possible)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def _shuffled(raw: np.ndarray, itemsize: int) -> dict[str, Any]:
    """Record fields for byte-plane data: the planes, and their count for the encoder's block layout."""
    planes = np.ascontiguousarray(raw.reshape(-1, itemsize).T).reshape(-1) if itemsize > 1 else raw
    return {"data": memoryview(planes), "_planes": itemsize}


def _unshuffle(data: bytes, itemsize: int) -> np.ndarray:
    planes = np.frombuffer(data, np.uint8)
    if itemsize == 1:
        return planes.copy()
    out = np.empty((len(planes) // itemsize, itemsize), np.uint8)
    out[:] = planes.reshape(itemsize, -1).T
    return out.reshape(-1)


def _tensor_from(raw: np.ndarray, dtype_name: str, shape: list[int]) -> torch.Tensor:
    if dtype_name == "bool":
        return torch.from_numpy(raw != 0).reshape(shape)
    return torch.from_numpy(raw).view(DTYPES[dtype_name]).reshape(shape)


def _finite(t: torch.Tensor) -> bool:
    """All values finite; the sum is a cheap first test (NaN/inf propagate), exact check if it overflows."""
    if not t.dtype.is_floating_point or t.numel() == 0:
        return True
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


# ---------------------------------------------------------------- encode

def _encode_tensor(name: str, t: torch.Tensor, encoding: str, base: torch.Tensor | None,
                   topk: float, finite: bool) -> dict[str, Any]:
    dtype_name = _DTYPE_NAMES[t.dtype]
    rec: dict[str, Any] = {"name": name, "dtype": dtype_name, "shape": list(t.shape)}
    if dtype_name not in _FLOATS:
        rec.update(codec="raw", data=memoryview(_as_bytes(t)))
    elif encoding != "topk-delta" and t.numel() >= _SPARSE_MIN and _mostly_zeros(t):
        bits, kept = sparse.split(t)
        rec.update(codec="sparse", mask=bits, **_shuffled(_as_bytes(kept), t.element_size()))
    elif encoding == "fp16" and finite and (t.numel() == 0 or float(t.abs().max()) <= FP16_MAX):
        rec.update(codec="fp16", **_shuffled(_as_bytes(t.to(torch.float16)), 2))
    elif encoding == "int8" and finite and t.numel() > 0:
        rec.update(_int8(t))
    elif encoding == "topk-delta" and finite and base is not None and t.numel() > 0:
        rec.update(_topk(t, base, topk))
    else:
        rec.update(codec="shuffle", **_shuffled(_as_bytes(t), t.element_size()))
    return rec


def _mostly_zeros(t: torch.Tensor) -> bool:
    """At least half the entries are exact zeros (a pruned tensor)."""
    return 2 * int(torch.count_nonzero(t)) <= t.numel()


def _int8(t: torch.Tensor) -> dict[str, Any]:
    # numpy rather than torch: a dozen small ops per tensor, and numpy's per-call overhead is lower.
    x = t.detach().cpu().float().numpy()
    rows = x.reshape(x.shape[0], -1) if x.ndim >= 2 else x.reshape(1, -1)
    lo = rows.min(axis=1)
    scale = (rows.max(axis=1) - lo) / np.float32(255.0)
    safe = np.where(scale > 0, scale, np.float32(1.0))
    q = np.rint((rows - lo[:, None]) / safe[:, None])
    np.clip(q, 0, 255, out=q)
    return {"codec": "int8", "data": memoryview(q.astype(np.uint8).reshape(-1)),
            "lo": lo.tobytes(), "scale": scale.tobytes()}


def _topk(t: torch.Tensor, base: torch.Tensor, frac: float) -> dict[str, Any]:
    flat = t.detach().cpu().reshape(-1)
    diff = (flat.double() - base.detach().cpu().reshape(-1).double()).abs().numpy()
    k = min(flat.numel(), max(1, math.ceil(frac * flat.numel())))
    if len(diff) <= _SELECT_WITH_NUMPY:
        idx = np.argpartition(diff, len(diff) - k)[len(diff) - k:]
    else:
        idx = torch.topk(torch.from_numpy(diff), k, sorted=False).indices.numpy()
    idx = np.sort(idx)
    gaps = idx.astype("<u4")
    gaps[1:] -= gaps[:-1].copy()  # sorted: gaps are >= 0
    values = flat[torch.from_numpy(idx)].contiguous()
    return {"codec": "topk", "index": gaps.tobytes(), **_shuffled(_as_bytes(values), values.element_size())}


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
    schema = schema_fingerprint(state_dict)
    meta = {"created_at": time.time(), "parents": [], **(meta or {})}
    _check_meta(meta)
    if encoding == "topk-delta":
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
    records = [_encode_tensor(name, t, encoding, None if base is None else base[name], topk, finite[name])
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


# ---------------------------------------------------------------- decode

def _unpack(data: bytes, max_size: int) -> Any:
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


def _field(rec: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = rec.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise SnapshotError(f"malformed snapshot: {where} field {key!r} missing or of the wrong type")
    return value


def _decode_tensor(rec: Any, encoding: str, max_size: int) -> tuple[str, torch.Tensor | tuple]:
    if not isinstance(rec, dict):
        raise SnapshotError("malformed snapshot: a tensor record is not a map")
    name = _field(rec, "name", str, "tensor")
    where = f"tensor {name!r}"
    dtype_name = _field(rec, "dtype", str, where)
    if dtype_name not in DTYPES:
        raise SnapshotError(f"{where} has unknown dtype {dtype_name!r}; this build reads {', '.join(DTYPES)}")
    shape = _field(rec, "shape", list, where)
    valid_dims = all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    if len(shape) > _MAX_DIMS or not valid_dims:
        raise SnapshotError(f"{where} has an invalid shape {shape!r}")
    numel = math.prod(shape)
    itemsize = _ITEMSIZES[dtype_name]
    if numel * itemsize > max_size:
        raise SnapshotError(f"{where} claims {numel} elements, over the size cap")
    codec = _field(rec, "codec", str, where)
    data = _field(rec, "data", bytes, where)
    allowed = {"raw"} if dtype_name not in _FLOATS else {"shuffle", _LOSSY_CODEC[encoding]}
    if dtype_name in _FLOATS and encoding != "topk-delta":
        allowed.add("sparse")
    if codec not in allowed:
        raise SnapshotError(f"{where}: codec {codec!r} is not valid for dtype {dtype_name} "
                            f"in a {encoding} snapshot")

    def expect(n: int, what: str = "payload") -> None:
        if n != expected:
            raise SnapshotError(f"{where}: {what} has {n} bytes but shape {shape} needs {expected}")

    if codec in ("raw", "shuffle"):
        expected = numel * itemsize
        expect(len(data))
        raw = np.frombuffer(data, np.uint8).copy() if codec == "raw" else _unshuffle(data, itemsize)
        return name, _tensor_from(raw, dtype_name, shape)
    if codec == "sparse":
        bits = _field(rec, "mask", bytes, where)
        kept = sparse.kept_count(bits, numel, where)
        expected = kept * itemsize
        expect(len(data), "sparse values")
        return name, sparse.join(bits, _tensor_from(_unshuffle(data, itemsize), dtype_name, [kept]), shape)
    if codec == "fp16":
        expected = numel * 2
        expect(len(data))
        return name, _tensor_from(_unshuffle(data, 2), "float16", shape).to(DTYPES[dtype_name])
    if codec == "int8":
        return name, _decode_int8(rec, data, dtype_name, shape, numel, where)
    return name, _decode_topk(rec, data, dtype_name, shape, numel, itemsize, where)


def _decode_int8(rec: dict, data: bytes, dtype_name: str, shape: list[int], numel: int,
                 where: str) -> torch.Tensor:
    channels = (shape[0] if len(shape) >= 2 else 1) if numel else 0
    lo_b, scale_b = _field(rec, "lo", bytes, where), _field(rec, "scale", bytes, where)
    if numel == 0 or len(data) != numel or len(lo_b) != 4 * channels or len(scale_b) != 4 * channels:
        raise SnapshotError(f"{where}: int8 payload sizes do not match shape {shape}")
    lo, scale = np.frombuffer(lo_b, np.float32), np.frombuffer(scale_b, np.float32)
    if not (np.isfinite(lo).all() and np.isfinite(scale).all() and (scale >= 0).all()):
        raise SnapshotError(f"{where}: int8 parameters are not finite non-negative numbers")
    lo, scale = torch.from_numpy(lo.copy()), torch.from_numpy(scale.copy())
    q = torch.from_numpy(np.frombuffer(data, np.uint8).copy()).reshape(channels, -1).float()
    return (q * scale[:, None] + lo[:, None]).reshape(shape).to(DTYPES[dtype_name])


def _decode_topk(rec: dict, data: bytes, dtype_name: str, shape: list[int], numel: int, itemsize: int,
                 where: str) -> tuple:
    gaps_b = _field(rec, "index", bytes, where)
    k = len(gaps_b) // 4
    if len(gaps_b) % 4 or k > numel or len(data) != k * itemsize:
        raise SnapshotError(f"{where}: topk index/value sizes do not match shape {shape}")
    idx = torch.from_numpy(np.frombuffer(gaps_b, np.uint32).astype(np.int64)).cumsum(0)
    if k and (idx[-1] >= numel or (k > 1 and bool((idx[1:] <= idx[:-1]).any()))):
        raise SnapshotError(f"{where}: topk indices are out of range or not strictly increasing")
    values = _tensor_from(_unshuffle(data, itemsize), dtype_name, [k])
    return idx, values, tuple(shape)


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
    encoding = _field(doc, "encoding", str, "body")
    if encoding not in ENCODINGS:
        raise SnapshotError(f"snapshot uses unknown encoding {encoding!r}; "
                            f"this build reads {', '.join(ENCODINGS)}")
    schema = _field(doc, "schema", str, "body")
    meta = _field(doc, "meta", dict, "body")
    _check_meta(meta)
    if encoding == "topk-delta" and "base_cid" not in meta:
        raise SnapshotError("malformed snapshot: topk-delta without meta['base_cid']")
    records = _field(doc, "tensors", list, "body")

    tensors: dict[str, torch.Tensor] = {}
    sparse: dict[str, tuple] = {}
    lines = []
    for rec in records:
        name, value = _decode_tensor(rec, encoding, max_size)
        if name in tensors or name in sparse:
            raise SnapshotError(f"malformed snapshot: tensor {name!r} appears twice")
        values = value[1] if isinstance(value, tuple) else value
        if not allow_nonfinite and not _finite(values):
            raise SnapshotError(f"tensor {name!r} has NaN or inf values; dropped "
                                "(pass allow_nonfinite=True to accept it)")
        if isinstance(value, tuple):
            sparse[name] = value
        else:
            tensors[name] = value
        lines.append((name, f"{name}\t{rec['dtype']}\t{','.join(map(str, rec['shape']))}\n"))
    if _schema_hash([line for _, line in sorted(lines)]) != schema:
        raise SnapshotError("malformed snapshot: the schema fingerprint does not match its tensors")
    snap = Snapshot(encoding, meta, schema, tensors, sparse)
    if sparse and base is not None:
        return Snapshot(encoding, meta, schema, snap.apply(base))
    return snap
