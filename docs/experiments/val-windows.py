"""Mean validation accuracy (rounds.csv's `val_acc`) over windows of rounds, one column per run, as
a Markdown table; a window is printed while at least two runs reach it (a run cut short, or still
going, ends early).

    .venv/bin/python docs/experiments/val-windows.py [--every 20] RUN_DIR...
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import torch


def val_acc(run: Path) -> list[float]:
    """From rounds.csv, or from the checkpoint of a run still going (the rounds it has finished)."""
    if not (run / "rounds.csv").exists() and (run / "checkpoint.pt").exists():
        rounds = torch.load(run / "checkpoint.pt", weights_only=False)["state"]["result"]["rounds"]
        return [float(r["val_acc"]) for r in rounds]
    with open(run / "rounds.csv", newline="") as f:
        return [float(row["val_acc"]) for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding a rounds.csv")
    parser.add_argument("--every", type=int, default=20, help="rounds per window (default 20)")
    args = parser.parse_args()
    curves = {run.name: val_acc(run) for run in args.runs}
    print("| rounds | " + " | ".join(curves) + " |")
    print("|---" * (len(curves) + 1) + "|")
    start = 0
    while sum(len(c) >= start + args.every for c in curves.values()) >= 2:
        cells = [f"{statistics.fmean(c[start:start + args.every]):.4f}" if len(c) >= start + args.every
                 else "" for c in curves.values()]
        print(f"| {start}-{start + args.every - 1} | " + " | ".join(cells) + " |")
        start += args.every


if __name__ == "__main__":
    main()
