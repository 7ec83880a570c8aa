"""Run a grid of simulator experiments (variants x seeds), resumable, and tabulate the results.

    python -m swarm.sim.grid run --config swarm/configs/fmnist-rotation-reduced.toml --out runs/rot \
        --seeds 0 1 2 --variants local random fedavg oracle dac:inverse-loss panm
    python -m swarm.sim.grid table runs/rot     # markdown table: mean +- std over seeds
    python -m swarm.sim.grid versus runs/rot local random   # per client against the same client
A variant is `strategy`, `strategy:similarity`, optionally named and with its own settings:
`NAME=strategy[:similarity][,key=value...]`, e.g. `local-slow=local,lr=0.00005` or
`ours=dac:inverse-loss,merge_guard=true,encoding=int8`. A run whose summary.json exists is skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from swarm.sim.config import load_config
from swarm.sim.report import variant_and_seed, write_outputs
from swarm.sim.simulator import simulate


def run_grid(
    config: Path, out: Path, variants: list[str], seeds: list[int], overrides: list[str], deadline: float
) -> None:
    for seed in seeds:
        for variant in variants:
            name, spec, settings = parse_variant(variant)
            strategy, _, metric = spec.partition(":")
            target = out / f"{name}-s{seed}"
            if (target / "summary.json").exists():
                continue
            if time.time() > deadline:
                print(f"time budget spent; not run: {target.name}", flush=True)
                continue
            sets = [*overrides, *settings, f"strategy={strategy}", f"seed={seed}"] + (
                [f"similarity={metric}"] if metric else []
            )
            result = simulate(load_config(config, sets))
            write_outputs(result, target)
            print(
                f"{target.name}: acc {statistics.fmean(result.per_client):.4f} wall {result.wall_s:.0f}s",
                flush=True,
            )


def parse_variant(variant: str) -> tuple[str, str, list[str]]:
    """`NAME=strategy[:metric][,key=value...]` -> (run name, `strategy[:metric]`, settings)."""
    name, sep, rest = variant.partition("=")
    spec, *settings = (rest if sep else variant).split(",")
    return (name if sep else spec.replace(":", "-")), spec, settings


def summaries(out: Path) -> dict[str, dict[str, dict]]:
    """The runs in `out` (`VARIANT-sSEED/summary.json`) by variant, then seed."""
    runs: dict[str, dict[str, dict]] = {}
    for path in sorted(out.glob("*/summary.json")):
        variant, seed = variant_and_seed(path.parent)
        runs.setdefault(variant, {})[seed] = json.loads(path.read_text())
    return runs


def table(out: Path) -> str:
    def ms(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"

    lines = [
        "| variant | seeds | mean acc | std over clients | min acc | max acc | purity | merged purity "
        "| MB sent | s/round | CPU s/round |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_seed in summaries(out).items():
        runs = list(by_seed.values())
        finals = [r["final"] for r in runs]
        cells = [name, str(len(runs))]
        cells += [ms([f[k] for f in finals]) for k in ("mean_acc", "std_acc", "min_acc", "max_acc")]
        for key in ("purity", "merged_purity"):  # over the whole run: rounds after early stops included
            values = [statistics.fmean(v) for r in runs if (v := [x[key] for x in r["rounds"]
                                                                   if x.get(key) is not None])]
            cells.append(ms(values) if values else "-")
        cells.append(f"{statistics.fmean(r['bytes_sent_total'] for r in runs) / 1e6:.1f}")
        cells.append(f"{statistics.fmean(r['wall_s'] / max(len(r['rounds']), 1) for r in runs):.1f}")
        # Runs from before cpu_s was recorded (or resumed across that change) have no full column.
        cpu = [statistics.fmean(x["cpu_s"] for x in r["rounds"]) for r in runs
               if r["rounds"] and all(x.get("cpu_s") is not None for x in r["rounds"])]
        cells.append(f"{statistics.fmean(cpu):.1f}" if len(cpu) == len(runs) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versus(out: Path, references: list[str]) -> str:
    """Each variant's clients against the same clients of each reference variant (same seed, so the
    same data): per seed how many end below it, and the worst and mean gain over all seeds."""
    per_client = {variant: {seed: run["final"]["per_client"] for seed, run in by_seed.items()}
                  for variant, by_seed in summaries(out).items()}
    missing = [r for r in references if r not in per_client]
    if missing:
        raise ValueError(f"no runs of {', '.join(missing)} in {out}; choose from {', '.join(per_client)}")
    header = "| variant | seeds |" + "".join(
        f" below {r} (per seed) | worst gain over {r} | mean gain over {r} |" for r in references)
    lines = [header, "|---|---|" + "---|---|---|" * len(references)]
    for variant, seeds in per_client.items():
        cells = [variant, " ".join(sorted(seeds))]
        for ref in references:
            common = sorted(set(seeds) & set(per_client[ref]))
            if variant == ref or not common:
                cells += ["-", "-", "-"]
                continue
            if any(len(seeds[s]) != len(per_client[ref][s]) for s in common):
                raise ValueError(f"{variant} and {ref} have different numbers of clients in {out}; "
                                 "compare runs of one experiment")
            gains = {s: [a - b for a, b in zip(seeds[s], per_client[ref][s], strict=True)] for s in common}
            every = [g for s in common for g in gains[s]]
            cells += [" / ".join(str(sum(g < 0 for g in gains[s])) for s in common),
                      f"{min(every):+.3f}", f"{statistics.fmean(every):+.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="simulator experiment grids")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--variants", nargs="+", required=True)
    run.add_argument("--seeds", nargs="+", type=int, default=[0])
    run.add_argument("--set", dest="overrides", action="append", default=[])
    run.add_argument(
        "--budget-s", type=float, default=3600.0, help="start no new run after this many seconds"
    )
    tab = sub.add_parser("table", help="one row per variant: mean +- std over seeds")
    tab.add_argument("out", type=Path)
    vs = sub.add_parser("versus", help="each variant's clients against the same clients of other variants")
    vs.add_argument("out", type=Path)
    vs.add_argument("references", nargs="+", help="variants to compare with, e.g. local random")
    args = parser.parse_args()
    if args.cmd == "run":
        import torch

        torch.set_num_threads(1)
        run_grid(
            args.config, args.out, args.variants, args.seeds, args.overrides, time.time() + args.budget_s
        )
    elif args.cmd == "versus":
        try:
            print(versus(args.out, args.references))
        except ValueError as e:
            parser.exit(2, f"error: {e}\n")
    else:
        print(table(args.out))


if __name__ == "__main__":
    main()
