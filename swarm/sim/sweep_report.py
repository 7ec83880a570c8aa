"""Tables (markdown, on stdout) and plots for the sweeps of `docs/experiments/privacy-and-compression.sh`:
gossip vs FedAvg under DP, DAC under DP (purity), bytes vs accuracy per encoding and sparse models,
the spread of the peers' models under DP per topology.

    .venv/bin/python -m swarm.sim.sweep_report RUNS_DIR docs/plots
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from swarm.data import INFO
from swarm.dp_advice import NoisePlan, cannot_learn, parameters_of
from swarm.models import build_model
from swarm.privacy import PrivacyBudget, plan_noise
from swarm.sim.report import pyplot

Run = dict[str, Any]
EPSILONS = (0.0, math.inf, 8.0, 4.0, 2.0, 1.0)  # 0: plain SGD; inf: clipping without noise
METHODS = ("fedavg", "ring", "regular", "full")


def load_runs(root: Path) -> dict[str, Run]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("*/summary.json"))}


def eps_label(eps: float) -> str:
    return "∞ (no DP)" if eps <= 0 else "∞ (clip only)" if math.isinf(eps) else f"{eps:g}"


def method(run: Run) -> str:
    c = run["config"]
    return c["topology"] if c["strategy"] == "gossip" else c["strategy"]


def curve(run: Run, key: str = "mean_acc") -> list[float]:
    return [r[key] for r in run["rounds"]]


def per_peer_round_bytes(run: Run) -> float:
    c = run["config"]
    return run["bytes_sent_total"] / (c["rounds"] * c["clients"])


def mean_curve(runs: list[Run], key: str = "mean_acc") -> list[float]:
    length = min(len(r["rounds"]) for r in runs)
    return [statistics.fmean(curve(r, key)[t] for r in runs) for t in range(length)]


def final_acc(runs: list[Run]) -> float:
    return statistics.fmean(r["final"]["mean_acc"] for r in runs)


def dp_cell(runs: list[Run], base: list[Run] | None, dp: bool) -> str:
    accs = [r["final"]["mean_acc"] for r in runs]
    text = f"{statistics.fmean(accs):.3f}"
    if len(accs) > 1:
        text += f" ±{(max(accs) - min(accs)) / 2:.3f}"
    if base and dp:
        text += f" ({statistics.fmean(accs) / final_acc(base):.2f})"
    return text


def dp_section(runs: dict[str, Run], plots: Path) -> list[str]:
    lines: list[str] = []
    plt = pyplot()
    for part in ("iid", "rotation"):
        grid: dict[tuple[str, float], list[Run]] = {}
        for name, r in runs.items():
            if name.startswith("dp-") and r["config"]["partition"] == part:
                grid.setdefault((method(r), r["config"]["dp_epsilon"]), []).append(r)
        if not grid:
            continue
        seeds = sorted({r["config"]["seed"] for rs in grid.values() for r in rs})
        spent = max((r["final"].get("epsilon_spent") or 0.0) / r["config"]["dp_epsilon"]
                    for rs in grid.values() for r in rs if 0 < r["config"]["dp_epsilon"] < math.inf)
        lines += [f"**{part}** — final mean client accuracy over seeds {seeds} (± half the range over "
                  f"seeds; in brackets the ratio to the same method without DP). Largest epsilon spent / "
                  f"target: {spent:.3f}.", "",
                  "| method | " + " | ".join(f"ε {eps_label(e)}" for e in EPSILONS) + " |",
                  "|---|" + "---|" * len(EPSILONS)]
        for m in METHODS:
            base = grid.get((m, 0.0))
            cells = [dp_cell(grid[m, e], base, e > 0) if (m, e) in grid else "–" for e in EPSILONS]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
        shown = [e for e in EPSILONS if any(k[1] == e for k in grid)]
        fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.2), sharey=True)
        for ax, e in zip(axes, shown, strict=True):
            for m in METHODS:
                if (m, e) in grid:
                    ax.plot(mean_curve(grid[m, e]), label=m)
            ax.set(title=f"{part}, ε = {eps_label(e)}", xlabel="round")
        axes[0].set_ylabel("mean client test accuracy")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plots / f"dp-{part}-rounds.png", dpi=90)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = [e for e in EPSILONS if 0 < e < math.inf]
        for m in METHODS:
            have = [e for e in xs if (m, e) in grid]
            ax.plot(have, [final_acc(grid[m, e]) for e in have], marker="o", label=m)
        ax.set(xscale="log", xlabel="target ε (log)", ylabel="final mean accuracy", title=f"DP-SGD, {part}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plots / f"dp-{part}-final.png", dpi=90)
        plt.close(fig)
    return lines


def dac_dp_section(runs: dict[str, Run], plots: Path) -> list[str]:
    picked = {r["config"]["dp_epsilon"]: r for n, r in runs.items() if n.startswith("dacdp-")}
    if not picked:
        return []
    lines = ["| ε | final mean acc | min acc | purity first round | purity last 5 rounds | ε spent |",
             "|---|---|---|---|---|---|"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for e in sorted(picked, key=lambda x: -x if x > 0 else -1e9):
        r = picked[e]
        purity = curve(r, "purity")
        spent = r["final"].get("epsilon_spent")
        lines.append(f"| {eps_label(e)} | {r['final']['mean_acc']:.3f} | {r['final']['min_acc']:.3f} | "
                     f"{purity[0]:.2f} | {statistics.fmean(purity[-5:]):.2f} | "
                     f"{'–' if spent is None else f'{spent:.2f}'} |")
        ax.plot(purity, label=f"ε = {eps_label(e)}")
    ax.set(xlabel="round", ylabel="neighbour purity", title="DAC, rotation, under DP-SGD")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plots / "dac-dp-purity.png", dpi=90)
    plt.close(fig)
    return [*lines, ""]


def comm_section(runs: dict[str, Run], plots: Path) -> list[str]:
    picked = {n: r for n, r in runs.items() if n.startswith("comm-")}
    if not picked:
        return []
    dense = next((r for n, r in picked.items() if n == "comm-dac-fp32"), None)
    lines = ["| run | strategy | encoding | final density | kB / round / peer (mean) | last round | "
             "vs dense DAC fp32 (mean, last) | final mean acc ± std | min acc |",
             "|---|---|---|---|---|---|---|---|---|"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, r in picked.items():
        c = r["config"]
        b, last = per_peer_round_bytes(r), r["rounds"][-1]["bytes_sent"] / c["clients"]
        ratio = "–"
        if dense and b and last:
            ratio = (f"{per_peer_round_bytes(dense) / b:.1f}x, "
                     f"{dense['rounds'][-1]['bytes_sent'] / c['clients'] / last:.1f}x")
        density = r["rounds"][-1].get("density", 1.0)
        final = r["final"]
        lines.append(f"| {name} | {c['strategy']} | {c['encoding']} | {density:.2f} | {b / 1e3:.1f} | "
                     f"{last / 1e3:.1f} | {ratio} | {final['mean_acc']:.3f} ± {final['std_acc']:.3f} | "
                     f"{final['min_acc']:.3f} |")
        if b:
            ax.scatter(b / 1e3, r["final"]["mean_acc"])
            ax.annotate(name.removeprefix("comm-"), (b / 1e3, r["final"]["mean_acc"]), fontsize=7)
    ax.set(xscale="log", xlabel="kB sent per round per peer (log)", ylabel="final mean accuracy",
           title="DAC rotation: bytes vs accuracy")
    fig.tight_layout()
    fig.savefig(plots / "comm-bytes-accuracy.png", dpi=90)
    plt.close(fig)
    return [*lines, ""]


def noise_plan(config: dict[str, Any]) -> NoisePlan:
    """The plan `swarm.sim.dp_engine.PrivateLoopEngine` makes for a run's first client."""
    n, batch = config["train_samples"], config["batch_size"]
    rate = min(1.0, batch / n)
    steps = config["rounds"] * config["local_epochs"] * round(1 / rate)
    budget = PrivacyBudget(config["dp_epsilon"], config["dp_delta"], config["dp_max_grad_norm"])
    dataset = INFO[config["dataset"]]
    model = build_model(config["model"] or dataset.model, in_channels=dataset.input_shape[0])
    return NoisePlan(plan_noise(budget, rate, steps), rate * n, steps, parameters_of(model), n,
                     budget.target_epsilon, budget.max_grad_norm, config["optimizer"])


