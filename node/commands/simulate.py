"""`swarm-node simulate`: run many virtual peers in one process and write summary.json, rounds.csv
and plots. A thin wrapper: the simulator lives in swarm/, the snapshot codec in storage/."""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="TOML file (see swarm/configs/); keys at top level or under [simulate]"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set strategy=dac --set rounds=50 (repeatable)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder for summary.json, rounds.csv, PNGs"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--checkpoint-s", type=float, default=60.0, metavar="SECONDS",
                        help="save the run's state to OUT/checkpoint.pt at most this often (default 60; "
                        "0 = never); a run started again with the same config and --out resumes from it "
                        "exactly, and the file is deleted once summary.json is written")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the small models of these experiments train "
                        "fastest on one thread, and extra threads thrash a shared machine)")


class Checkpoints:
    """The simulation's state in OUT/checkpoint.pt, replaced atomically at most every `every_s` seconds.
    Loaded with `weights_only=True`, like a node's checkpoint: the file is data, never code."""

    def __init__(self, out: Path, config: dict[str, Any], every_s: float) -> None:
        from node.checkpoint import CHECKPOINT_FILE

        self.path, self.config, self.every_s = out / CHECKPOINT_FILE, config, every_s
        self.saved_at = time.monotonic()

    def load(self) -> Any:
        """The saved `SimState` of this very config, or None if the folder holds no checkpoint."""
        import torch

        from node.checkpoint import CheckpointError
        from swarm.sim.config import SimConfig
        from swarm.sim.simulator import SimState

        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, weights_only=True)
            config, state = saved["config"], SimState(**saved["state"])
        except Exception as exc:  # every unreadable file gets the same advice
            raise CheckpointError(f"cannot resume from {self.path} ({exc.__class__.__name__}: {exc}); "
                                  "delete it to start the run over") from exc
        # A setting added since the file was written did not exist for that run: it ran as the
        # setting's default does, so only a non-default value makes it another run.
        config = {**SimConfig().to_dict(), **config}
        if config != self.config:
            changed = sorted(k for k in {*config, *self.config} if config.get(k) != self.config.get(k))
            raise CheckpointError(
                f"{self.path} belongs to a run with other settings ({', '.join(changed)}); use another "
                "--out, or delete the file to start over")
        return state

    def offer(self, state: Any) -> None:
        if time.monotonic() - self.saved_at < self.every_s:
            return
        import torch

        from storage.atomic import write_atomic

        buffer = io.BytesIO()
        torch.save({"config": self.config, "state": state.__dict__}, buffer)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, buffer.getvalue())
        self.saved_at = time.monotonic()


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(args.threads, 1))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from swarm.sim.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"swarm-node simulate: {exc}", file=sys.stderr)
        return 2
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from node.checkpoint import CheckpointError
    from storage.wire import SnapshotWire
    from swarm.sim.report import write_outputs
    from swarm.sim.simulator import simulate

    with Progress(
        TextColumn(f"{cfg.strategy} {cfg.dataset}/{cfg.partition}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        disable=args.quiet,
    ) as bar:
        task = bar.add_task("rounds", total=cfg.rounds, status="")

        def on_round(row: dict) -> None:
            purity = "-" if row["purity"] is None else f"{row['purity']:.2f}"
            if row["mean_acc"] is not None:
                acc = f"acc {row['mean_acc']:.3f} (min {row['min_acc']:.2f})"
            else:
                acc = "val acc -" if row["val_acc"] is None else f"val acc {row['val_acc']:.3f}"
            bar.update(task, advance=1, status=f"{acc} purity {purity}")

        saver = Checkpoints(args.out, cfg.to_dict(), args.checkpoint_s)
        try:
            resume = saver.load()
            if resume is not None:
                bar.update(task, completed=resume.next_round)
            result = simulate(cfg, wire=SnapshotWire(cfg.encoding), on_round=on_round,
                              resume=resume, on_state=saver.offer if args.checkpoint_s > 0 else None)
        except (ValueError, FileNotFoundError, RuntimeError, CheckpointError) as exc:
            print(f"swarm-node simulate: {exc}", file=sys.stderr)
            return 2
    written = write_outputs(result, args.out)
    saver.path.unlink(missing_ok=True)
    judged = ("each client's best model on its validation split" if cfg.val_samples
              else "each client's last model")
    print(
        f"mean acc {statistics.fmean(result.per_client):.4f} ({judged}, on its test split)  "
        f"bytes {result.bytes_sent_total}  "
        f"wall {result.wall_s:.1f}s  -> {', '.join(str(p) for p in written)}"
    )
    return 0
