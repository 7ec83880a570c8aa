"""Simulator configuration: defaults, TOML files and `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from swarm.errors import ConfigError
from swarm.selection import TOLERANCE


@dataclass
class SimConfig:
    dataset: str = "digits"
    partition: str = "rotation"
    alpha: float = 0.5  # dirichlet concentration
    split: str = "pools"  # "pools": per-client draws; "thesis": the thesis's fixed split (swarm.partition)
    clients: int = 20
    train_samples: int = 40
    val_samples: int = 10
    test_samples: int = 20
    model: str = ""  # "" = the dataset's default architecture
    rounds: int = 10
    strategy: str = "dac"
    similarity: str = ""  # "" = the strategy's default metric
    seed: int = 0
    local_epochs: int = 3
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    neighbours: int = 5
    tau: float = 0.0  # dac: softmax temperature; 0 = the metric's default (swarm.strategies.dac.DEFAULT_TAU)
    tau_growth: float = 0.0  # tau_t = tau + tau_growth * round (ours; the thesis keeps tau fixed)
    explore_unknown: bool = True  # dac: a peer not yet scored gets the best prior (False: the thesis's ~0)
    two_hop: bool = True
    two_hop_cap: bool = False  # dac: a 2-hop estimate is at most the similarity it came through (ours)
    rejection_penalty: float = 0.5  # dac: a refused merge multiplies the peer's prior by this (1: none)
    aggregate: str = "samples"  # dac: "samples" or "similarity"
    stage1_rounds: int = 50  # panm
    reestimate_every: int = 2  # panm (the thesis's runs)
    panm_alpha: float = 0.0  # panm metric: weight of the current-update cosine (the thesis: 0)
    merge: str = "mean"  # "mean", "median", "trimmed-mean"
    max_peer_epsilon: float = 0.0  # merge only peers that spent at most this epsilon (no DP: never); 0: off
    merge_weights: str = "strategy"  # "strategy" or "noise-aware" (swarm.peer_privacy)
    clip_norm: float = 0.0  # 0 = off
    merge_guard: bool = True  # merge only neighbours that do not raise the loss on my validation split
    guard_tolerance: float = TOLERANCE  # the merge guard's allowed relative rise of that loss
    judge_merged: bool = True  # the merged model, too, may be kept as the best on validation
    keep: str = "best"  # the model tested at the end: "best" on validation, or "last" (swarm.selection.KEEP)
    patience: int = 0  # early stopping: rounds without a better validation loss; 0 = never stop
    test_every: int = 1  # evaluate every client's current model on its test split every k rounds
    encoding: str = "fp32"  # fp32, fp16, int8, topk-delta; pruned tensors travel as mask + values
    topology: str = "full"  # gossip: "full", "ring" or random "regular" graph of `degree`
    degree: int = 4
    graph_seed: int = 0
    dp_epsilon: float = 0.0  # DP-SGD target epsilon per client over the run; 0 = no DP, inf = clip only
    # Per-client targets, cycled over the clients (client i gets dp_epsilons[i % len]), same meaning as
    # dp_epsilon (0 = that client trains without DP); non-empty, it replaces dp_epsilon.
    dp_epsilons: list[float] = field(default_factory=list)
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0
    prune_target: float = 1.0  # sparse models: final density of prunable weights; 1 = dense
    prune_rate: float = 0.2  # fraction of the kept weights pruned each time
    prune_every: int = 1  # rounds between prunings (from round 1 on)
    engine: str = "auto"  # "auto", "batched", "loop"
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def client_epsilons(self) -> list[float]:
        """Each client's DP target epsilon (0: no DP), from dp_epsilons cycled or dp_epsilon."""
        targets = self.dp_epsilons or [self.dp_epsilon]
        return [targets[i % len(targets)] for i in range(self.clients)]


KEYS = {f.name: f for f in fields(SimConfig)}

# The keys a node (`node.config.NodeConfig`, `swarm-node join`) does not take, and why; every other
# key is a node setting of the same name and meaning (tests/unit/test_strategy_contract.py holds both
# configs to this). A new simulator key goes to the node too, or here with its reason.
SIMULATOR_ONLY: dict[str, str] = {
    # A node holds one shard: `samples_per_client` training samples, a quarter as many for validation
    # and 1,000 test samples, so that its accuracy against training alone is measured to +-0.014.
    "train_samples": "a node's shard is sized by samples_per_client",
    "val_samples": "a node's validation split is a quarter of samples_per_client",
    "test_samples": "a node's test split is 1,000 samples",
    "test_every": "a node tests its best model once, when its rounds are done",
    "engine": "how the simulator batches its many virtual clients; a node trains one model",
    "dp_epsilons": "per-client DP targets cycled over the simulated clients; a node has one, dp_epsilon",
}


def coerce(key: str, value: Any) -> Any:
    if key not in KEYS:
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(KEYS)}")
    kind = type(getattr(SimConfig(), key))
    if kind is list:  # TOML gives a list, --set a comma-separated string; only dp_epsilons is a list
        items = value.split(",") if isinstance(value, str) else value
        return [coerce_float(key, item) for item in items if str(item).strip()]
    if kind is bool and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a {kind.__name__}, got {value!r}") from None
    if kind is int and isinstance(value, float) and value != out:
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    return out


def coerce_float(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a list of numbers, e.g. 1,8,0; got item {value!r}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SimConfig:
    """Defaults, then the TOML file's keys (top level or under [simulate]), then `key=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        values.update(data.get("simulate", data))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        values[key.strip()] = value.strip()
    return SimConfig(**{k: coerce(k, v) for k, v in values.items()})
