"""`swarm-node demo`: watch a small swarm learn on this machine, then compare with training alone."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import statistics
import sys
import tempfile
import typing
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from node.demo import DemoSettings, PeerOutcome, run_demo, summary_rounds, verdict
from node.lineage import SnapshotSources, snapshot_caches, walk
from node.lineage_view import tree
from node.status import NodeStatus, short_id

HELP = {
    "nodes": "how many peers to start, each its own `swarm-node join` process with its own IPFS daemon",
    "rounds": "rounds each peer trains; the alone baseline trains as many",
    "dataset": "fashion-mnist, digits or cifar10",
    "partition": "how the data is shared out: rotation (clusters of rotated images), label-shift, "
                 "dirichlet or iid",
    "samples_per_client": "training images per peer (a quarter as many more for validation)",
    "strategy": "neighbour choice: dac, panm, random, local",
    "similarity": "how a peer scores a neighbour's model (empty: the strategy's own, inverse-loss for dac): "
                  "inverse-loss, loss-ratio (my loss / theirs), cosine-weights, cosine-updates, l2, panm",
    "neighbours": "neighbours each peer fetches and may merge per round",
    "encoding": "snapshot encoding: fp32, fp16, int8, topk-delta",
    "local_epochs": "passes over its own training data per round",
    "lr": "Adam learning rate",
    "guard_tolerance": "the merge guard's allowed relative rise of a peer's validation loss",
    "model": "model name (empty: the dataset's default)",
    "max_steps_per_round": "cap on training steps per round (0: none)",
    "round_interval_s": "a round lasts at least this long (time for neighbours' announcements to arrive)",
    "seed": "seed of the data split, the initial weights and the batches",
    "timeout_s": "give up (and stop every peer) after this many seconds",
    "workdir": "keep the peers' data and logs here (default: a new temporary folder, kept; "
               "`swarm-node lineage CID --data-dir WORKDIR` reads the peers' snapshots from it)",
}
LINEAGE_DEPTH = 3  # generations of the lineage the report prints


def add_arguments(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(DemoSettings)
    for f in dataclasses.fields(DemoSettings):
        kind = hints[f.name]
        kind = Path if f.name == "workdir" else kind
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default,
                            help=f"{HELP[f.name]} (default: {f.default})".replace("%", "%%"))
    parser.add_argument("--out", type=Path, help="write summary.json, rounds.csv and plots here")
    parser.add_argument("--headless", action="store_true", help="print progress lines, no live view")


def live_table(statuses: list[NodeStatus | None]) -> Table:
    table = Table(title="swarm-node demo: peers", expand=True)
    for column in ("peer", "round", "loss", "val acc", "bytes in", "bytes out", "gossip peers", "last event"):
        table.add_column(column)
    for i, st in enumerate(statuses):
        if st is None:
            table.add_row(f"#{i}", "starting", "", "", "", "", "", "")
            continue
        last = st.events[-1][1] if st.events else ""
        table.add_row(f"#{i} {short_id(st.peer_id)}", f"{st.round}/{st.rounds or '-'}",
                      "-" if st.loss is None else f"{st.loss:.3f}",
                      "-" if st.val_acc is None else f"{st.val_acc:.3f}",
                      f"{st.bytes_in:,}", f"{st.bytes_out:,}", str(st.gossip_peers), last[:60])
    return table


def final_table(outcomes: list[PeerOutcome]) -> Table:
    table = Table(title="after the run: test accuracy on each peer's own test split")
    for column in ("peer", "cluster", "swarm", "alone", "gain", "snapshots merged", "bytes in", "bytes out"):
        table.add_column(column)
    for o in outcomes:
        gain = "-" if o.gain is None else f"{o.gain:+.3f}"
        table.add_row(f"#{o.client} {short_id(o.peer_id)}", str(o.cluster),
                      "-" if o.test_acc is None else f"{o.test_acc:.3f}",
                      "-" if o.alone_acc is None else f"{o.alone_acc:.3f}", gain, str(o.merges),
                      f"{o.bytes_in:,}", f"{o.bytes_out:,}")
    return table


def print_lineage(console: Console, outcomes: list[PeerOutcome], workdir: Path) -> None:
    """Each peer's final snapshot, and the lineage of the one that merged most, from the snapshot
    caches the peers left in `workdir` (their IPFS daemons have stopped)."""
    from storage.defaults import DEFAULT_MAX_SIZE

    console.print(f"final snapshots (their lineage: swarm-node lineage CID --data-dir {workdir}):")
    for o in outcomes:
        console.print(f"  #{o.client} {short_id(o.peer_id)}  {o.final_cid or 'none published'}")
    shown = max((o for o in outcomes if o.final_cid), key=lambda o: o.merges, default=None)
    if shown is None:
        return
    sources = SnapshotSources(snapshot_caches([workdir]), None, max_size=DEFAULT_MAX_SIZE)
    console.print(f"lineage of #{shown.client}'s final snapshot, {LINEAGE_DEPTH} generations "
                  f"(--depth for more):")
    console.print(tree(walk(shown.final_cid, sources, depth=LINEAGE_DEPTH)))


def run(args: argparse.Namespace) -> int:
    # SIGTERM unwinds like Ctrl-C, so the demo stops every process it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = DemoSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoSettings)})
    # Named here, not left to run_demo, so the report can point `swarm-node lineage` at it.
    settings.workdir = settings.workdir or Path(tempfile.mkdtemp(prefix="swarm-demo-"))
    console = Console()
    headless = args.headless or not sys.stdout.isatty()
    last_round = [-1]

    def progress(statuses: list[NodeStatus | None]) -> None:
        rounds = [s.round for s in statuses if s is not None]
        if rounds and min(rounds) > last_round[0]:
            last_round[0] = min(rounds)
            accs = [s.val_acc for s in statuses if s is not None and s.val_acc is not None]
            mean = f"{statistics.fmean(accs):.3f}" if accs else "-"
            print(f"demo: all peers at round >= {min(rounds)}, mean val acc {mean}", flush=True)

    console.print(f"swarm-node demo: a bootstrap and {settings.nodes} peers, each with its own IPFS daemon, "
                  f"{settings.dataset} {settings.partition}, {settings.rounds} rounds")
    if headless:
        outcomes, wall = run_demo(settings, on_tick=progress)
    else:
        with Live(live_table([None] * settings.nodes), console=console, refresh_per_second=2) as live:
            outcomes, wall = run_demo(settings, on_tick=lambda st: live.update(live_table(st)))
    console.print(final_table(outcomes))
    console.print(verdict(outcomes))
    print_lineage(console, outcomes, settings.workdir)
    if args.out is not None:
        write_report(settings, outcomes, wall, args.out)
        console.print(f"report written to {args.out}/summary.json")
    failed = [o.client for o in outcomes if o.exit_code != 0 or o.test_acc is None]
    if failed:
        console.print(f"peers {failed} did not finish cleanly; see their logs in the work dir")
        return 1
    return 0


def write_report(settings: DemoSettings, outcomes: list[PeerOutcome], wall: float, out: Path) -> None:
    from swarm.sim.report import write_outputs
    from swarm.sim.simulator import SimResult

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(settings).items()}
    result = SimResult(
        config={**config, "runtime": "demo (separate processes, libp2p + IPFS)"},
        rounds=summary_rounds(outcomes),
        per_client=[o.test_acc if o.test_acc is not None else 0.0 for o in outcomes],
        clusters=[o.cluster for o in outcomes],
        bytes_sent_total=sum(o.bytes_out for o in outcomes),
        wall_s=wall,
    )
    write_outputs(result, out)
    # The demo knows more than the simulator contract asks for: what each peer gained over training alone.
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text())
    alone = [o.alone_acc for o in outcomes if o.alone_acc is not None]
    summary["final"]["alone_mean_acc"] = statistics.fmean(alone) if alone else None
    summary["final"]["verdict"] = verdict(outcomes)
    summary["peers"] = [dataclasses.asdict(o) for o in outcomes]
    summary_path.write_text(json.dumps(summary, indent=1))
