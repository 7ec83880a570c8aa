"""Where one round of a node's time goes, in a real 4-peer swarm on this machine.

Each (model, encoding) runs `swarm-node demo` machinery: a bootstrap and 4 `swarm-node join`
processes, each with its own js-ipfs daemon, on Fashion-MNIST. Every node times the phases of each
of its rounds (train / evaluate / encode / put / announce / fetch / score / merge /
checkpoint) and prints them; this script takes the median over peers and rounds (round 1 is left
out: nobody has published yet) and the share of communication (encode + put + announce + fetch) in
the round. A node downloads and decodes its neighbours' snapshots on worker threads while it
publishes its own, so `fetch` is the wait for whatever of that publishing did not hide.

    .venv/bin/python bench/round.py                       # small CNN and resnet18, every encoding
    .venv/bin/python bench/round.py --models fashion-cnn --encodings fp32 --rounds 4
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
from pathlib import Path

from node.demo import DemoSettings, run_demo

PHASES = ["train", "evaluate", "encode", "put", "announce", "fetch", "score", "merge", "checkpoint"]
COMMUNICATION = ["encode", "put", "announce", "fetch"]
# resnet18 on 2 CPU cores: a handful of steps per round keeps the benchmark within minutes; its train
# time per step is what matters, and the table says how many steps a round had.
STEPS = {"fashion-cnn": 0, "resnet18": 3}


def measure(model: str, encoding: str, rounds: int, nodes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-round-") as work:
        settings = DemoSettings(nodes=nodes, rounds=rounds, dataset="fashion-mnist", partition="iid",
                                samples_per_client=400, neighbours=2, encoding=encoding, model=model,
                                max_steps_per_round=STEPS.get(model, 0), round_interval_s=0.0,
                                timeout_s=1800, workdir=Path(work))
        outcomes, _ = run_demo(settings, baseline=False)
    timings = [t for o in outcomes for t in o.round_timings[1:]]
    if not timings:
        raise SystemExit(f"{model}/{encoding}: no round timings were reported")
    medians = {p: statistics.median(t.get(p, 0.0) for t in timings) for p in PHASES}
    medians["total"] = statistics.median(sum(t.values()) for t in timings)
    medians["comm_share"] = sum(medians[p] for p in COMMUNICATION) / medians["total"]
    return medians


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: run_demo stops its processes
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["fashion-cnn", "resnet18"])
    parser.add_argument("--encodings", nargs="+", default=["fp32", "fp16", "int8", "topk-delta"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=4)
    args = parser.parse_args()
    header = ["model", "encoding", *PHASES, "total", "comm %"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for model in args.models:
        for encoding in args.encodings:
            m = measure(model, encoding, args.rounds, args.nodes)
            cells = [f"{m[p] * 1000:.0f}" for p in PHASES] + [f"{m['total'] * 1000:.0f}"]
            print(f"| {model} | {encoding} | " + " | ".join(cells) + f" | {m['comm_share'] * 100:.1f} |",
                  flush=True)
    print("\nmedian milliseconds per round per node; comm % = (encode+put+announce+fetch) / total; "
          "fetch includes decoding")


if __name__ == "__main__":
    main()
