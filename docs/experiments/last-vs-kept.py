"""Test every client's last model (the one it holds, merged in the last round) against the model it
keeps (its lowest validation loss so far): is choosing by validation loss better than taking the last
model? Per client, on the full test split of its cluster.

From a finished run's summary.json (`final.last_models`, recorded since commit 8f0abf6), or from a copy
of a running simulation's checkpoint (the summaries of older runs do not record the last models, and a
finished run deletes its checkpoint, so copy one near the end):

    .venv/bin/python docs/experiments/last-vs-kept.py runs/diag/RUN/summary.json
    .venv/bin/python docs/experiments/last-vs-kept.py runs/diag/RUN-late.pt
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def from_summary(path: Path) -> tuple[str, list[float], list[float], list[int], list[int]]:
    summary = json.loads(path.read_text())
    final = summary["final"]
    if not final.get("last_models"):
        raise SystemExit(f"{path} records no last models (a run from before 8f0abf6): use a checkpoint copy")
    return (f"the end of round {len(summary['rounds']) - 1}", final["last_models"]["per_client"],
            final["per_client"], final["clusters"], final["best_round"])


def from_checkpoint(path: Path) -> tuple[str, list[float], list[float], list[int], list[int]]:
    from checkpoint_setup import load

    state, setup = load(path)
    last = setup.engine.evaluate(state["flat"], "test")[1].tolist()
    kept = setup.engine.evaluate(state["kept"], "test")[1].tolist()
    return (f"round {state['next_round'] - 1}", last, kept, [c.cluster for c in setup.clients],
            [r for _, r in state["best"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run's summary.json, or a copy of its checkpoint.pt")
    args = parser.parse_args()
    read = from_summary if args.run.suffix == ".json" else from_checkpoint
    when, last, kept, clusters, rounds = read(args.run)
    diff = [a - b for a, b in zip(last, kept, strict=True)]
    print(f"{when}: last models against kept ones "
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
