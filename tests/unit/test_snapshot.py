"""Snapshot round-trips on real models: fp32 bit-exact, lossy encodings within their documented bounds."""

from __future__ import annotations

import math

import pytest
import torch

from storage import Snapshot, SnapshotError, decode, encode, schema_fingerprint
from storage.snapshot import with_meta
from swarm.models import build_model

torch.set_num_threads(1)

META = {"peer_id": "12D3KooWExample", "round": 7, "samples": 1234, "train_loss": 0.42,
        "parents": ["bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"], "dp_epsilon": 1.5,
        "created_at": 1_700_000_000.5}


def _trained_like(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict whose floats moved away from init and whose BatchNorm counters are non-zero."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in model.state_dict().items():
        if t.is_floating_point():
            out[name] = t + 0.01 * torch.randn(t.shape, generator=gen)
        else:
            out[name] = t + 17  # num_batches_tracked: int64 counters must survive exactly
    return out


@pytest.fixture(scope="module", params=[("fashion-cnn", 1), ("resnet18", 3)], ids=["cnn", "resnet18"])
def state(request: pytest.FixtureRequest) -> dict[str, torch.Tensor]:
    name, channels = request.param
    torch.manual_seed(0)
    return _trained_like(build_model(name, in_channels=channels), seed=1)


def _non_float_exact(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    for name, t in a.items():
        assert b[name].dtype == t.dtype and b[name].shape == t.shape
        if not t.is_floating_point():
            assert torch.equal(b[name], t), name


def test_fp32_is_bit_exact_and_keeps_meta(state: dict[str, torch.Tensor]) -> None:
    snap = decode(encode(state, encoding="fp32", meta=META))
    assert list(snap.state_dict) == list(state)
    for name, t in state.items():
        got = snap.state_dict[name]
        assert got.dtype == t.dtype and got.shape == t.shape
        assert torch.equal(got.reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)), name
    assert snap.meta == META
    assert snap.encoding == "fp32"
    assert snap.schema == schema_fingerprint(state)


def test_fp16_relative_error_bound(state: dict[str, torch.Tensor]) -> None:
    out = decode(encode(state, encoding="fp16")).state_dict
    _non_float_exact(state, out)
    for name, t in state.items():
        if t.is_floating_point():
            # float16 has an 11-bit significand: round-to-nearest error <= 2^-11 relative (+ subnormal step)
            assert ((out[name] - t).abs() <= t.abs() * 2**-11 + 2**-25).all(), name


def test_int8_per_channel_error_bound(state: dict[str, torch.Tensor]) -> None:
    data = encode(state, encoding="int8")
    assert len(data) < len(encode(state, encoding="fp32")) / 3
    out = decode(data).state_dict
    _non_float_exact(state, out)
    for name, t in state.items():
        if t.is_floating_point() and t.numel():
            rows = t.reshape(t.shape[0], -1) if t.dim() >= 2 else t.reshape(1, -1)
            half_step = (rows.amax(1) - rows.amin(1)) / 510
            err = (out[name].reshape(rows.shape) - rows).abs()
            assert (err <= half_step[:, None] * (1 + 1e-4) + 1e-7).all(), name


def test_topk_delta_keeps_largest_changes_exactly(state: dict[str, torch.Tensor]) -> None:
    base = state
    gen = torch.Generator().manual_seed(5)
    new = {k: (v + 0.001 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v + 1)
           for k, v in base.items()}
    data = encode(new, encoding="topk-delta", base=base, topk=0.05, meta={"base_cid": "bafk-base"})
    assert len(data) < len(encode(new, encoding="fp32")) / 5
    out = decode(data, base=base).state_dict
    _non_float_exact(new, out)
    for name, t in new.items():
        if not t.is_floating_point():
            continue
        changed = out[name] != base[name]
        assert int(changed.sum()) <= math.ceil(0.05 * t.numel())
        assert torch.equal(out[name][changed], t[changed]), name  # kept entries are exact
        dropped = (t - base[name]).abs()[~changed]
        kept = (t - base[name]).abs()[changed]
        if dropped.numel() and kept.numel():
            assert dropped.max() <= kept.min(), name


def test_topk_delta_without_base_keeps_sparse_changes() -> None:
    base = {"w": torch.zeros(100), "n": torch.tensor(3)}
    new = {"w": torch.arange(100, dtype=torch.float32), "n": torch.tensor(4)}
    snap = decode(encode(new, encoding="topk-delta", base=base, topk=0.1, meta={"base_cid": "bafk-b"}))
    assert isinstance(snap, Snapshot) and snap.meta["base_cid"] == "bafk-b"
    with pytest.raises(SnapshotError, match="base"):
        _ = snap.state_dict
    full = snap.apply(base)
    assert torch.equal(full["w"][90:], new["w"][90:]) and torch.equal(full["w"][:90], base["w"][:90])
    assert torch.equal(full["n"], new["n"])
    with pytest.raises(SnapshotError, match="schema"):
        snap.apply({"w": torch.zeros(99), "n": torch.tensor(3)})


def test_topk_delta_needs_base_and_base_cid() -> None:
    sd = {"w": torch.ones(4)}
    with pytest.raises(SnapshotError, match="base"):
        encode(sd, encoding="topk-delta")
    with pytest.raises(SnapshotError, match="base_cid"):
        encode(sd, encoding="topk-delta", base=sd)
    with pytest.raises(SnapshotError, match="schema"):
        encode(sd, encoding="topk-delta", base={"w": torch.ones(5)}, meta={"base_cid": "x"})


@pytest.mark.parametrize("encoding", ["fp32", "fp16", "int8", "topk-delta"])
def test_every_dtype_and_edge_shape_survives(encoding: str) -> None:
    sd = {
        "f64": torch.randn(3, 4, dtype=torch.float64), "f16": torch.randn(5, dtype=torch.float16),
        "bf16": torch.randn(2, 3).to(torch.bfloat16), "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8), "i16": torch.tensor([-300], dtype=torch.int16),
        "i32": torch.tensor([[2**31 - 1]], dtype=torch.int32), "i64": torch.tensor(2**40),
        "flag": torch.tensor([True, False, True]), "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5),
        "const": torch.full((4, 4), 3.0), "big-fp16": torch.tensor([1e6, -7e4]),
    }
    kwargs = {"base": {k: torch.zeros_like(v) for k, v in sd.items()}, "topk": 1.0,
              "meta": {"base_cid": "b"}} if encoding == "topk-delta" else {}
    out = decode(encode(sd, encoding=encoding, **kwargs), base=kwargs.get("base")).state_dict
    for name, t in sd.items():
        assert out[name].dtype == t.dtype and out[name].shape == t.shape, name
        # "const" has zero int8 range; "big" overflows float16, so fp16 stores it losslessly
        lossless = encoding in ("fp32", "topk-delta") or name in ("const", "empty", f"big-{encoding}")
        if not t.is_floating_point() or lossless:
            assert torch.equal(out[name], t), f"{name} should be exact under {encoding}"
        else:
            assert torch.allclose(out[name].double(), t.double(), rtol=1e-2, atol=2e-2), name


def test_nonfinite_rejected_unless_allowed() -> None:
    sd = {"w": torch.tensor([1.0, float("nan")])}
    with pytest.raises(SnapshotError, match="NaN or inf"):
        encode(sd)
    data = encode(sd, allow_nonfinite=True)
    with pytest.raises(SnapshotError, match="NaN or inf"):
        decode(data)
    assert torch.isnan(decode(data, allow_nonfinite=True).state_dict["w"][1])
    inf = encode({"w": torch.tensor([float("inf")])}, encoding="int8", allow_nonfinite=True)
    with pytest.raises(SnapshotError, match="NaN or inf"):
        decode(inf)


def test_bad_arguments_are_snapshot_errors() -> None:
    with pytest.raises(SnapshotError, match="unknown encoding"):
        encode({"w": torch.ones(1)}, encoding="fp8")
    with pytest.raises(SnapshotError, match="not a tensor"):
        encode({"w": [1.0]})  # type: ignore[dict-item]
    with pytest.raises(SnapshotError, match="unsupported dtype"):
        encode({"w": torch.ones(1, dtype=torch.complex64)})
    with pytest.raises(SnapshotError, match="round"):
        encode({"w": torch.ones(1)}, meta={"round": "seven"})
    with pytest.raises(SnapshotError, match="64 bits"):
        encode({"w": torch.ones(1)}, meta={"samples": 2**64})
    with pytest.raises(SnapshotError, match="finite"):
        encode({"w": torch.ones(1)}, meta={"train_loss": float("nan")})


def test_schema_fingerprint_tracks_names_shapes_dtypes() -> None:
    a = {"x": torch.zeros(2, 3), "y": torch.zeros(1, dtype=torch.int64)}
    reordered = {"y": torch.ones(1, dtype=torch.int64), "x": torch.ones(2, 3)}
    assert schema_fingerprint(a) == schema_fingerprint(reordered)
    assert schema_fingerprint(a) != schema_fingerprint({"x": torch.zeros(3, 2), "y": a["y"]})
    assert schema_fingerprint(a) != schema_fingerprint({"x": a["x"].double(), "y": a["y"]})
    assert schema_fingerprint(a) != schema_fingerprint({"z": a["x"], "y": a["y"]})


@pytest.mark.parametrize("encoding", ["fp32", "fp16", "int8"])
def test_pruned_tensors_keep_mask_and_values_exactly(encoding: str) -> None:
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(64, 32, generator=gen)
    w[torch.rand(64, 32, generator=gen) < 0.8] = 0.0
    w[0, 0] = -0.0  # a pruned entry stays pruned, a kept -0.0 stays -0.0 (the codec keys on the bits)
    dense = torch.randn(64, 32, generator=gen)
    data = encode({"w": w, "d": dense}, encoding=encoding)
    out = decode(data).state_dict
    assert torch.equal(out["w"].view(torch.int32), w.view(torch.int32))
    assert len(encode({"w": w}, encoding=encoding)) < w.numel() * 4 * 0.35
    if encoding == "fp32":
        assert torch.equal(out["d"], dense)


@pytest.mark.parametrize("encoding", ["fp32", "fp16", "int8"])
def test_with_meta_changes_the_meta_and_no_tensor_byte(state: dict[str, torch.Tensor], encoding: str) -> None:
    data = encode(state, encoding=encoding, meta={"round": 3, "samples": 10})
    stamped = with_meta(data, {"peer_id": "12D3KooWseed"})
    before, after = decode(data), decode(stamped)
    assert after.meta == {**before.meta, "peer_id": "12D3KooWseed"}
    assert (after.encoding, after.schema) == (before.encoding, before.schema)
    assert all(torch.equal(after.state_dict[k], v) for k, v in before.state_dict.items())


def test_with_meta_refuses_what_is_not_a_snapshot_or_a_bad_meta(state: dict[str, torch.Tensor]) -> None:
    with pytest.raises(SnapshotError):
        with_meta(b"not a snapshot", {"peer_id": "x"})
    with pytest.raises(SnapshotError, match="peer_id"):
        with_meta(encode(state), {"peer_id": 7})
