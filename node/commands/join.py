"""`swarm-node join`: take part in a swarm. Options come from flags, `SWARM_*` variables and `--config`.

Every field of `node.config.NodeConfig` is a flag (`data_dir` -> `--data-dir`), so the three sources
can never drift apart.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import typing
from pathlib import Path

from node.config import ConfigError, NodeConfig, config_fields, load_config
from storage.defaults import DEFAULT_IPFS_API
from swarm.peer_privacy import HALF_WEIGHT_EPSILON
from swarm.strategies import runnable

HELP = {
    "swarm": "swarm id: peers of one swarm share the gossip topic /swarm/<id>/announce/1",
    "bootstrap": "multiaddr of a swarm-bootstrap peer (/ip4/../tcp/../p2p/..); repeatable",
    "listen": "libp2p listen multiaddr (default /ip4/0.0.0.0/tcp/0: every interface, a port picked at "
              "start; give a fixed port to forward it on your router; /ip4/127.0.0.1/... keeps this peer "
              "on this host)",
    "announce_addr": "libp2p address other peers should dial instead of this host's interface addresses, "
                     "e.g. /ip4/<router's public ip>/tcp/<forwarded port>; repeatable",
    "ipfs_swarm_port": "swarm port of the private IPFS daemon, where peers fetch your snapshots (0: picked "
                       "once, kept in the data dir); it listens where --listen does; its API never leaves "
                       "127.0.0.1",
    "ipfs_announce_addr": "IPFS address peers should dial for your snapshots instead of the daemon's own, "
                          "e.g. /ip4/<public ip>/tcp/<forwarded port>; repeatable",
    "ipfs_api": f"Kubo RPC API multiaddr; empty: use {DEFAULT_IPFS_API} if it answers, else start a "
                "private daemon; 'private': always start a private daemon",
    "data_dir": "where keys, checkpoints, status and the private IPFS repo live",
    "role": "auto (default: trainer when this machine holds the data set or a non-empty --image-folder, "
            "else pinner with >= 2 GB free in --data-dir, else observer; the choice and why are logged), "
            "trainer (data + compute), pinner (keeps snapshots available), observer (watches)",
    "dataset": "research data set this peer takes a shard of: fashion-mnist, digits, cifar10",
    "partition": "how the data set is split across peers: iid, dirichlet, label-shift, rotation",
    "alpha": "dirichlet partition: concentration of the class proportions (default 0.5; smaller: skewed)",
    "split": "pools (default: per-shard draws) or thesis (the thesis's fixed Fashion-MNIST split)",
    "clients": "number of shards the data set is split into",
    "client": "which shard this peer holds (0-based)",
    "manifest": "CID of the swarm's manifest (swarm-node manifest create): the model, input shape, class "
                "names and initial weights every peer uses; image folders are matched to its classes by name",
    "strategy": f"whom to fetch and how to weigh them: {', '.join(runnable('node'))} (fedavg and oracle "
                "run in `swarm-node simulate` only)",
    "similarity": "how a peer scores a neighbour's model: inverse-loss, loss-ratio (my loss / theirs on my "
                  "data), cosine-weights, cosine-updates, l2, panm; empty: the strategy's default (dac: "
                  "inverse-loss, panm: panm; others score none)",
    "neighbours": "peers fetched and merged each round (dac, random, gossip; panm: the size of its bag)",
    "encoding": "snapshot encoding: fp32, fp16, int8, topk-delta",
    "tau": "dac: softmax temperature of the neighbour choice (0: the metric's default: 10 for inverse-loss, "
           "30 for loss-ratio)",
    "tau_growth": "dac: the temperature grows by this much each round (tau + tau_growth x round; default 0)",
    "explore_unknown": "dac: a peer not scored yet gets the best prior, so every peer is tried (default on)",
    "two_hop": "dac: estimate peers never scored from the tables the fetched neighbours announce "
               "(default on)",
    "two_hop_cap": "dac: a 2-hop estimate is at most the similarity of the neighbour it came through, "
                   "whose table is on its own data's scale (default off; the thesis copies it)",
    "rejection_penalty": "dac: a merge the guard refuses multiplies the peer's prior by this until it is "
                         "scored again (default 0.5; 1: no penalty)",
    "aggregate": "dac: merge weights by training-set size (samples, default) or by similarity",
    "stage1_rounds": "panm: rounds of stage 1, which builds the neighbour bag from the best-scored peers "
                     "(default 50)",
    "reestimate_every": "panm: in stage 2, explore outsiders and refit the bag every this many rounds "
                        "(default 2)",
    "panm_alpha": "panm metric: weight of the cosine of the current updates (mine since this round's "
                  "training began, a peer's between its two latest snapshots) against the accumulated "
                  "ones since the common init (default 0, as the thesis)",
    "topology": "gossip: the overlay graph peers are drawn from: full (default), ring, regular",
    "degree": "gossip: neighbours of each peer in the regular graph (default 4)",
    "graph_seed": "gossip: seed of the regular graph (every peer must use the same; default 0)",
    "merge_guard": "merge a neighbour only if that does not raise the loss on this peer's validation data "
                   "by more than --guard-tolerance; the model kept is the best on validation (default on)",
    "guard_tolerance": "the merge guard's allowed relative rise of the validation loss (default 0.1 = 10%%)",
    "judge_merged": "the model a merge gives is judged on validation too, and kept as this peer's best model "
                    "if it beats every earlier one (default on; off: only freshly trained models, as in "
                    "the thesis)",
    "keep": "the model this peer tests and reports when its rounds are done: best (default: its lowest "
            "validation loss so far) or last (the model it holds at the end)",
    "max_peer_epsilon": "merge only models whose publishers spent at most this DP epsilon (as announced, and "
                        "checked again in the fetched snapshot); a peer without DP counts as infinite "
                        "epsilon and is never merged while this is on (default 0: off)",
    "merge_weights": "strategy (default: the strategy's merge weights) or noise-aware: each weight times "
                     f"e^2/(e^2+{HALF_WEIGHT_EPSILON:g}^2) of the epsilon e the peer spent (1 without DP), "
                     "so noisier models weigh less",
    "merge": "how the merge combines models: mean (default), median, trimmed-mean (sparse models: the "
             "mean where masks overlap)",
    "clip_norm": "clip each neighbour's distance to my weights to this norm before merging (0: off)",
    "model": "architecture; empty: the data set's default (fashion-cnn, digits-mlp, lenet; resnet18); for "
             "DP-SGD: dp-cnn or scatter-linear (a linear model on fixed ScatterNet features, 28x28 images)",
    "seed": "swarm seed: the common initial weights and the data partition (every peer must use the same)",
    "local_epochs": "training epochs over the shard per round (default 1)",
    "batch_size": "training batch size (default 32)",
    "lr": "learning rate (default 0.001)",
    "optimizer": "adam (default) or sgd; its state starts afresh every round, as in the simulator",
    "patience": "stop training after this many rounds without a better validation loss, keep serving "
                "snapshots (0: never; the simulator's early stopping)",
    "dp_epsilon": "differential privacy: epsilon the whole run spends (DP-SGD; needs --rounds; 0: no DP)",
    "dp_delta": "differential privacy: delta (default 1e-5)",
    "dp_max_grad_norm": "differential privacy: per-sample gradient clipping norm (default 1)",
    "prune_target": "sparse personalised model: fraction of the prunable weights finally kept (1: dense, "
                    "default); the personal mask is kept in the checkpoint, snapshots travel as mask + "
                    "values",
    "prune_rate": "sparse model: fraction of the kept weights pruned each time (default 0.2)",
    "prune_every": "sparse model: rounds between prunings, from the second round on (default 1)",
    "device": "auto (cuda > mps > cpu; the choice and what was found are logged), cpu, cuda, mps",
    "rounds": "stop after this many rounds (0: run until stopped)",
    "max_steps_per_round": "cap on training steps per round (a slow device trains less, not later)",
    "round_interval_s": "a round lasts at least this long (time for peers' announcements to arrive)",
    "headless": "log JSON lines instead of the live view",
}


CONFIG_HELP = "TOML file with settings (top level or [node])"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help=CONFIG_HELP)
    add_setting_flags(parser, [f.name for f in config_fields()])


def add_setting_flags(parser: argparse.ArgumentParser, names: list[str],
                      help_text: dict[str, str] | None = None) -> None:
    """One flag per named `NodeConfig` field, parsed as `join` parses it (`doctor` checks a subset).
    Flags not given are absent from the namespace, so `load_config` lets TOML and SWARM_* fill them."""
    hints = typing.get_type_hints(NodeConfig)
    for name in names:
        flag = "--" + name.replace("_", "-")
        kind = hints[name]
        text = (help_text or {}).get(name, HELP.get(name))
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=text)
        elif typing.get_origin(kind) is list:
            parser.add_argument(flag, action="append", default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(flag, default=argparse.SUPPRESS, help=text, metavar=name.upper())


def run(args: argparse.Namespace) -> int:
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    try:
        cfg = load_config(args.config, flags)
    except ConfigError as exc:
        print(f"swarm-node join: {exc}", file=sys.stderr)
        return 2
    return run_node(cfg)


def run_node(cfg: NodeConfig) -> int:
    from node.loop import Node  # torch and libp2p load only once the settings are known to be good

    headless = cfg.headless or not sys.stdout.isatty()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    node = Node(cfg, echo_json=headless)

    def request_stop(signum: int, _frame: object) -> None:
        node.event(f"received {signal.Signals(signum).name}: finishing the current step")
        node.stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if headless:
        return _run_reporting_errors(node)
    from rich.live import Live

    from node.status import render

    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(_run_reporting_errors(node)), name="node")
    with Live(get_renderable=lambda: render(node.status), refresh_per_second=2):
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
    return result[0] if result else 1


def _run_reporting_errors(node: object) -> int:
    from node.checkpoint import CheckpointError
    from p2p.gossip import GossipError
    from p2p.identity import IdentityError
    from storage import StoreError
    from swarm.data import DatasetNotFoundError

    try:
        return node.run()  # type: ignore[attr-defined]
    except (StoreError, GossipError, IdentityError, CheckpointError, DatasetNotFoundError, ValueError) as exc:
        print(f"swarm-node join: {exc}", file=sys.stderr)
        return 1
