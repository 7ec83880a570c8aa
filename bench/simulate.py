"""Seconds per simulator round, batched across clients (torch.func.vmap over stacked parameters)
against one client at a time (the per-peer API), same seed, same run; checks both agree.

    nice -n 10 .venv/bin/python bench/simulate.py            # thesis setting + digits MLP
    .venv/bin/python bench/simulate.py --rounds 1 --clients 20   # quick look
"""

from __future__ import annotations

import argparse
import time

import torch

from swarm.config import SimConfig
from swarm.simulator import simulate

THESIS = dict(
    dataset="fashion-mnist",
    partition="rotation",
    train_samples=400,
    val_samples=100,
    test_samples=100,
    batch_size=32,
    local_epochs=3,
    neighbours=5,
    tau=30.0,
    strategy="dac",
)
DIGITS = dict(
    dataset="digits",
    partition="rotation",
    train_samples=40,
    val_samples=10,
    test_samples=20,
    batch_size=32,
    local_epochs=3,
    neighbours=5,
    tau=30.0,
    strategy="dac",
)


def measure(name: str, base: dict, clients: int, rounds: int) -> None:
    runs = {}
    for engine in ("loop", "batched"):
        cfg = SimConfig(**base, clients=clients, rounds=rounds, engine=engine, seed=0)
        t0 = time.perf_counter()
        runs[engine] = simulate(cfg)
        runs[engine].wall_s = time.perf_counter() - t0
    loop, batched = runs["loop"], runs["batched"]
    acc_diff = max(abs(a - b) for a, b in zip(loop.per_client, batched.per_client, strict=True))
    same_choices = [r["purity"] for r in loop.rounds] == [r["purity"] for r in batched.rounds]
    print(f"{name}: {clients} clients, {rounds} rounds")
    print(f"  loop     {loop.wall_s / rounds:8.2f} s/round")
    print(f"  batched  {batched.wall_s / rounds:8.2f} s/round")
    print(
        f"  speed-up {loop.wall_s / batched.wall_s:8.2f}x   max |acc diff| per client {acc_diff:.4f}   "
        f"same neighbour purity each round: {same_choices}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-digits", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_digits:
        measure("digits-mlp (sklearn digits, rotation)", DIGITS, min(args.clients, 30), max(args.rounds, 5))
    measure("fashion-cnn (thesis setting, Fashion-MNIST rotation, dac)", THESIS, args.clients, args.rounds)


if __name__ == "__main__":
    main()
