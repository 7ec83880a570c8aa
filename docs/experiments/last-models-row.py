"""One table row from the last models of several seeds' runs (`final.last_models`, recorded since commit
8f0abf6), and each client against the same client of reference runs (same seed, so the same data).

The runs were made with the default `keep = "best"`, which records both the kept and the last models; this
reads the last ones, which is what `keep = "last"` reports. A reference is `NAME=PATTERN`, where `{seed}` in
PATTERN is replaced by each run's seed; its kept models are used unless the name ends in `:last`.

    .venv/bin/python docs/experiments/last-models-row.py \\
        docs/results/thesis-rotation-diagnostics/ours-judge-merged-no-patience-s1 \\
        docs/results/thesis-rotation-diagnostics/ours-judge-merged-no-patience-rerun-s2 \\
        docs/results/thesis-rotation-diagnostics/ours-judge-merged-no-patience-rerun-s3 \\
        --against local=docs/results/thesis-rotation/local-s{seed} \\
                  random=docs/results/thesis-rotation/random-s{seed} \\
                  oracle=docs/results/thesis-rotation/oracle-s{seed}
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

FLOOR = 0.82  # issue 12's goal for the worst client


def load(run: Path) -> dict:
    path = run / "summary.json" if run.is_dir() else run
    return json.loads(path.read_text())


def last_models(summary: dict, where: object) -> list[float]:
    last = summary["final"].get("last_models")
    if not last:
        raise SystemExit(f"{where} records no last models (a run from before 8f0abf6)")
    return last["per_client"]


def ms(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (or summary.json), one per seed")
    parser.add_argument("--against", nargs="*", default=[], metavar="NAME=PATTERN",
                        help="reference runs; {seed} is replaced by the run's seed; "
                             "NAME:last uses their last models")
    args = parser.parse_args()
    loaded = [(r, load(r)) for r in args.runs]
    runs = {s["config"]["seed"]: (r, s) for r, s in loaded}
    print("| seed | rounds | last: mean | std | worst (client) | best | at most 0.82 | kept: mean "
          "| kept: worst | MB sent | CPU s/round |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    means, worsts, mbs = [], [], []
    for seed, (path, s) in sorted(runs.items()):
        acc = last_models(s, path)
        worst = min(range(len(acc)), key=acc.__getitem__)
        cpu = statistics.fmean(r["cpu_s"] for r in s["rounds"])
        means.append(statistics.fmean(acc))
        worsts.append(acc[worst])
        mbs.append(s["bytes_sent_total"] / 1e6)
        print(f"| {seed} | {len(s['rounds'])} | {means[-1]:.4f} | {statistics.pstdev(acc):.4f} | "
              f"{acc[worst]:.4f} ({worst}) | {max(acc):.4f} | {sum(a <= FLOOR for a in acc)} | "
              f"{s['final']['mean_acc']:.4f} | {s['final']['min_acc']:.4f} | {mbs[-1]:,.0f} | {cpu:.1f} |")
    print(f"\nover seeds {', '.join(map(str, sorted(runs)))}: mean {ms(means)}, worst client {ms(worsts)}, "
          f"MB sent {statistics.fmean(mbs):,.0f}\n")
    if not args.against:
        return
    print("| against | below (per seed) | worst gain | mean gain |")
    print("|---|---|---|---|")
    for spec in args.against:
        name, _, pattern = spec.partition("=")
        gains: dict[int, list[float]] = {}
        for seed, (path, s) in sorted(runs.items()):
            ref_path = Path(pattern.format(seed=seed))
            ref = load(ref_path)
            theirs = last_models(ref, ref_path) if name.endswith(":last") else ref["final"]["per_client"]
            gains[seed] = [a - b for a, b in zip(last_models(s, path), theirs, strict=True)]
        every = [g for gs in gains.values() for g in gs]
        print(f"| {name} | {' / '.join(str(sum(g < 0 for g in gs)) for gs in gains.values())} | "
              f"{min(every):+.4f} | {statistics.fmean(every):+.4f} |")


if __name__ == "__main__":
    main()
