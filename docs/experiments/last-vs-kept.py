"""Test every client's current model (the one it trains on, merged this round) against the model it
keeps (its lowest validation loss so far), from a simulation's checkpoint: is choosing by validation
loss better than taking the last model? Per client, on the full test split of its cluster; the
summary and the checkpoint's end do not record the last models' accuracy (test_every = 0 in the thesis
configs), and a finished run deletes its checkpoint, so copy one near the end.

    .venv/bin/python docs/experiments/last-vs-kept.py runs/diag/RUN-late.pt
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from checkpoint_setup import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a copy of a run's checkpoint.pt")
    args = parser.parse_args()
    state, setup = load(args.checkpoint)
    clusters = [c.cluster for c in setup.clients]
    last = setup.engine.evaluate(state["flat"], "test")[1].tolist()
    kept = setup.engine.evaluate(state["kept"], "test")[1].tolist()
    diff = [a - b for a, b in zip(last, kept, strict=True)]
    rounds = [r for _, r in state["best"]]
    print(f"round {state['next_round'] - 1}: last-round models against kept ones "
          f"(kept rounds: mean {statistics.fmean(rounds):.0f}, earliest {min(rounds)})")
    print("| models | mean | worst client (client) | " +
          " | ".join(f"cluster {c}" for c in sorted(set(clusters))) + " |")
    print("|---|---|---|" + "---|" * len(set(clusters)))
    for name, acc in (("last", last), ("kept", kept)):
        worst = min(range(len(acc)), key=acc.__getitem__)
        per = (statistics.fmean(a for a, k in zip(acc, clusters, strict=True) if k == c)
               for c in sorted(set(clusters)))
        print(f"| {name} | {statistics.fmean(acc):.4f} | {acc[worst]:.4f} ({worst}) | " +
              " | ".join(f"{m:.4f}" for m in per) + " |")
    print(f"last - kept: mean {statistics.fmean(diff):+.4f}, {sum(d < 0 for d in diff)} clients below, "
          f"{sum(d > 0 for d in diff)} above, least {min(diff):+.4f}, most {max(diff):+.4f}")


if __name__ == "__main__":
    main()
