"""Simulator outputs: `summary.json` (the DESIGN.md contract), `rounds.csv` and PNG plots, plus a
comparison plot over several runs (`python -m swarm.sim.report compare OUT.png RUN_DIR...`)."""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from storage.atomic import write_atomic
from swarm.sim.simulator import SimResult

ROUND_FIELDS = [
    "round",
    "mean_acc",
    "std_acc",
    "min_acc",
    "max_acc",
    "test_loss",
    "val_acc",
    "train_loss",
    "purity",
    "merged_purity",
    "active",
    "bytes_sent",
    "wall_s",
    "cpu_s",
    "epsilon",
    "density",
    "spread_trained",  # the spread of the models just trained, before this round's merge
    "spread",  # after the merge: the models the peers hold at the end of the round
]

# Lists per round (one value per cluster): in summary.json's rounds, not rounds.csv's columns.
JSON_ONLY_FIELDS = ("cluster_purity",)


def accuracy_stats(acc: Sequence[float]) -> dict[str, Any]:
    """Mean, spread, worst and best of per-client test accuracies, and the list itself."""
    return {
        "mean_acc": statistics.fmean(acc) if acc else None,
        "std_acc": statistics.pstdev(acc) if acc else None,
        "min_acc": min(acc, default=None),
        "max_acc": max(acc, default=None),
        "per_client": list(acc),
    }


def summary(result: SimResult) -> dict[str, Any]:
    return {
        "config": result.config,
        "final": {
            **accuracy_stats(result.per_client),
            "best_round": result.best_rounds,
            "kept_merged": result.kept_merged,
            # the models the clients hold at the end, whether or not validation kept them
            "last_models": accuracy_stats(result.last_per_client) if result.last_per_client else None,
            "clusters": result.clusters,
            # Strict JSON has no Infinity: a clip-only run (no noise) has no finite epsilon.
            "epsilon_spent": result.epsilon_spent if result.epsilon_spent is None
            or math.isfinite(result.epsilon_spent) else None,
        },
        "rounds": result.rounds,
        "bytes_sent_total": result.bytes_sent_total,
        "wall_s": result.wall_s,
    }


def write_outputs(result: SimResult, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "summary.json", json.dumps(summary(result), indent=1).encode())
    with open(out / "rounds.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROUND_FIELDS)  # a field missing from ROUND_FIELDS raises
        writer.writeheader()
        writer.writerows({k: v for k, v in row.items() if k not in JSON_ONLY_FIELDS} for row in result.rounds)
    return [out / "summary.json", out / "rounds.csv", *plot_run(result, out)]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tested(rounds: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rounds in which the clients' current models were tested (`test_every`)."""
    return [r for r in rounds if r.get("mean_acc") is not None]


def plot_run(result: SimResult, out: Path) -> list[Path]:
    plt = pyplot()
    rows = tested(result.rounds)
    rounds = [r["round"] for r in rows]
    label = f"{result.config['strategy']} ({result.config['similarity']})"
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rounds, [r["mean_acc"] for r in rows], label=f"{label}: mean")
    ax.fill_between(
        rounds,
        [r["min_acc"] for r in rows],
        [r["max_acc"] for r in rows],
        alpha=0.2,
        label="min-max over clients",
    )
    ax.set(
        xlabel="round",
        ylabel="client test accuracy (current model)",
        title=f"{result.config['dataset']} {result.config['partition']}",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    clusters = sorted(set(result.clusters))
    ax.hist(
        [[a for a, c in zip(result.per_client, result.clusters, strict=True) if c == k] for k in clusters],
        bins=20,
        range=(0, 1),
        stacked=True,
        label=[f"cluster {k}" for k in clusters],
    )
    ax.set(xlabel="final test accuracy", ylabel="clients", title=f"per-client accuracy: {label}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "clients.png", dpi=100)
    plt.close(fig)
    return [out / "accuracy.png", out / "clients.png"]


def variant_of(run_dir: Path) -> str:
    """A run's variant: its directory's name without the seed (`dac-inverse-loss-s1` -> `dac-inverse-loss`),
    as `swarm.sim.grid` and the experiment scripts name runs."""
    return variant_and_seed(run_dir)[0]


def variant_and_seed(run_dir: Path) -> tuple[str, str]:
    """`dac-inverse-loss-s1` -> (`dac-inverse-loss`, `1`); a name without `-s` has seed ``."""
    variant, *seed = Path(run_dir).name.rsplit("-s", 1)
    return variant, seed[0] if seed else ""


def mean_curves(run_dirs: Sequence[Path]) -> tuple[dict[str, list[float]], str]:
    """Mean client accuracy per round of each variant, averaged over its seeds (as long as the shortest
    of them), and which split it is: test accuracy where every run tested every round, else
    validation accuracy."""
    summaries = {Path(d): json.loads((Path(d) / "summary.json").read_text()) for d in run_dirs}
    every_round = all(len(tested(s["rounds"])) == len(s["rounds"]) for s in summaries.values())
    key = "mean_acc" if every_round else "val_acc"
    runs: dict[str, list[list[float]]] = {}
    for run_dir, s in summaries.items():
        runs.setdefault(variant_of(run_dir), []).append([r[key] for r in s["rounds"]])
    curves = {label: [statistics.fmean(r[t] for r in rs) for t in range(min(len(r) for r in rs))]
              for label, rs in sorted(runs.items())}
    return curves, "test" if every_round else "validation"


def line_styles(n: int) -> list[tuple[str, str]]:
    """(colour, line style) of `n` lines, no two alike up to 30: matplotlib's 10 colours, solid, then
    dashed, then dotted (a plot of every thesis row has 11 variants)."""
    return [(f"C{i % 10}", ("-", "--", ":")[i // 10 % 3]) for i in range(n)]


def compare(out_png: Path, run_dirs: Sequence[Path]) -> None:
    """One line per variant: `mean_curves` drawn into `out_png`."""
    plt = pyplot()
    curves, split = mean_curves(run_dirs)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, curve), (colour, linestyle) in zip(curves.items(), line_styles(len(curves)), strict=True):
        ax.plot(range(len(curve)), curve, label=label, color=colour, linestyle=linestyle)
    ax.set(xlabel="round", ylabel=f"mean client {split} accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "compare":
        sys.exit("usage: python -m swarm.sim.report compare OUT.png RUN_DIR [RUN_DIR ...]")
    compare(Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
