"""Tensor codecs: how one tensor's values travel inside a snapshot, and which codecs each encoding uses.

Each codec is one small object that pairs its encoder with its decoder and names the dtypes it may
carry; `CODECS` finds it by the name a record states. An encoding (`fp32`, `fp16`, `int8`,
`topk-delta`) is the ordered list of codecs it tries per tensor: the first that accepts a tensor
encodes it, and a reader accepts exactly those codecs, each for its own dtypes. The container around
the records (header, msgpack, zstd, checksum, meta, schema) is storage/snapshot.py; the payload layouts
are in docs/snapshot-format.md.

  raw      integer and bool tensors: little-endian bytes as they are (exact under every encoding)
  shuffle  byte planes: all least significant bytes first, ... (lossless; floats compress better)
  fp16     values cast to float16, then byte planes (2)
  int8     per-channel (dim 0) affine: x = lo[c] + q * scale[c], q uint8
  topk     the k entries that moved most from the base: flat uint32 indices (delta-coded) + new values
  sparse   a pruned tensor (>= half exact zeros), any encoding but topk-delta: mask bits + kept values
           byte-shuffled, lossless so the pruning mask survives (storage/sparse.py)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from storage import sparse
from storage.errors import SnapshotError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "bool": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
ITEMSIZES = {k: torch.empty((), dtype=v).element_size() for k, v in DTYPES.items()}
FLOATS = frozenset({"float32", "float64", "float16", "bfloat16"})
EXACT = frozenset(DTYPES) - FLOATS  # integer and bool dtypes: never worth a lossy codec
DEFAULT_TOPK = 0.01
FP16_MAX = 65504.0
_SPARSE_MIN = 64  # below this a mask costs more than it saves
# Up to this size numpy's introselect picks the top k 5x faster than torch.topk (per-call overhead);
# on millions of entries with many ties at the k-th value (a big model's delta after a few steps) it
# slows 10x, while torch.topk stays steady.
_SELECT_WITH_NUMPY = 1 << 16

# topk's decoded form: flat int64 indices, the new values at them, and the tensor's shape
Changes = tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]
Fields = dict[str, Any]


def require_field(rec: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`rec[key]`, checked to be of `kind` (bools are not ints); a received map is never trusted."""
    value = rec.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise SnapshotError(f"malformed snapshot: {where} field {key!r} missing or of the wrong type")
    return value


@dataclass(frozen=True)
class Source:
    """A tensor to encode and what a codec may need besides its values."""

    tensor: torch.Tensor
    finite: bool
    base: torch.Tensor | None = None  # topk: the receiver's copy the changes apply to
    topk: float = DEFAULT_TOPK  # topk: the fraction of entries sent


@dataclass(frozen=True)
class Record:
    """A received tensor record whose name, dtype, shape, size and payload passed the common checks."""

    fields: dict[str, Any]
    name: str
    dtype: str
    shape: list[int]
    numel: int
    data: bytes

    @property
    def where(self) -> str:
        return f"tensor {self.name!r}"

    @property
    def itemsize(self) -> int:
        return ITEMSIZES[self.dtype]

    def bin(self, key: str) -> bytes:
        """A codec's own binary field (`mask`, `lo`, `scale`, `index`)."""
        value: bytes = require_field(self.fields, key, bytes, self.where)
        return value

    def expect(self, n: int, expected: int, what: str = "payload") -> None:
        if n != expected:
            raise SnapshotError(f"{self.where}: {what} has {n} bytes but shape {self.shape} needs {expected}")


class Codec(Protocol):
    """What every codec offers: its name on the wire, the dtypes it carries, and its two directions."""

    name: str
    dtypes: frozenset[str]

    def accepts(self, src: Source) -> bool:
        """Whether this codec can carry `src` (the encoding falls through to its next codec if not)."""

    def encode(self, src: Source) -> Fields:
        """The record's codec fields: `data` (packed last), any extra bins, and `_planes` for the packer."""

    def decode(self, rec: Record) -> torch.Tensor | Changes:
        """The values `rec` holds; raises SnapshotError if its payload does not fit its shape."""


# ---------------------------------------------------------------- byte helpers

def _as_bytes(t: torch.Tensor) -> np.ndarray:
    """The tensor's little-endian bytes as a flat uint8 array (a view when possible)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def _shuffled(raw: np.ndarray, itemsize: int) -> Fields:
    """`data` as byte planes, and their count for the packer's zstd block layout."""
    planes = np.ascontiguousarray(raw.reshape(-1, itemsize).T).reshape(-1) if itemsize > 1 else raw
    return {"data": planes.data, "_planes": itemsize}


