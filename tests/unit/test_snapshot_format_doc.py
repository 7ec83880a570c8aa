"""docs/snapshot-format.md is enough to read a snapshot: a decoder written from it alone (zstd, msgpack,
numpy; no storage/ code) recovers what `encode` stored."""

from __future__ import annotations

import hashlib

import msgpack
import numpy as np
import torch
import zstandard

from storage import encode

NP = {"float32": "<f4", "float64": "<f8", "int64": "<i8", "bool": "u1"}


def read_by_the_doc(blob: bytes) -> dict:
    content = zstandard.ZstdDecompressor().decompress(blob)
    body, digest = content[:-32], content[-32:]
    assert hashlib.sha256(body).digest() == digest
    doc = msgpack.unpackb(body, raw=False)
    assert (doc["format"], doc["version"]) == ("swarm-snapshot", 1)
    out = {}
    for rec in doc["tensors"]:
        dtype, shape, data = np.dtype(NP[rec["dtype"]]), rec["shape"], rec["data"]
        n = int(np.prod(shape))
        if rec["codec"] == "raw":
            values = np.frombuffer(data, dtype)
        elif rec["codec"] == "shuffle":
            values = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, n).T.copy().view(dtype)
        elif rec["codec"] == "int8":
            rows = shape[0] if len(shape) >= 2 else 1
            q = np.frombuffer(data, np.uint8).reshape(rows, -1).astype(np.float32)
            lo, scale = np.frombuffer(rec["lo"], "<f4"), np.frombuffer(rec["scale"], "<f4")
            values = (lo[:, None] + q * scale[:, None]).astype(dtype)
        elif rec["codec"] == "sparse":
            keep = np.unpackbits(np.frombuffer(rec["mask"], np.uint8), count=n).astype(bool)
            kept = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, -1).T.copy().view(dtype).reshape(-1)
            values = np.zeros(n, dtype)
            values[keep] = kept
        else:
            raise AssertionError(rec["codec"])
        out[rec["name"]] = values.reshape(shape)
    return {"encoding": doc["encoding"], "meta": doc["meta"], "tensors": out}


def test_fp32_int8_and_sparse_read_with_plain_libraries() -> None:
    gen = torch.Generator().manual_seed(0)
    pruned = torch.randn(40, 30, generator=gen) * (torch.rand(40, 30, generator=gen) < 0.3)
    state = {"w": torch.randn(70, 90, generator=gen), "b": torch.randn(70, generator=gen).double(),
             "count": torch.tensor(12), "flags": torch.tensor([True, False]), "pruned": pruned}
    fp32 = read_by_the_doc(encode(state, meta={"round": 3}))
    assert fp32["meta"]["round"] == 3 and fp32["encoding"] == "fp32"
    for name, t in state.items():
        assert np.array_equal(fp32["tensors"][name], t.numpy()), name
    int8 = read_by_the_doc(encode(state, encoding="int8"))
    w = state["w"].numpy()
    step = (w.max(1) - w.min(1)) / 255
    assert (np.abs(int8["tensors"]["w"] - w) <= step[:, None] / 2 + 1e-6).all()
    assert int8["tensors"]["count"] == 12
