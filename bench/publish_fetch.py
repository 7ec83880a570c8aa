"""Publish -> fetch latency of a 1M-parameter snapshot between two private IPFS daemons on loopback.

Per encoding: encode on peer A, put on daemon A, get on daemon B (bitswap over loopback), decode on
B. Baseline in the same run: the same path for `torch.save` bytes. The model is an MLP
784-1024-192-10 (1.0 M parameters) trained 100 SGD steps on Fashion-MNIST; `topk-delta` is against
the weights 5 steps earlier. Every trial shifts the weights by a tiny constant, so every payload is
new and B cannot reuse blocks of an earlier trial (it would, e.g., for repeated `torch.save` zips).
Methods are interleaved; median and max wall time of --trials.

    nice -n 10 .venv/bin/python bench/publish_fetch.py            # ~1 min
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _trained import train

from storage import IpfsDaemon, IpfsStore, decode, encode

ENCODINGS = ["fp32", "fp16", "int8", "topk-delta"]


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 192), nn.ReLU(),
                         nn.Linear(192, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    state, earlier, desc = train(mlp(), 100, snapshot_at=95)
    params = sum(t.numel() for t in state.values())
    print(f"{params / 1e6:.2f} M parameters; {desc}")

    def weights(trial: int) -> dict[str, torch.Tensor]:
        return {k: v + (trial + 1) * 1e-6 for k, v in state.items()}

    def torch_save(trial: int) -> bytes:
        buf = io.BytesIO()
        torch.save(weights(trial), buf)
        return buf.getvalue()

    with IpfsDaemon.start() as a, IpfsDaemon.start() as b:
        store_a, store_b = IpfsStore(a.api_multiaddr), IpfsStore(b.api_multiaddr)
        store_b.connect(a.swarm_multiaddr)
        print(f"daemons: two {a.kind} on 127.0.0.1\n")
        print("| payload | bytes | encode ms | put ms | fetch ms | decode ms | total ms (median) "
              "| total ms (max) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        methods = [("torch.save (baseline)", torch_save,
                    lambda d: torch.load(io.BytesIO(d), weights_only=True))]
        for encoding in ENCODINGS:
            base = earlier if encoding == "topk-delta" else None

            def enc(trial: int, e: str = encoding, b: dict | None = base) -> bytes:
                meta = {"round": trial, **({"base_cid": "bafk-earlier"} if b is not None else {})}
                return encode(weights(trial), encoding=e, base=b, meta=meta)

            methods.append((encoding, enc, lambda d, b=base: decode(d, base=b)))
        parts: dict[str, list[list[float]]] = {label: [] for label, _, _ in methods}
        sizes: dict[str, int] = {}
        for trial in range(args.trials):  # methods interleaved, so drift in machine load hits all alike
            for label, make, read in methods:
                ts = [time.perf_counter()]
                data = make(trial)
                ts.append(time.perf_counter())
                cid = store_a.put(data)
                ts.append(time.perf_counter())
                fetched = store_b.get(cid, timeout=60)
                ts.append(time.perf_counter())
                read(fetched)
                ts.append(time.perf_counter())
                parts[label].append([1000 * (ts[i + 1] - ts[i]) for i in range(4)] + [1000 * (ts[4] - ts[0])])
                sizes[label] = len(data)
        for label, runs in parts.items():
            med = [statistics.median(p[i] for p in runs) for i in range(5)]
            print(f"| {label} | {sizes[label]} | {med[0]:.0f} | {med[1]:.0f} | {med[2]:.0f} | {med[3]:.0f} "
                  f"| {med[4]:.0f} | {max(p[4] for p in runs):.0f} |")

if __name__ == "__main__":
    main()