def rule_section(runs: dict[str, Run], plots: Path) -> list[str]:
    """The DP warning's rule against measured runs (docs/experiments/dp-warning.sh, `rule-*`): per DP run
    its plan's step ratio rho and run ratio R, whether it warns, and its accuracy next to the same
    setting without DP (`-e0`) and clipped without noise (`-einf`)."""
    picked = {n: r for n, r in runs.items() if n.startswith("rule-")}
    lines = ["| run | optimizer | samples | batch | steps | sigma | rho | R | warns | acc | no DP | "
             "clip only |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in picked.items():
        c = r["config"]
        if not 0 < c["dp_epsilon"] < math.inf:
            continue
        p = noise_plan(c)
        stem = name.rsplit("-e", 1)[0]
        ref = [f"{runs[f'{stem}-e{e}']['final']['mean_acc']:.3f}" if f"{stem}-e{e}" in runs else "–"
               for e in ("0", "inf")]
        lines.append(f"| {name} | {c['optimizer']} | {p.samples} | {p.expected_batch:.0f} | {p.steps} | "
                     f"{p.noise_multiplier:.2f} | {p.step_ratio:.3f} | {p.run_ratio:.2f} | "
                     f"{'yes' if cannot_learn(p) else 'no'} | {r['final']['mean_acc']:.3f} | {ref[0]} | "
                     f"{ref[1]} |")
    return [*lines, ""] if len(lines) > 2 else []


SPREAD_EPSILONS = (0.0, math.inf, 2.0)
SPREAD_COLOURS = ("tab:blue", "tab:green", "tab:red")  # one colour per epsilon in every plot


def spread_section(runs: dict[str, Run], plots: Path) -> list[str]:
    """How DP noise spreads: per topology, the mean distance of the peers' models to their average over
    rounds, after local training (dashed) and after merging (solid), averaged over seeds; one plot per
    run length (the `spread` mode of the script, run names `spread-<method>-e<eps>[-r<rounds>]-s<seed>`)."""
    grid: dict[tuple[int, str, float], list[Run]] = {}
    for name, r in runs.items():
        if name.startswith("spread-"):
            c = r["config"]
            grid.setdefault((c["rounds"], method(r), c["dp_epsilon"]), []).append(r)
    lines: list[str] = []
    plt = pyplot()
    for length in sorted({k[0] for k in grid}):
        seeds = sorted({r["config"]["seed"] for k, rs in grid.items() if k[0] == length for r in rs})
        shown = [e for e in SPREAD_EPSILONS if any(k[0] == length and k[2] == e for k in grid)]
        lines += [f"**{length} rounds**, seeds {seeds}: spread (mean L2 distance of a peer's model to the "
                  "peers' average) after the last round's local training / after its merge, and final mean "
                  "accuracy", "",
                  "| method | " + " | ".join(f"ε {eps_label(e)}: trained / merged, acc"
                                            for e in shown) + " |",
                  "|---|" + "---|" * len(shown)]
        fig, axes = plt.subplots(1, len(METHODS), figsize=(3.2 * len(METHODS), 3.6), sharey=True)
        for ax, m in zip(axes, METHODS, strict=True):
            cells = []
            for e in shown:
                colour = SPREAD_COLOURS[SPREAD_EPSILONS.index(e)]
                rs = grid.get((length, m, e))
                if not rs:
                    cells.append("–")
                    continue
                trained, merged = mean_curve(rs, "spread_trained"), mean_curve(rs, "spread")
                cells.append(f"{trained[-1]:.2f} / {merged[-1]:.2f}, {final_acc(rs):.3f}")
                ax.plot(merged, color=colour, label=f"ε {eps_label(e)}, merged")
                ax.plot(trained, color=colour, linestyle="--", label=f"ε {eps_label(e)}, trained")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
            # log: the spreads differ 100-fold; FedAvg's merged spread is 0 (one model), below the axis
            ax.set(title=m, xlabel="round", yscale="log", ylim=(0.01, 5))
        axes[0].set_ylabel("mean distance to the average model")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
        fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the legend below the panels
        suffix = "" if length == 8 else f"-r{length}"
        fig.savefig(plots / f"dp-spread{suffix}.png", dpi=90)
        plt.close(fig)
        lines.append("")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m swarm.sim.sweep_report RUNS_DIR PLOTS_DIR", file=sys.stderr)
        return 2
    runs, plots = load_runs(Path(argv[0])), Path(argv[1])
    plots.mkdir(parents=True, exist_ok=True)
    for title, section in (("DP: gossip vs FedAvg", dp_section), ("DAC under DP", dac_dp_section),
                           ("Bytes vs accuracy", comm_section), ("How DP noise spreads", spread_section),
                           ("When DP-SGD cannot learn", rule_section)):
        lines = section(runs, plots)
        if lines:
            print(f"### {title}\n")
            print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
