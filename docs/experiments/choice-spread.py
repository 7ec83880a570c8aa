"""Where DAC clients would draw their next neighbour, read from a running simulation's checkpoint:
per cluster, the mean perplexity of the first draw's softmax (e^entropy: how many peers a client
effectively chooses among) and the mean chance that draw lands in the client's own cluster.

    .venv/bin/python docs/experiments/choice-spread.py runs/diag/RUN/checkpoint.pt

(A finished run has deleted its checkpoint; copy it while the run goes, it is rewritten every minute.)
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch

from swarm.strategies import build_strategy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a DAC run's checkpoint.pt")
    args = parser.parse_args()
    state = torch.load(args.checkpoint, weights_only=False)["state"]
    clusters = state["result"]["clusters"]
    ids = [f"c{i:03d}" for i in range(len(clusters))]
    perplexity: dict[int, list[float]] = {}
    own: dict[int, list[float]] = {}
    for i, saved in enumerate(state["strategies"]):
        dac = build_strategy("dac", similarity=saved["similarity"], tau=saved["tau"])
        dac.load_state_dict(saved)
        others = [j for j in range(len(ids)) if j != i]
        logits = torch.tensor(dac.logits([ids[j] for j in others], state["next_round"]), dtype=torch.float64)
        probs = torch.softmax(logits, dim=0).tolist()
        entropy = -sum(p * math.log(p) for p in probs if p > 0)
        perplexity.setdefault(clusters[i], []).append(math.exp(entropy))
        own.setdefault(clusters[i], []).append(sum(p for p, j in zip(probs, others, strict=True)
                                                   if clusters[j] == clusters[i]))
    print(f"round {state['next_round']}")
    print("| cluster | clients | peers drawn among (perplexity) | chance of the own cluster |")
    print("|---|---|---|---|")
    for c in sorted(perplexity):
        print(f"| {c} | {len(perplexity[c])} | {statistics.fmean(perplexity[c]):.1f} | "
              f"{statistics.fmean(own[c]):.3f} |")


if __name__ == "__main__":
    main()
