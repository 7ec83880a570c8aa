"""Snapshot encodings on trained weights: compression ratio, encode/decode MB/s, max abs error.

Baselines in the same run: `torch.save` and plain zstd (level 3, one thread) of the raw fp32 bytes.
MB/s are of the raw state-dict bytes per second of this process's CPU time (one thread; the shared
machine makes wall time meaningless), best of --repeat. `topk-delta` encodes the final weights
against the weights 5 steps earlier (a peer publishing after one more round); its error is against
the final ones.

    nice -n 10 .venv/bin/python bench/snapshot.py               # fashion-cnn + resnet18 (~2 min)
    .venv/bin/python bench/snapshot.py --models fashion-cnn --repeat 1   # quick look
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _trained import train

from storage import decode, encode
from swarm.models import build_model

# steps, batch: the CNN learns for a few hundred steps; resnet18 (1x28x28 input) a few dozen
TRAINING = {"fashion-cnn": (300, 64), "resnet18": (40, 32)}
ENCODINGS = ["fp32", "fp16", "int8", "topk-delta"]


def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def errors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Max abs error over all tensors, and max over tensors of (max abs error / the tensor's value range)."""
    abs_err, rel_err = 0.0, 0.0
    for k, t in a.items():
        if t.numel():
            err = (t.double() - b[k].double()).abs().max().item()
            spread = (t.double().max() - t.double().min()).item()
            abs_err, rel_err = max(abs_err, err), max(rel_err, err / spread if spread else 0.0)
    return abs_err, rel_err


def bench_model(name: str, repeat: int) -> None:
    steps, batch = TRAINING[name]
    state, earlier, desc = train(build_model(name, in_channels=1), steps, batch=batch, snapshot_at=steps - 5)
    raw = sum(t.numel() * t.element_size() for t in state.values())
    params = sum(t.numel() for t in state.values() if t.is_floating_point())
    print(f"\n### {name}: {params / 1e6:.2f} M float parameters, {raw / 1e6:.1f} MB raw; {desc}\n")
    print("| method | ratio | encode MB/s | decode MB/s | max abs error | max error / tensor range |")
    print("|---|---:|---:|---:|---:|---:|")

    def row(label: str, size: int, enc_s: float, dec_s: float, err: tuple[float, float] = (0.0, 0.0)) -> None:
        print(f"| {label} | {raw / size:.3f} | {raw / enc_s / 1e6:.0f} | {raw / dec_s / 1e6:.0f} "
              f"| {err[0]:.2e} | {err[1]:.2e} |")

    def save() -> bytes:
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    enc_s, saved = best_time(save, repeat)
    dec_s, _ = best_time(lambda: torch.load(io.BytesIO(saved), weights_only=True), repeat)
    row("torch.save (baseline)", len(saved), enc_s, dec_s)

    flat = b"".join(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for t in state.values())
    zc, zd = zstandard.ZstdCompressor(level=3, threads=0), zstandard.ZstdDecompressor()
    enc_s, plain = best_time(lambda: zc.compress(flat), repeat)
    dec_s, _ = best_time(lambda: zd.decompress(plain), repeat)
    row("zstd-3 raw fp32 (baseline)", len(plain), enc_s, dec_s)

    for encoding in ENCODINGS:
        base = earlier if encoding == "topk-delta" else None
        meta = {"base_cid": "bafk-earlier"} if base is not None else None
        data = encode(state, encoding=encoding, base=base, meta=meta)
        enc_s, _ = best_time(lambda e=encoding, b=base, m=meta: encode(state, encoding=e, base=b, meta=m),
                             repeat)
        dec_s, snap = best_time(lambda d=data, b=base: decode(d, base=b), repeat)
        row(encoding, len(data), enc_s, dec_s, errors(state, snap.state_dict))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(TRAINING), choices=list(TRAINING))
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        bench_model(name, args.repeat)


if __name__ == "__main__":
    main()
