"""One strategy contract for both runtimes: what a strategy needs is declared once (`Strategy.needs`),
the simulator and the node resolve it alike, a node refuses what it cannot run, and a strategy's
parameters reach it from a node's config (TOML, SWARM_*, join flags) as from the simulator's."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import time
from pathlib import Path

import pytest
import torch
from support.merges import NotesMerges

from node.commands.join import HELP, add_arguments
from node.config import ConfigError, NodeConfig, load_config
from node.downloads import Arrived
from node.learner import Learner, load_shard
from node.merging import Merging
from node.peer_table import PeerTable
from node.status import NodeStatus
from node.timing import Timer
from p2p.announcement import Announcement
from swarm.sim.config import SimConfig
from swarm.sim.simulator import simulate
from swarm.strategies import (
    STRATEGIES,
    Candidate,
    PeerView,
    UnsupportedRuntimeError,
    resolve_needs,
    runnable,
    strategy_params,
)

torch.set_num_threads(1)
NODE_STRATEGIES = runnable("node")
CID = "bafkreibdpug3gru6cvxx3zxa2l6rg4h66buma55nsuqev75u3kgh7a3lka"
# Strategy parameters both configs hold, with a value unlike each default.
PARAMS = {"tau": 7.5, "tau_growth": 0.5, "two_hop": False, "two_hop_cap": True, "rejection_penalty": 0.9,
          "aggregate": "similarity",
          "explore_unknown": False, "stage1_rounds": 3, "reestimate_every": 4, "topology": "ring",
          "degree": 2, "graph_seed": 3, "neighbours": 1}


def learner(**over: object) -> Learner:
    cfg = NodeConfig(**{"dataset": "digits", "partition": "iid", "clients": 2, "client": 0,
                        "samples_per_client": 100, **over})
    return Learner(cfg, load_shard(cfg), torch.device("cpu"))


def test_the_node_scores_with_the_strategy_default_metric_unless_the_config_names_one() -> None:
    panm = learner(strategy="panm")
    assert panm.needs.similarity == "panm" and panm.needs.scores
    panm.train(None)
    # PANM's metric is a cosine of updates: my own model is exactly like itself (1/loss would not be 1).
    assert panm.scores({"me": panm.state()})["me"] == pytest.approx(1.0)
    assert learner(strategy="dac").needs.similarity == "inverse-loss"
    assert learner(strategy="panm", similarity="l2").needs.similarity == "l2"
    assert not learner(strategy="random").needs.scores


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("configured", ["", "cosine-weights"])
def test_simulator_and_node_resolve_the_same_metric(name: str, configured: str) -> None:
    sim = simulate(SimConfig(strategy=name, similarity=configured, clients=4, rounds=1, train_samples=10,
                             val_samples=5, test_samples=5, local_epochs=1))
    assert sim.config["similarity"] == (configured or STRATEGIES[name].needs.similarity)
    if name in NODE_STRATEGIES:
        assert learner(strategy=name, similarity=configured).needs.similarity == sim.config["similarity"]
    else:
        with pytest.raises(ConfigError):
            NodeConfig(strategy=name, similarity=configured)


@pytest.mark.parametrize("name", ["fedavg", "oracle"])
def test_a_node_refuses_a_simulator_only_strategy_and_says_what_to_choose(name: str) -> None:
    with pytest.raises(UnsupportedRuntimeError, match="simulator only"):
        resolve_needs(name, "node")
    with pytest.raises(ConfigError, match=f"{name!r} runs in the simulator only .*"
                                          "choose one the node runs: dac, gossip, local, panm, random"):
        load_config(None, {"strategy": name}, env={})
    assert resolve_needs(name, "simulator").runtimes == ("simulator",)


def test_bad_strategy_parameters_are_refused_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match="gossip topology must be one of"):
        load_config(None, {"strategy": "gossip", "topology": "star"}, env={})
    with pytest.raises(ConfigError, match="unknown strategy 'dca'; choose one of"):
        load_config(None, {"strategy": "dca"}, env={})
    with pytest.raises(ConfigError, match="reestimate_every"):
        load_config(None, {"reestimate_every": "0"}, env={})


def test_strategy_parameters_reach_the_node_strategy_from_toml_env_and_flags(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text('[node]\nstrategy = "panm"\nstage1_rounds = 3\n')
    cfg = load_config(toml, {}, env={"SWARM_REESTIMATE_EVERY": "4"})
    panm = Learner(cfg, load_shard(cfg), torch.device("cpu")).strategy
    assert (panm.stage1_rounds, panm.reestimate_every) == (3, 4)

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dataset", "digits", "--partition", "iid", "--clients", "2",
                              "--samples-per-client", "100", "--strategy", "gossip", "--topology", "ring",
                              "--graph-seed", "3"])
    cfg = load_config(None, {k: v for k, v in vars(args).items() if k != "config"}, env={})
    gossip = Learner(cfg, load_shard(cfg), torch.device("cpu")).strategy
    assert (gossip.topology, gossip.graph_seed) == ("ring", 3)


@pytest.mark.parametrize("name", NODE_STRATEGIES)
def test_every_parameter_a_node_strategy_takes_reaches_it(name: str) -> None:
    state = learner(strategy=name, **PARAMS).strategy.state_dict()
    taken = strategy_params(name, PARAMS)
    assert taken == {k: state[k] for k in taken}


def test_the_node_config_names_the_strategy_parameters_as_the_simulator_config_does() -> None:
    taken = {p for cls in STRATEGIES.values() for p in inspect.signature(cls).parameters}
    sim, node = set(SimConfig().to_dict()), {f.name for f in dataclasses.fields(NodeConfig)}
    assert taken & sim <= node
    assert taken & node <= set(HELP)  # each with its `swarm-node join --help` text


def finish_with_one_neighbour(tmp_path: Path, strategy: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The node's merge step on one fetched neighbour; returns the peers it scored."""
    cfg = NodeConfig(dataset="digits", partition="iid", clients=2, samples_per_client=100,
                     strategy=strategy, data_dir=tmp_path, merge_guard=False)
    me = Learner(cfg, load_shard(cfg), torch.device("cpu"))
    table = PeerTable("me", "s1")
    ann = Announcement(cid=CID, publisher="p1", round=1, schema="s1", samples=100, loss=1.0,
                       encoding="fp32", size=10, timestamp=time.time())
    table.fold(ann)
    publisher = NotesMerges()
    merging = Merging(cfg, me, table, publisher, NodeStatus(), Timer(),  # type: ignore[arg-type]
                      lambda *a, **k: None)
    scored: list[str] = []

    def scores(theirs: dict) -> dict[str, float]:
        scored.extend(theirs)
        return dict.fromkeys(theirs, 1.0)

    monkeypatch.setattr(me, "scores", scores)
    view = PeerView("me", 1, 100, [Candidate("p1", 100, 1)])
    arrived = {"p1": Arrived(ann, learner(client=1).state(), ann.dp_epsilon)}
    assert merging.merge(arrived, view, 1) == 1
    assert table.records["p1"].merged  # merged either way
    assert publisher.merged == [{"p1": CID}]
    return scored


def test_a_node_scores_only_for_a_strategy_that_needs_scores(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert finish_with_one_neighbour(tmp_path, "random", monkeypatch) == []
    assert finish_with_one_neighbour(tmp_path, "dac", monkeypatch) == ["p1"]
