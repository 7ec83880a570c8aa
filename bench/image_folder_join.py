"""A volunteer with an image folder of Fashion-MNIST classes joins three Fashion-MNIST shard peers, as
real processes: does it learn? (The story of issue 17: before class folders were matched by name, its
loss stayed at chance, 2.33, while alone it learned.)

Everything is a real process: one js-ipfs daemon, `swarm-node manifest create --dataset
fashion-mnist`, a `swarm-bootstrap --manifest CID` that offers it, three `swarm-node join --dataset
fashion-mnist` shard peers (iid shards of 400) and the volunteer `swarm-node join --image-folder DIR`
(300 real Fashion-MNIST test images, 30 a class, one folder per class name, `T-shirt_top` for
"T-shirt/top"); the peers pass only the bootstrap's address and take the manifest it offers.
All peers share the one IPFS daemon: a joiner's private daemon knows no other daemon before it has
joined, so it could not fetch the manifest (docs/results.md says more). `--alone` runs the volunteer
only, with `--strategy local` and no manifest, for the baseline.

Prints the volunteer's round lines (train loss, validation accuracy, models merged), then one summary
line: last and best validation accuracy, the test accuracy the node reports (its best model on its
own test split of 30 images), and the accuracy on 1,000 other Fashion-MNIST test images (read as an
image folder by the same code) of that best model (from its checkpoint) and of its last snapshot.

    nice -n 10 .venv/bin/python bench/image_folder_join.py /tmp/folder-join --rounds 30 [--seed N]
    nice -n 10 .venv/bin/python bench/image_folder_join.py /tmp/folder-join --rounds 30 --alone [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from node import checkpoint
from node.config import NodeConfig
from node.learner import load_shard
from node.processes import Bootstrap, Child, ProcError, kill_all
from p2p.addresses import LOOPBACK_LISTEN
from storage import IpfsDaemon, IpfsStore, decode
from storage.manifest import Manifest
from swarm.models import build_model

SWARM = "folder-join"
SHARD_PEERS = 3
NODE = [sys.executable, "-m", "node.cli"]


def write_folders(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the writer is test support
    from support.image_folders import write_fashion_folder

    if not (out / "volunteer").exists():
        write_fashion_folder(out / "volunteer", per_class=30)
    if not (out / "eval").exists():
        write_fashion_folder(out / "eval", per_class=100, skip=30)


def join_argv(data_dir: Path, api: str, bootstrap: str, rounds: int, *extra: str) -> list[str]:
    argv = [*NODE, "join", "--swarm", SWARM, "--listen", LOOPBACK_LISTEN, "--ipfs-api", api,
            "--data-dir", str(data_dir), "--headless", "--rounds", str(rounds), *extra]
    return [*argv, "--bootstrap", bootstrap] if bootstrap else argv


def held_out_accuracy(state: dict[str, torch.Tensor], eval_dir: Path, manifest: Manifest | None) -> float:
    """The model's accuracy on the eval folder, labelled as the volunteer labels its own folder."""
    data = load_shard(NodeConfig(image_folder=str(eval_dir)), manifest).data
    x = torch.cat([data.train_x, data.val_x, data.test_x])
    y = torch.cat([data.train_y, data.val_y, data.test_y])
    model = build_model("fashion-cnn", in_channels=1, num_classes=10)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def follow(volunteer: Child, timeout: float) -> dict[str, Any]:
    """Print the volunteer's round lines until it finishes; what it reported."""
    seen: dict[str, Any] = {"val_acc": [], "loss": [], "merged": 0, "cid": ""}
    deadline = time.monotonic() + timeout
    while volunteer.proc.poll() is None or not volunteer.lines.empty():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the volunteer did not finish within {timeout:.0f} s")
        try:
            event = json.loads(volunteer.next_line(timeout=5.0))
        except (ProcError, ValueError):  # no line yet, or a line that is not JSON
            continue
        if "val_acc" in event and "cid" in event:
            seen["val_acc"].append(event["val_acc"])
            seen["loss"].append(event["loss"])
            seen["cid"] = event["cid"]
            print(f"  round {event['round']:3d}  train loss {event['loss']:.3f}  val acc "
                  f"{event['val_acc']:.3f}", flush=True)
        elif "merged" in event:
            seen["merged"] += 1
        elif "test_acc" in event:
            seen["test_acc"] = event["test_acc"]
        elif event.get("event", "").startswith(("class folders", "no examples", "WARNING", "swarm manifest")):
            print(f"  note: {event['event']}", flush=True)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--alone", action="store_true", help="the volunteer alone, --strategy local")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole run")
    parser.add_argument("--seed", type=int, default=0, help="every peer's --seed (shuffles, splits)")
    args = parser.parse_args()
    out = args.out.resolve()
    write_folders(out)
    run_dir = out / f"{'alone' if args.alone else 'swarm'}-seed{args.seed}"
    if run_dir.exists():
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    daemon = IpfsDaemon.start(run_dir / "ipfs")
    children: list[Child] = []
    started = time.monotonic()
    try:
        api = daemon.api_multiaddr
        store = IpfsStore(api)
        manifest: Manifest | None = None
        bootstrap = ""
        volunteer_extra = ["--image-folder", str(out / "volunteer"), "--seed", str(args.seed)]
        if args.alone:
            volunteer_extra += ["--strategy", "local"]
        else:
            # Initial weights of the same seed as the volunteer's alone: both runs start from one model.
            created = subprocess.run([*NODE, "manifest", "create", "--dataset", "fashion-mnist", "--seed",
                                      str(args.seed), "--ipfs-api", api],
                                     capture_output=True, text=True, check=True, timeout=300)
            cid = created.stdout.strip()
            manifest = Manifest.from_bytes(store.get(cid))
            print(f"manifest {cid} ({manifest.labels})", flush=True)
            # The bootstrap offers the manifest: no peer is told its CID, as a volunteer would join.
            boot = Bootstrap(SWARM, run_dir / "bootstrap", extra=["--manifest", cid])
            children.append(boot)
            bootstrap = boot.addr
            for i in range(SHARD_PEERS):
                children.append(Child(join_argv(run_dir / f"shard{i}", api, bootstrap, args.rounds,
                                                "--dataset", "fashion-mnist",
                                                "--seed", str(args.seed),
                                                "--partition", "iid", "--clients", str(SHARD_PEERS),
                                                "--client", str(i)),
                                      run_dir / f"shard{i}.log"))
        volunteer = Child(join_argv(run_dir / "volunteer", api, bootstrap, args.rounds, *volunteer_extra),
                          run_dir / "volunteer.log")
        children.append(volunteer)
        seen = follow(volunteer, args.timeout)
        code = volunteer.proc.wait(30)
        last = decode(store.get(seen["cid"])).state_dict
        # The model the node reports (and keeps): its best on its validation split over the run.
        saved = checkpoint.load(run_dir / "volunteer")
        best = vars(saved)["best"]["model"] if saved is not None else last
        vals = seen["val_acc"] or [float("nan")]
        best_acc, last_acc = (held_out_accuracy(m, out / "eval", manifest) for m in (best, last))
        print(json.dumps({"mode": "alone" if args.alone else "swarm", "seed": args.seed,
                          "rounds": len(seen["val_acc"]), "exit": code,
                          "last_train_loss": round(seen["loss"][-1], 4) if seen["loss"] else None,
                          "last_val_acc": round(vals[-1], 4), "best_val_acc": round(max(vals), 4),
                          "merges": seen["merged"], "node_test_acc": seen.get("test_acc"),
                          "best_model_held_out_acc": round(best_acc, 4),
                          "last_snapshot_held_out_acc": round(last_acc, 4),
                          "wall_s": round(time.monotonic() - started)}), flush=True)
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.stop()
        kill_all(children)
        daemon.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
