"""`swarm-node join` settings: defaults < TOML file (`--config`) < environment (`SWARM_*`) < flags.

Every setting is a field of `NodeConfig`; the environment variable of field `foo_bar` is
`SWARM_FOO_BAR` (lists comma-separated), and the TOML key is `foo_bar` (top level or under `[node]`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2p.addresses import AddressError, parse_tcp
from storage.cid import normalize_cid
from storage.defaults import DEFAULT_MAX_MB
from storage.errors import InvalidCid
from swarm.errors import ConfigError
from swarm.peer_privacy import PeerPrivacyError, check_settings
from swarm.prune_schedule import PruningError, schedule_from
from swarm.selection import TOLERANCE, check_keep
from swarm.strategies import configured_strategy, resolve_needs

ROLES = ("auto", "trainer", "pinner", "observer")
# Numeric settings with a lower bound (every float setting must also be finite): names, test, rule.
_BOUNDS: tuple[tuple[tuple[str, ...], Callable[[float], bool], str], ...] = (
    (("clients", "samples_per_client", "local_epochs", "batch_size", "reestimate_every", "degree"),
     lambda v: v >= 1, "at least 1"),
    (("lr", "fetch_timeout_s", "max_snapshot_mb", "dp_max_grad_norm", "alpha"), lambda v: v > 0,
     "greater than 0"),
    (("neighbours", "rounds", "max_steps_per_round", "round_interval_s", "dp_epsilon", "dp_delta",
      "clip_norm", "tau", "guard_tolerance", "stage1_rounds", "max_peer_epsilon", "patience"),
     lambda v: v >= 0, "0 or more"),
)


@dataclass
class NodeConfig:
    swarm: str = "default"
    bootstrap: list[str] = field(default_factory=list)
    # Every interface, so peers on other hosts can reach this one; the demo and tests pass loopback.
    listen: str = "/ip4/0.0.0.0/tcp/0"
    announce_addr: list[str] = field(default_factory=list)
    ipfs_api: str = ""
    ipfs_swarm_port: int = 0
    ipfs_announce_addr: list[str] = field(default_factory=list)
    data_dir: Path = Path("swarm-data")
    role: str = "auto"  # node.roles: trainer with data, pinner with disk, else observer
    # What this peer trains on: a shard of a research data set, or a folder of the user's own images.
    dataset: str = "fashion-mnist"
    partition: str = "rotation"
    alpha: float = 0.5  # dirichlet concentration
    split: str = "pools"  # "pools" or the thesis's fixed "thesis" split (swarm.partition)
    clients: int = 4
    client: int = 0
    samples_per_client: int = 400
    image_folder: str = ""
    model: str = ""
    manifest: str = ""  # CID of the swarm manifest: model, input shape, classes, initial weights
    # The strategy and its parameters, named as in the simulator's SimConfig (swarm.sim.config); each
    # reaches the strategy's constructor if it takes it (swarm.strategies.strategy_params).
    strategy: str = "dac"
    similarity: str = ""  # "" = the strategy's default metric (dac: inverse-loss, panm: panm)
    neighbours: int = 2
    tau: float = 0.0  # dac: 0 = the similarity metric's default temperature
    tau_growth: float = 0.0  # dac: tau_t = tau + tau_growth * round
    explore_unknown: bool = True  # dac
    two_hop: bool = True  # dac
    two_hop_cap: bool = False  # dac
    rejection_penalty: float = 0.5  # dac
    aggregate: str = "samples"  # dac: "samples" or "similarity"
    stage1_rounds: int = 50  # panm
    reestimate_every: int = 2  # panm
    panm_alpha: float = 0.0  # panm metric: weight of the current-update cosine (the thesis: 0)
    topology: str = "full"  # gossip: "full", "ring" or random "regular" graph of `degree`
    degree: int = 4  # gossip
    graph_seed: int = 0  # gossip
    encoding: str = "fp32"
    merge: str = "mean"
    # Epsilon-aware neighbours (swarm.peer_privacy), named as in the simulator's SimConfig.
    max_peer_epsilon: float = 0.0  # > 0: merge only peers that spent at most this epsilon (no DP: never)
    merge_weights: str = "strategy"  # or "noise-aware": a noisier (lower-epsilon) peer weighs less
    clip_norm: float = 0.0  # > 0: clip each peer's distance to my weights before merging (0: off)
    merge_guard: bool = True
    guard_tolerance: float = TOLERANCE
    judge_merged: bool = True
    keep: str = "best"
    device: str = "auto"
    rounds: int = 0
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    max_steps_per_round: int = 0
    round_interval_s: float = 0.0
    fetch_timeout_s: float = 20.0
    max_snapshot_mb: float = float(DEFAULT_MAX_MB)
    seed: int = 0
    dp_epsilon: float = 0.0
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0
    optimizer: str = "adam"
    patience: int = 0  # stop training (keep serving) after this many rounds without a better val loss
    # Sparse personalised models (swarm.pruning), scheduled as in the simulator.
    prune_target: float = 1.0  # final density of prunable weights; 1 = dense
    prune_rate: float = 0.2  # fraction of the kept weights pruned each time
    prune_every: int = 1  # rounds between prunings (from the second round on)
    headless: bool = False

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if not 0 <= self.client < max(self.clients, 1):
            raise ConfigError(f"client {self.client} is outside 0..{self.clients - 1} (of --clients)")
        for name, value in vars(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"setting {name}: {value} is not a finite number")
        for names, ok, rule in _BOUNDS:
            for name in names:
                value = getattr(self, name)
                if isinstance(value, int | float) and not ok(value):
                    raise ConfigError(f"setting {name}: {value} is out of range; it must be {rule}")
        if not 0 <= self.ipfs_swarm_port <= 65535:
            raise ConfigError(f"setting ipfs_swarm_port: {self.ipfs_swarm_port} is not a TCP port (0-65535)")
        try:
            parse_tcp(self.listen, "listen")
            for addr in [*self.announce_addr, *self.ipfs_announce_addr]:
                parse_tcp(addr, "announce address")
        except AddressError as exc:
            raise ConfigError(str(exc)) from None
        if self.manifest:
            try:
                normalize_cid(self.manifest)
            except InvalidCid as exc:
                raise ConfigError(f"setting manifest: {exc}") from None
        if "\x00" in str(self.data_dir):
            raise ConfigError("setting data_dir: the path contains a NUL character")
        self.data_dir = Path(self.data_dir)
        try:
            check_settings(self.max_peer_epsilon, self.merge_weights)
        except PeerPrivacyError as exc:
            raise ConfigError(str(exc)) from None
        check_keep(self.keep)
        self._check_strategy()
        try:
            schedule_from(vars(self))
        except PruningError as exc:
            raise ConfigError(f"pruning settings: {exc}; see --prune-target, --prune-rate, --prune-every"
                              ) from None

    def _check_strategy(self) -> None:
        """Refuse, before any daemon starts, a strategy a node cannot run or parameters its
        constructor rejects (building one is cheap and checks them exactly as the learner will)."""
        try:
            needs = resolve_needs(self.strategy, "node", self.similarity)
            configured_strategy(self.strategy, needs, vars(self))
        except ValueError as exc:  # an unknown or simulator-only strategy, or a bad parameter
            raise ConfigError(f"strategy settings: {exc}") from None


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(NodeConfig)


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    try:
        if origin is list:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return [str(item).strip() for item in items if str(item).strip()]
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if isinstance(kind, types.UnionType):
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        if kind is int and isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)  # int() would silently drop the fraction
        return kind(raw)
    except (TypeError, ValueError, OverflowError):
        kind_name = getattr(kind, "__name__", kind)
        raise ConfigError(f"setting {name}: {raw!r} is not a valid {kind_name}") from None


def settings_from(source: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Typed settings from a mapping of names to raw values; unknown names are an error."""
    kinds = _field_types()
    out = {}
    for name, raw in source.items():
        key = name.replace("-", "_")
        if key not in kinds:
            raise ConfigError(f"{origin}: unknown setting {name!r}; see `swarm-node join --help`")
        out[key] = _coerce(key, raw, kinds[key])
    return out


def settings_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    known = {f"SWARM_{name.upper()}": name for name in _field_types()}
    return settings_from({known[k]: v for k, v in env.items() if k in known}, "environment")


def settings_from_toml(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    table = document.get("node", document)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [node] must be a table")
    return settings_from(table, f"config file {path}")


def load_config(
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Merge the sources in precedence order; `flags` holds only the options the user gave."""
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(settings_from_toml(config_file))
    merged.update(settings_from_env(os.environ if env is None else env))
    merged.update(settings_from(flags or {}, "command line"))
    return NodeConfig(**merged)


def config_fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(NodeConfig))
