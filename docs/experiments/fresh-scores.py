"""Score every client's current model on a few clients' training data, from a running simulation's
checkpoint: per cluster of the scored model, the mean inverse loss (DAC's metric) and loss ratio (my
loss / theirs), and their spread within the scoring client's own cluster. It shows what a client
would measure if it measured everyone now, to set against the priors it has stored (choice-spread.py).

    .venv/bin/python docs/experiments/fresh-scores.py runs/diag/RUN/checkpoint.pt --clients 3,75,92
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from checkpoint_setup import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a run's checkpoint.pt")
    parser.add_argument("--clients", default="3,75,92", help="comma-separated clients whose data scores")
    args = parser.parse_args()
    state, setup = load(args.checkpoint)
    engine, flat, clusters = setup.engine, state["flat"], [c.cluster for c in setup.clients]
    n = len(clusters)
    print(f"round {state['next_round']}")
    print("| client (cluster) | own loss | 1/loss by cluster | sd in own cluster | ratio by cluster "
          "| sd in own cluster |")
    print("|---|---|---|---|---|---|")
    for i in (int(c) for c in args.clients.split(",")):
        losses = engine.pair_losses(flat, [i] * n).tolist()
        inverse = [1 / loss for loss in losses]
        ratio = [losses[i] / loss for loss in losses]

        def by_cluster(values: list[float], i: int = i) -> str:
            means = (statistics.fmean(values[j] for j in range(n) if clusters[j] == c and j != i)
                     for c in sorted(set(clusters)))
            return " / ".join(f"{m:.3f}" for m in means)

        def own_sd(values: list[float], i: int = i) -> str:
            own = [values[j] for j in range(n) if clusters[j] == clusters[i] and j != i]
            return f"{statistics.pstdev(own):.3f}"

        print(f"| {i} ({clusters[i]}) | {losses[i]:.3f} | {by_cluster(inverse)} | {own_sd(inverse)} | "
              f"{by_cluster(ratio)} | {own_sd(ratio)} |")


if __name__ == "__main__":
    main()
