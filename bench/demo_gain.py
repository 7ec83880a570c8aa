"""Does joining help? The real `swarm-node demo` (separate processes, libp2p, IPFS) for several peer
counts and seeds, each peer's test accuracy against the same shard trained alone.

One run per directory (`OUT/n<nodes>-s<seed>/summary.json`); finished runs are skipped, so an
interrupted sweep resumes where it stopped. The table is printed from the summaries.

    nice -n 10 .venv/bin/python bench/demo_gain.py run --out docs/results/demo-gain \
        --nodes 4 6 10 --seeds 0 1 2
    .venv/bin/python bench/demo_gain.py table docs/results/demo-gain

"rounds behind": how many rounds older than the merging peer's own model the models it merged were,
on average over its merges (0 = every merge used its neighbours' models of the same round).
    .venv/bin/python bench/demo_gain.py sim-table docs/results/sim-gain   # docs/experiments/sim-gain.sh
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from node.demo import gains_verdict

BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 1800


def run(out: Path, nodes: list[int], seeds: list[int], extra: list[str]) -> None:
    for n in nodes:
        for seed in seeds:
            target = out / f"n{n}-s{seed}"
            if (target / "summary.json").exists():
                continue
            argv = [str(BIN / "swarm-node"), "demo", "--headless", "--nodes", str(n), "--seed", str(seed),
                    "--timeout-s", str(RUN_TIMEOUT_S - 120), "--out", str(target), *extra]
            print("$", " ".join(argv[1:]), flush=True)
            done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
            print(done.stdout[-1500:], done.stderr[-1500:], sep="\n", flush=True)
            for name in ("accuracy.png", "clients.png"):  # the table needs the numbers, not the plots
                (target / name).unlink(missing_ok=True)


def table(out: Path) -> str:
    lines = ["| peers | seed | mean gain | per-peer gain (cluster) | worst | swarm mean | alone mean "
             "| rounds behind | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(out.glob("n*-s*/summary.json"), key=lambda p: tuple(
            int(x) for x in p.parent.name[1:].split("-s"))):
        s = json.loads(path.read_text())
        peers = s["peers"]
        gains = [p["gain"] for p in peers if p["gain"] is not None]
        per_peer = ", ".join(f"{p['gain']:+.3f} ({p['cluster']})" for p in peers if p["gain"] is not None)
        n, seed = path.parent.name[1:].split("-s")
        lags = [p["merge_lag"] for p in peers if p.get("merge_lag") is not None]
        lag = f"{statistics.fmean(lags):.2f}" if lags else "-"
        lines.append(f"| {n} | {seed} | {statistics.fmean(gains):+.3f} | {per_peer} | {min(gains):+.3f} | "
                     f"{s['final']['mean_acc']:.3f} | {s['final']['alone_mean_acc']:.3f} | {lag} | "
                     f"{gains_verdict(gains)} |")
    return "\n".join(lines)


def sim_table(out: Path) -> str:
    """The same comparison from `docs/experiments/sim-gain.sh` runs: DAC and random gossip against
    local training, per client."""
    lines = ["| peers | seed | dac mean gain | dac per-peer gain (cluster) | dac worst | random mean gain | "
             "random per-peer gain | random worst | verdict (dac) |", "|---|---|---|---|---|---|---|---|---|"]
    for local_path in sorted(out.glob("n*-s*-local/summary.json"),
                             key=lambda p: tuple(int(x) for x in p.parent.name[1:-6].split("-s"))):
        stem = local_path.parent.name.removesuffix("-local")
        alone = json.loads(local_path.read_text())["final"]["per_client"]
        row = {}
        for strategy in ("dac", "random"):
            path = out / f"{stem}-{strategy}" / "summary.json"
            if path.exists():
                final = json.loads(path.read_text())["final"]
                gains = [a - b for a, b in zip(final["per_client"], alone, strict=True)]
                row[strategy] = (gains, final["clusters"])
        if "dac" not in row:
            continue
        gains, clusters = row["dac"]
        n, seed = stem[1:].split("-s")
        rnd = row.get("random")
        lines.append(f"| {n} | {seed} | {statistics.fmean(gains):+.3f} | "
                     + ", ".join(f"{g:+.3f} ({c})" for g, c in zip(gains, clusters, strict=True))
                     + f" | {min(gains):+.3f} | "
                     + (f"{statistics.fmean(rnd[0]):+.3f} | " + ", ".join(f"{g:+.3f}" for g in rnd[0])
                        + f" | {min(rnd[0]):+.3f}" if rnd else "- | - | -")
                     + f" | {gains_verdict(gains)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the demos that have no summary.json yet")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--nodes", type=int, nargs="+", default=[4, 6, 10])
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("extra", nargs="*", help="more `swarm-node demo` options (after --), e.g. -- --rounds 10")
    t = sub.add_parser("table", help="print the markdown table of the finished runs")
    t.add_argument("out", type=Path)
    st = sub.add_parser("sim-table", help="the same from docs/experiments/sim-gain.sh runs")
    st.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out, args.nodes, args.seeds, args.extra)
    else:
        print((table if args.command == "table" else sim_table)(args.out))


if __name__ == "__main__":
    main()
