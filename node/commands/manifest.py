"""`swarm-node manifest create|show`: make and publish a swarm manifest, or show one.

`create` builds the model's initial weights (seeded, as a node seeds them), puts them and the manifest
in IPFS (pinned) and prints the manifest's CID: joiners pass it as `join --manifest CID`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from storage.defaults import DEFAULT_IPFS_API

DATASETS = ("fashion-mnist", "digits", "cifar10")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create",
                            help="make a manifest, put it and its initial weights in IPFS, print its CID")
    which = create.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", choices=DATASETS,
                       help="take the class names (in the data set's order) and input shape of this data set")
    which.add_argument("--classes", help="class names in output order, comma-separated: a,b,c")
    create.add_argument("--model", help="model name (default: the data set's default model)")
    create.add_argument("--input-shape", metavar="CxHxW",
                        help="input shape, e.g. 1x28x28 (default: the data set's, or the model's usual one)")
    create.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights (0: those a node without a manifest starts from)")
    create.add_argument("--ipfs-api", default=DEFAULT_IPFS_API, help="IPFS (Kubo RPC) API multiaddr")
    create.add_argument("--out", type=Path, help="also write the manifest to this file")
    show = sub.add_parser("show", help="fetch a manifest by CID (or read a file) and show it")
    show.add_argument("source", help="manifest CID, or a manifest file")
    show.add_argument("--ipfs-api", default=DEFAULT_IPFS_API, help="IPFS (Kubo RPC) API multiaddr")
    show.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for IPFS (30)")
    show.add_argument("--json", action="store_true", help="print the manifest's JSON as it is")


class UsageError(ValueError):
    """The command line asks for something that cannot make a manifest; the message says what to give."""


def run(args: argparse.Namespace) -> int:
    from storage import StoreError
    from storage.manifest import ManifestError
    from swarm.errors import SwarmError

    try:
        return create(args) if args.action == "create" else show(args)
    except (UsageError, ManifestError, StoreError, SwarmError, OSError) as exc:
        print(f"swarm-node manifest {args.action}: {exc}", file=sys.stderr)
        return 1


def _shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--input-shape {text!r} is not CxHxW, e.g. 1x28x28") from None
    return c, h, w


def create(args: argparse.Namespace) -> int:
    import torch

    from storage import IpfsStore, encode
    from storage.manifest import Manifest
    from swarm.data import INFO
    from swarm.labels import map_names
    from swarm.models import build_model

    usual: tuple[int, int, int] | None
    if args.dataset:
        info = INFO[args.dataset]
        classes, model, usual = info.classes, args.model or info.model, info.input_shape
    else:
        classes = tuple(name.strip() for name in args.classes.split(",") if name.strip())
        if not args.model:
            raise UsageError("--classes needs --model (e.g. fashion-cnn for 1x28x28 grey images)")
        model = args.model
        usual = next((info.input_shape for info in INFO.values() if info.model == model), None)
    map_names(classes, classes, "class")  # joiners match folders by name: names must differ by more than case
    shape = _shape(args.input_shape) if args.input_shape else usual
    if shape is None:
        raise UsageError(f"give --input-shape: model {model} has no usual input shape")
    torch.manual_seed(args.seed)  # as a node seeds its model (node.learner.Learner)
    weights = build_model(model, in_channels=shape[0], num_classes=len(classes)).state_dict()
    store = IpfsStore(args.ipfs_api)
    init = store.put(encode(weights, meta={"round": 0, "samples": 0}))
    store.pin(init)
    manifest = Manifest(model=model, input_shape=shape, classes=tuple(classes), init=init)
    data = manifest.to_bytes()
    cid = store.put(data)
    store.pin(cid)
    if args.out:
        args.out.write_bytes(data)
    print(cid, flush=True)
    return 0


def show(args: argparse.Namespace) -> int:
    from storage import IpfsStore
    from storage.manifest import MAX_BYTES, Manifest

    path = Path(args.source)
    if path.is_file():
        data = path.read_bytes()[:MAX_BYTES + 1]
    else:
        data = IpfsStore(args.ipfs_api).get(args.source, max_size=MAX_BYTES, timeout=args.timeout)
    manifest = Manifest.from_bytes(data)
    if args.json:
        print(data.decode())
        return 0
    print(f"model        {manifest.model}\n"
          f"input shape  {'x'.join(map(str, manifest.input_shape))}\n"
          f"classes      {len(manifest.classes)}: {', '.join(manifest.classes)}\n"
          f"init         {manifest.init}\n"
          f"labels       {manifest.labels} (announced by its peers)")
    return 0
