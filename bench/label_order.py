"""A volunteer's image folder of Fashion-MNIST classes, merged with Fashion-MNIST shard peers: does it
learn? (issue 17: ImageFolder numbered the class folders alphabetically, the data set does not, so six
of ten classes meant different things on the two sides of every merge.)

Learner level, as `join` runs a round: three shard peers (iid, 400 samples each) and the folder peer
(300 real Fashion-MNIST test images as PNGs, 30 per class, one folder per class name) each train one
local epoch, judge their model on validation, then merge the other three's models of the same round
(sample-weighted mean; the merge guard on, as `join` defaults; `--no-guard` merges everything). The
folder peer's best model is scored on 1,000 other Fashion-MNIST test images, loaded as an image folder
through the same code, so labels and scale follow whatever that code does. The script uses only the
`Learner` API that predates the fix, so the same file measures the code before it:

    nice -n 5 .venv/bin/python bench/label_order.py folders /tmp/label-order
    nice -n 5 .venv/bin/python bench/label_order.py run /tmp/label-order --rounds 50
    PYTHONPATH=<checkout before the fix> nice -n 5 .venv/bin/python bench/label_order.py run ...
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

from node.config import NodeConfig
from node.learner import Learner, load_shard

SHARD_PEERS = 3


def folders(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the writer is test support
    from support.image_folders import write_fashion_folder  # writes files: not needed to measure

    write_fashion_folder(out / "volunteer", per_class=30)
    write_fashion_folder(out / "eval", per_class=100, skip=30)


def held_out(eval_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_shard(NodeConfig(image_folder=str(eval_dir))).data
    x = torch.cat([data.train_x, data.val_x, data.test_x])
    return x, torch.cat([data.train_y, data.val_y, data.test_y])


def accuracy(learner: Learner, x: torch.Tensor, y: torch.Tensor) -> float:
    """Of the learner's best model on validation so far."""
    model = copy.deepcopy(learner.model).cpu().eval()
    model.load_state_dict(learner.best_state)
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def run(out: Path, rounds: int, guard: bool, alone: bool) -> None:
    cpu = torch.device("cpu")
    common = {"partition": "iid", "samples_per_client": 400, "merge_guard": guard, "rounds": rounds}
    volunteer_cfg = NodeConfig(image_folder=str(out / "volunteer"), **common)
    volunteer = Learner(volunteer_cfg, load_shard(volunteer_cfg), cpu)
    peers = {"volunteer": volunteer}
    if not alone:
        for i in range(SHARD_PEERS):
            cfg = NodeConfig(dataset="fashion-mnist", clients=SHARD_PEERS, client=i, **common)
            peers[f"shard{i}"] = Learner(cfg, load_shard(cfg), cpu)
    x, y = held_out(out / "eval")
    started = time.monotonic()
    for rnd in range(1, rounds + 1):
        loss = {name: peer.train(None).loss for name, peer in peers.items()}
        val = {name: peer.judge(rnd) for name, peer in peers.items()}
        states = {name: peer.state() for name, peer in peers.items()}
        weights = {name: float(peer.samples) for name, peer in peers.items()}
        merged = {name: peer.merge(name, states, weights, rounds_trained=rnd) for name, peer in peers.items()}
        taken = [p for p, w in merged["volunteer"].weights.items() if p != "volunteer" and w > 0]
        if rnd % 5 == 0 or rnd == 1:
            print(f"round {rnd:3d}  volunteer train loss {loss['volunteer']:.3f}  val loss "
                  f"{val['volunteer'][0]:.3f} acc {val['volunteer'][1]:.3f}  merged {len(taken)}  best model "
                  f"(round {volunteer.best.round}) on 1,000 held-out images {accuracy(volunteer, x, y):.3f}  "
                  f"({time.monotonic() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("folders").add_argument("out", type=Path)
    measure = sub.add_parser("run")
    measure.add_argument("out", type=Path)
    measure.add_argument("--rounds", type=int, default=50)
    measure.add_argument("--no-guard", action="store_true", help="merge every model, as without the guard")
    measure.add_argument("--alone", action="store_true", help="the volunteer alone (no shard peers)")
    args = parser.parse_args()
    if args.command == "folders":
        folders(args.out)
    else:
        run(args.out, args.rounds, guard=not args.no_guard, alone=args.alone)


if __name__ == "__main__":
    main()
