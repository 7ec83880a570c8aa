"""The tensor codecs as objects (storage/codecs.py): each decodes what it encodes for every dtype it
declares, and the encodings use and accept exactly the codecs docs/snapshot-format.md lists."""

from __future__ import annotations

import itertools

import pytest
import torch

from storage.codecs import CODECS, DTYPES, ENCODINGS, EXACT, FLOATS, Record, Source

# docs/snapshot-format.md, "Which codecs may appear"
OWN_CODEC = {"fp32": "shuffle", "fp16": "fp16", "int8": "int8", "topk-delta": "topk"}
LOSSLESS = {"raw", "shuffle", "sparse"}


def pruned(dtype: torch.dtype) -> torch.Tensor:
    """A 2-d tensor of `dtype` with most entries zero, so that every codec of its dtype accepts it."""
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(8, 16, generator=gen) * 10 * (torch.rand(8, 16, generator=gen) < 0.3)
    return values.to(dtype)


def received(fields: dict, t: torch.Tensor, dtype: str) -> Record:
    """The record a reader gets for `fields`: payloads as bytes, packer hints gone."""
    wire = {k: bytes(v) for k, v in fields.items() if k != "_planes"}
    return Record(wire, "t", dtype, list(t.shape), t.numel(), wire["data"])


@pytest.mark.parametrize(("codec", "dtype"), [(c, d) for c in CODECS for d in sorted(CODECS[c].dtypes)])
def test_each_codec_decodes_what_it_encodes(codec: str, dtype: str) -> None:
    t, base = pruned(DTYPES[dtype]), torch.zeros(8, 16, dtype=DTYPES[dtype])
    src = Source(t, finite=True, base=base, topk=0.5)
    assert CODECS[codec].accepts(src)
    out = CODECS[codec].decode(received(CODECS[codec].encode(src), t, dtype))
    if isinstance(out, tuple):  # topk: changes to write into the base
        idx, values, shape = out
        out = base.reshape(-1).clone().index_put_((idx,), values).reshape(shape)
    assert out.dtype == t.dtype and out.shape == t.shape
    if codec in LOSSLESS or codec == "topk":
        assert torch.equal(out, t)
    else:
        assert torch.allclose(out.double(), t.double(), rtol=0.01, atol=float(t.abs().max()) / 100)


@pytest.mark.parametrize(("encoding", "codec", "dtype"), list(itertools.product(ENCODINGS, CODECS, DTYPES)))
def test_an_encoding_accepts_exactly_the_documented_codecs(encoding: str, codec: str, dtype: str) -> None:
    if dtype in EXACT:
        documented = codec == "raw"
    else:
        sparse_ok = codec == "sparse" and encoding != "topk-delta"
        documented = codec in {"shuffle", OWN_CODEC[encoding]} or sparse_ok
    assert (ENCODINGS[encoding].allowed(codec, dtype) is not None) == documented


@pytest.mark.parametrize(("encoding", "dtype"), list(itertools.product(ENCODINGS, DTYPES)))
def test_every_tensor_finds_a_codec_and_one_with_nan_a_lossless_one(encoding: str, dtype: str) -> None:
    plain = Source(pruned(DTYPES[dtype]) + 1, finite=True, base=torch.zeros(8, 16, dtype=DTYPES[dtype]))
    own = {"raw"} if dtype in EXACT else {"shuffle", OWN_CODEC[encoding]}
    empty = Source(torch.zeros(0, 3, dtype=DTYPES[dtype]), finite=True)
    assert ENCODINGS[encoding].codec_for(plain).name in own
    assert ENCODINGS[encoding].codec_for(empty).name in own
    if dtype in FLOATS:
        nan = Source(torch.full((8, 16), float("nan"), dtype=DTYPES[dtype]), finite=False)
        assert ENCODINGS[encoding].codec_for(nan).name == "shuffle"
