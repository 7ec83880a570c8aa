"""Seconds per simulator round, the batched engine (groups of clients in one stacked step) against
LoopEngine (one client at a time through the per-peer API), same seed, same run; checks both agree.

    nice -n 10 .venv/bin/python bench/simulate.py                       # thesis round + digits MLP
    nice -n 10 .venv/bin/python bench/simulate.py --skip-digits --threads 2

The thesis row takes its values from swarm/configs/fmnist-rotation-thesis.toml and times the engine's
share of a DAC inverse-loss round: local training of every client, inverse-loss scoring of
`neighbours` peers per client, the size-weighted merge, and every client's validation pass (best-model
tracking, early stopping). The neighbours are drawn uniformly, as DAC does in round 0; later rounds
draw by prior at the same cost.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from swarm.data import load_dataset
from swarm.models import build_model
from swarm.partition import partition
from swarm.sim.config import SimConfig, load_config
from swarm.sim.engine import BatchedEngine, Layout, LoopEngine, TrainSettings
from swarm.sim.simulator import simulate
from swarm.similarity import flatten

THESIS_CONFIG = Path(__file__).parents[1] / "swarm" / "configs" / "fmnist-rotation-thesis.toml"
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
ENGINES = {"loop": LoopEngine, "batched": BatchedEngine}


def engine_round(
    engine: LoopEngine | BatchedEngine, flat: torch.Tensor, round_: int, neighbours: int, seed: int
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seconds per phase, merged weights, pair losses, validation accuracies of one round."""
    n, sizes = len(flat), torch.tensor([float(len(c.train_y)) for c in engine.clients])
    rng = random.Random(seed * 1_000_003 + round_)
    chosen = [[i, *rng.sample([j for j in range(n) if j != i], neighbours)] for i in range(n)]
    owners = [i for i, *js in chosen for _ in js]
    seconds = {}
    t = time.perf_counter()
    flat, _ = engine.train(flat, round_)
    seconds["train"], t = time.perf_counter() - t, time.perf_counter()
    losses = engine.pair_losses(flat[[j for _, *js in chosen for j in js]], owners)
    seconds["score"], t = time.perf_counter() - t, time.perf_counter()
    w = sizes[torch.tensor(chosen)]
    merged = torch.einsum("nk,nkp->np", w / w.sum(dim=1, keepdim=True), flat[torch.tensor(chosen)])
    seconds["merge"], t = time.perf_counter() - t, time.perf_counter()
    _, acc = engine.evaluate(merged, "val")
    seconds["validate"] = time.perf_counter() - t
    return seconds, merged, losses, acc


def measure_thesis(clients: int | None, rounds: int) -> None:
    cfg = load_config(THESIS_CONFIG)
    n = clients or cfg.clients
    if n <= cfg.neighbours:
        raise SystemExit(f"--clients must be at least {cfg.neighbours + 1}: each client samples "
                         f"{cfg.neighbours} neighbours among the others")
    ds = load_dataset(cfg.dataset)
    parts = partition(ds, cfg.partition, cfg.clients, train=cfg.train_samples,
                      val=cfg.val_samples, test=0, seed=cfg.seed, split=cfg.split)[:n]
    settings = TrainSettings(cfg.local_epochs, cfg.batch_size, cfg.lr, cfg.optimizer, cfg.seed)
    runs = {}
    for name, cls in ENGINES.items():
        torch.manual_seed(cfg.seed)
        layout = Layout(build_model(cfg.model))
        engine = cls(layout, parts, settings)
        flat, total = flatten(layout.model.state_dict()).repeat(n, 1), {}
        cpu = time.process_time()
        for r in range(rounds):
            seconds, flat, losses, acc = engine_round(engine, flat, r, cfg.neighbours, cfg.seed)
            total = {k: total.get(k, 0.0) + v for k, v in seconds.items()}
        runs[name] = (total, (time.process_time() - cpu) / rounds, flat, losses, acc)
    print(f"thesis setting ({THESIS_CONFIG.name}: {cfg.model}, {n} clients x {cfg.train_samples} "
          f"samples, batch {cfg.batch_size}, {cfg.neighbours} neighbours, dac inverse-loss), "
          f"{rounds} round(s), {torch.get_num_threads()} thread(s)")
    for name, (total, cpu, *_) in runs.items():
        phases = "  ".join(f"{k} {v / rounds:6.2f}" for k, v in total.items())
        print(f"  {name:8} {sum(total.values()) / rounds:7.2f} s/round ({cpu:6.2f} CPU s)   {phases}")
    (loop_t, _, lw, ll, la), (fast_t, _, bw, bl, ba) = runs["loop"], runs["batched"]
    print(f"  speed-up {sum(loop_t.values()) / sum(fast_t.values()):7.2f}x   |weight diff| max "
          f"{(lw - bw).abs().max():.1e} mean {(lw - bw).abs().mean():.1e}   max |pair loss diff| "
          f"{(ll - bl).abs().max():.1e}   max |val acc diff| {(la - ba).abs().max():.3f}")


def measure_digits(clients: int, rounds: int) -> None:
    runs = {}
    for engine in ENGINES:
        cfg = SimConfig(**DIGITS, clients=clients, rounds=rounds, engine=engine, seed=0)
        t0 = time.perf_counter()
        runs[engine] = simulate(cfg)
        runs[engine].wall_s = time.perf_counter() - t0
    loop, batched = runs["loop"], runs["batched"]
    acc_diff = max(abs(a - b) for a, b in zip(loop.per_client, batched.per_client, strict=True))
    same_choices = [r["purity"] for r in loop.rounds] == [r["purity"] for r in batched.rounds]
    print(f"digits-mlp (sklearn digits, rotation, simulate()): {clients} clients, {rounds} rounds")
    print(f"  loop     {loop.wall_s / rounds:8.2f} s/round")
    print(f"  batched  {batched.wall_s / rounds:8.2f} s/round")
    print(
        f"  speed-up {loop.wall_s / batched.wall_s:8.2f}x   max |acc diff| per client {acc_diff:.4f}   "
        f"same neighbour purity each round: {same_choices}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=None, help="thesis row: first N clients (default all)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-digits", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_digits:
        measure_digits(30, max(args.rounds, 5))
    measure_thesis(args.clients, args.rounds)


if __name__ == "__main__":
    main()