def _unshuffle(data: bytes, itemsize: int) -> np.ndarray:
    planes = np.frombuffer(data, np.uint8)
    if itemsize == 1:
        return planes.copy()
    out = np.empty((len(planes) // itemsize, itemsize), np.uint8)
    out[:] = planes.reshape(itemsize, -1).T
    return out.reshape(-1)


def _tensor_from(raw: np.ndarray, dtype: str, shape: list[int]) -> torch.Tensor:
    if dtype == "bool":
        return torch.from_numpy(raw != 0).reshape(shape)
    return torch.from_numpy(raw).view(DTYPES[dtype]).reshape(shape)


# ---------------------------------------------------------------- codecs

class Raw:
    """Integer and bool tensors, as they are."""

    name = "raw"
    dtypes = EXACT

    def accepts(self, src: Source) -> bool:
        return True

    def encode(self, src: Source) -> Fields:
        return {"data": _as_bytes(src.tensor).data}

    def decode(self, rec: Record) -> torch.Tensor:
        rec.expect(len(rec.data), rec.numel * rec.itemsize)
        return _tensor_from(np.frombuffer(rec.data, np.uint8).copy(), rec.dtype, rec.shape)


class Shuffle:
    """Floats, lossless: the fallback of every encoding."""

    name = "shuffle"
    dtypes = FLOATS

    def accepts(self, src: Source) -> bool:
        return True

    def encode(self, src: Source) -> Fields:
        return _shuffled(_as_bytes(src.tensor), src.tensor.element_size())

    def decode(self, rec: Record) -> torch.Tensor:
        rec.expect(len(rec.data), rec.numel * rec.itemsize)
        return _tensor_from(_unshuffle(rec.data, rec.itemsize), rec.dtype, rec.shape)


class Fp16:
    """Floats within float16's range, rounded to it."""

    name = "fp16"
    dtypes = FLOATS

    def accepts(self, src: Source) -> bool:
        t = src.tensor
        return src.finite and (t.numel() == 0 or float(t.abs().max()) <= FP16_MAX)

    def encode(self, src: Source) -> Fields:
        return _shuffled(_as_bytes(src.tensor.to(torch.float16)), 2)

    def decode(self, rec: Record) -> torch.Tensor:
        rec.expect(len(rec.data), rec.numel * 2)
        return _tensor_from(_unshuffle(rec.data, 2), "float16", rec.shape).to(DTYPES[rec.dtype])


class Int8:
    """Finite, non-empty floats, quantised to 256 levels per channel."""

    name = "int8"
    dtypes = FLOATS

    def accepts(self, src: Source) -> bool:
        return src.finite and src.tensor.numel() > 0

    def encode(self, src: Source) -> Fields:
        # numpy rather than torch: a dozen small ops per tensor, and numpy's per-call overhead is lower.
        x = src.tensor.detach().cpu().float().numpy()
        rows = x.reshape(x.shape[0], -1) if x.ndim >= 2 else x.reshape(1, -1)
        lo = rows.min(axis=1)
        scale = (rows.max(axis=1) - lo) / np.float32(255.0)
        safe = np.where(scale > 0, scale, np.float32(1.0))
        q = np.rint((rows - lo[:, None]) / safe[:, None])
        np.clip(q, 0, 255, out=q)
        return {"data": q.astype(np.uint8).reshape(-1).data, "lo": lo.tobytes(), "scale": scale.tobytes()}

    def decode(self, rec: Record) -> torch.Tensor:
        numel, shape = rec.numel, rec.shape
        channels = (shape[0] if len(shape) >= 2 else 1) if numel else 0
        lo_bytes, scale_bytes = rec.bin("lo"), rec.bin("scale")
        if numel == 0 or len(rec.data) != numel or len(lo_bytes) != 4 * channels \
                or len(scale_bytes) != 4 * channels:
            raise SnapshotError(f"{rec.where}: int8 payload sizes do not match shape {shape}")
        lo, scale = np.frombuffer(lo_bytes, np.float32), np.frombuffer(scale_bytes, np.float32)
        if not (np.isfinite(lo).all() and np.isfinite(scale).all() and (scale >= 0).all()):
            raise SnapshotError(f"{rec.where}: int8 parameters are not finite non-negative numbers")
        offsets, steps = torch.from_numpy(lo.copy()), torch.from_numpy(scale.copy())
        q = torch.from_numpy(np.frombuffer(rec.data, np.uint8).copy()).reshape(channels, -1).float()
        return (q * steps[:, None] + offsets[:, None]).reshape(shape).to(DTYPES[rec.dtype])


class Topk:
    """Finite, non-empty floats with a base: only the entries that moved most since it."""

    name = "topk"
    dtypes = FLOATS

    def accepts(self, src: Source) -> bool:
        return src.finite and src.base is not None and src.tensor.numel() > 0

    def encode(self, src: Source) -> Fields:
        assert src.base is not None  # accepts() said so
        flat = src.tensor.detach().cpu().reshape(-1)
        diff = (flat.double() - src.base.detach().cpu().reshape(-1).double()).abs().numpy()
        k = min(flat.numel(), max(1, math.ceil(src.topk * flat.numel())))
        if len(diff) <= _SELECT_WITH_NUMPY:
            idx = np.argpartition(diff, len(diff) - k)[len(diff) - k:]
        else:
            idx = torch.topk(torch.from_numpy(diff), k, sorted=False).indices.numpy()
        idx = np.sort(idx)
        gaps = idx.astype("<u4")
        gaps[1:] -= gaps[:-1].copy()  # sorted: gaps are >= 0
        values = flat[torch.from_numpy(idx)].contiguous()
        return {"index": gaps.tobytes(), **_shuffled(_as_bytes(values), values.element_size())}

    def decode(self, rec: Record) -> Changes:
        gaps = rec.bin("index")
        k = len(gaps) // 4
        if len(gaps) % 4 or k > rec.numel or len(rec.data) != k * rec.itemsize:
            raise SnapshotError(f"{rec.where}: topk index/value sizes do not match shape {rec.shape}")
        idx = torch.from_numpy(np.frombuffer(gaps, np.uint32).astype(np.int64)).cumsum(0)
        if k and (idx[-1] >= rec.numel or (k > 1 and bool((idx[1:] <= idx[:-1]).any()))):
            raise SnapshotError(f"{rec.where}: topk indices are out of range or not strictly increasing")
        values = _tensor_from(_unshuffle(rec.data, rec.itemsize), rec.dtype, [k])
        return idx, values, tuple(rec.shape)


class Sparse:
    """Pruned floats (at least half exact zeros), lossless."""

    name = "sparse"
    dtypes = FLOATS

    def accepts(self, src: Source) -> bool:
        t = src.tensor
        return t.numel() >= _SPARSE_MIN and 2 * int(torch.count_nonzero(t)) <= t.numel()

    def encode(self, src: Source) -> Fields:
        bits, kept = sparse.split(src.tensor)
        return {"mask": bits, **_shuffled(_as_bytes(kept), src.tensor.element_size())}

    def decode(self, rec: Record) -> torch.Tensor:
        bits = rec.bin("mask")
        kept = sparse.kept_count(bits, rec.numel, rec.where)
        rec.expect(len(rec.data), kept * rec.itemsize, "sparse values")
        values = _tensor_from(_unshuffle(rec.data, rec.itemsize), rec.dtype, [kept])
        return sparse.join(bits, values, rec.shape)


CODECS: dict[str, Codec] = {
    codec.name: codec for codec in (Raw(), Shuffle(), Fp16(), Int8(), Topk(), Sparse())
}


# ---------------------------------------------------------------- encodings

@dataclass(frozen=True)
class Encoding:
    """A snapshot-wide choice of codecs, tried per tensor in order."""

    name: str
    codecs: tuple[str, ...]
    needs_base: bool = False  # topk-delta: a delta against a snapshot the receiver holds

    def codec_for(self, src: Source) -> Codec:
        """The first of this encoding's codecs that carries `src`'s dtype and accepts it."""
        dtype = DTYPE_NAMES[src.tensor.dtype]
        return next(codec for codec in (CODECS[name] for name in self.codecs)
                    if dtype in codec.dtypes and codec.accepts(src))

    def allowed(self, codec: str, dtype: str) -> Codec | None:
        """The codec a received record names, if this encoding uses it for `dtype`; else None."""
        found = CODECS.get(codec) if codec in self.codecs else None
        return found if found is not None and dtype in found.dtypes else None


# raw first (it takes exactly the dtypes no other codec takes), shuffle last (it accepts any float)
ENCODINGS = {encoding.name: encoding for encoding in (
    Encoding("fp32", ("raw", "sparse", "shuffle")),
    Encoding("fp16", ("raw", "sparse", "fp16", "shuffle")),
    Encoding("int8", ("raw", "sparse", "int8", "shuffle")),
    Encoding("topk-delta", ("raw", "topk", "shuffle"), needs_base=True),
)}
