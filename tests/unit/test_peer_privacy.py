"""Epsilon-aware neighbours: the ceiling on the epsilon a merged peer spent, noise-aware merge weights,
and both runtimes applying them (the node also against a snapshot's own meta)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from support.merges import NotesMerges

from node.config import ConfigError, NodeConfig
from node.downloads import Arrived, Exchange
from node.learner import Learner, load_shard
from node.loop import Node
from node.merging import Merging
from node.peer_table import PeerTable
from node.status import NodeStatus, PeerRow, read_status, render
from p2p.announcement import Announcement
from swarm import peer_privacy
from swarm.peer_privacy import (
    HALF_WEIGHT_EPSILON,
    PeerPrivacyError,
    allowed,
    eligible,
    merge_weights,
    noise_factor,
    refused,
)
from swarm.sim import simulator
from swarm.sim.config import load_config
from swarm.sim.simulator import simulate
from swarm.strategies import Candidate, PeerView

CID = "bafkreibdpug3gru6cvxx3zxa2l6rg4h66buma55nsuqev75u3kgh7a3lka"
EPSILONS = {"me": 3.0, "low": 0.5, "edge": 2.0, "high": 8.0, "plain": None}


def test_the_ceiling_keeps_at_most_x_excludes_no_dp_and_is_off_at_zero() -> None:
    assert [p for p, e in EPSILONS.items() if allowed(e, 2.0)] == ["low", "edge"]
    assert all(allowed(e, 0.0) for e in EPSILONS.values())
    assert refused(EPSILONS, "me", 2.0) == ["high", "plain"]  # never me, though I spent 3 > 2
    assert refused(EPSILONS, "me", 0.0) == []


def test_a_filtered_view_offers_the_strategy_only_peers_within_the_ceiling() -> None:
    view = PeerView("me", 1, 10, [Candidate(p, 10, 1, epsilon=e) for p, e in EPSILONS.items()])
    assert [c.peer_id for c in eligible(view, 2.0).candidates] == ["me", "low", "edge"]
    assert eligible(view, 0.0) == view


def test_noise_aware_weights_fall_with_the_noise_respect_samples_and_sum_to_one() -> None:
    factors = [noise_factor(e) for e in (0.0, 0.5, 1.0, HALF_WEIGHT_EPSILON, 8.0, 100.0)]
    assert factors == sorted(factors) and factors[0] == 0.0 and factors[3] == 0.5 and factors[-1] < 1.0
    assert noise_factor(None) == 1.0 == noise_factor(float("inf"))
    samples = {"me": 0.2, "a": 0.2, "b": 0.4, "c": 0.2}  # FedAvg's rule: b holds twice the samples
    epsilons = {"me": None, "a": 1.0, "b": 1.0, "c": 8.0}
    w = merge_weights(samples, epsilons, me="me", max_peer_epsilon=0.0, scheme="noise-aware")
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["b"] == pytest.approx(2 * w["a"])  # the same noise: samples decide
    assert w["a"] < w["c"] < w["me"]  # the same samples: the noisier, the lighter
    plain = merge_weights(samples, epsilons, me="me", max_peer_epsilon=0.0, scheme="strategy")
    assert plain == samples  # the strategy's weights untouched


def test_peers_over_the_ceiling_weigh_nothing_and_the_rest_renormalise() -> None:
    w = merge_weights({"me": 0.25, "low": 0.25, "high": 0.25, "plain": 0.25}, EPSILONS, me="me",
                      max_peer_epsilon=2.0, scheme="strategy")
    assert w == {"me": 0.5, "low": 0.5, "high": 0.0, "plain": 0.0}
    alone = merge_weights({"me": 0.5, "plain": 0.5}, EPSILONS, me="me", max_peer_epsilon=2.0,
                          scheme="noise-aware")
    assert alone == {"me": 1.0, "plain": 0.0}


@pytest.mark.parametrize(("ceiling", "scheme", "message"), [
    (-1.0, "strategy", "max_peer_epsilon must be"), (float("inf"), "strategy", "max_peer_epsilon must be"),
    (0.0, "by-noise", "merge_weights must be one of strategy, noise-aware")])
def test_bad_settings_say_what_to_choose(ceiling: float, scheme: str, message: str) -> None:
    with pytest.raises(PeerPrivacyError, match=message):
        peer_privacy.check_settings(ceiling, scheme)
    with pytest.raises(ConfigError, match=r"max_peer_epsilon|merge_weights"):
        NodeConfig(max_peer_epsilon=ceiling, merge_weights=scheme)


# -- the node ------------------------------------------------------------------------------------------

def announcement(publisher: str, dp_epsilon: float | None) -> Announcement:
    return Announcement(cid=CID, publisher=publisher, round=1, schema="s1", samples=100, loss=1.0,
                        encoding="fp32", size=10, timestamp=time.time(), dp_epsilon=dp_epsilon)


class Fetched:
    """The download side of a round: the given snapshots arrive, whatever was chosen."""

    def __init__(self, arrived: dict[str, Arrived]) -> None:
        self.arrived = arrived
        self.started: list[str] = []

    def start(self, view: PeerView, chosen: list[str]) -> Exchange:
        self.started = list(chosen)
        return Exchange(view, chosen)

    def collect(self, exchange: Exchange) -> dict[str, Arrived]:
        return dict(self.arrived)


def node_with(tmp_path: Path, anns: list[Announcement], arrived: dict[str, Arrived], **cfg: object) -> Node:
    config = NodeConfig(**{"dataset": "digits", "partition": "iid", "clients": 2, "samples_per_client": 100,
                           "strategy": "random", "neighbours": 5, "data_dir": tmp_path,
                           "merge_guard": False, **cfg})
    node = Node(config)
    node.learner, node.table = Learner(config, load_shard(config), torch.device("cpu")), PeerTable("me", "s1")
    for ann in anns:
        node.table.fold(ann)
    node.downloads = Fetched(arrived)  # type: ignore[assignment]
    node.publisher = NotesMerges()  # type: ignore[assignment]
    node.merging = Merging(node.cfg, node.learner, node.table, node.publisher, node.status, node.timer,
                           node.event)
    return node


def test_a_node_never_chooses_a_peer_announcing_more_than_its_ceiling(tmp_path: Path) -> None:
    anns = [announcement("low", 0.5), announcement("high", 8.0), announcement("plain", None)]
    node = node_with(tmp_path, anns, {}, max_peer_epsilon=2.0)
    try:
        node.start_exchange()
        assert node.downloads.started == ["low"]  # type: ignore[union-attr]
    finally:
        node.train_pool.shutdown()


def test_a_forged_announcement_is_refused_at_merge_by_the_snapshots_own_epsilon(tmp_path: Path) -> None:
    peer = NodeConfig(dataset="digits", partition="iid", clients=2, client=1, samples_per_client=100)
    other = Learner(peer, load_shard(peer), torch.device("cpu")).state()
    liar, honest = announcement("liar", 0.5), announcement("honest", 1.0)
    arrived = {"liar": Arrived(liar, other, 9.0), "honest": Arrived(honest, other, 1.0)}
    node = node_with(tmp_path, [liar, honest], arrived, max_peer_epsilon=2.0)
    try:
        view = PeerView("me", 1, 100, [Candidate("liar", 100, 1, epsilon=0.5),
                                       Candidate("honest", 100, 1, epsilon=1.0)])
        node.finish_exchange(Exchange(view, ["liar", "honest"]))
        assert not node.table.records["liar"].merged and node.table.records["honest"].merged
        assert any("refused liar" in e and "epsilon 9.0" in e for _, e in node.status.events)
    finally:
        node.train_pool.shutdown()


def test_the_status_shows_each_peers_epsilon_and_reads_old_files(tmp_path: Path) -> None:
    from rich.console import Console

    status = NodeStatus(peer_id="me", peers=[PeerRow("12D3KooWdpdpdpdp", CID, 1, epsilon=1.5),
                                             PeerRow("12D3KooWplainxyz", CID, 1)])
    console = Console(record=True, width=160)
    console.print(render(status))
    text = console.export_text()
    assert "epsilon" in text and "1.50" in text and "no DP" in text
    record = json.loads(status.to_json())
    for row in record["peers"]:
        del row["epsilon"]  # a status file written before the field existed
    record["peers"][0]["from_the_future"] = 1
    (tmp_path / "status.json").write_text(json.dumps(record))
    assert [r.epsilon for r in read_status(tmp_path).peers] == [None, None]


# -- the simulator -------------------------------------------------------------------------------------

def test_per_client_targets_cycle_over_the_clients() -> None:
    cfg = load_config(None, ["clients=5", "dp_epsilons=1, 8,0"])
    assert cfg.dp_epsilons == [1.0, 8.0, 0.0] and cfg.client_epsilons() == [1.0, 8.0, 0.0, 1.0, 8.0]
    assert load_config(None, ["clients=2", "dp_epsilon=3"]).client_epsilons() == [3.0, 3.0]


def test_a_client_without_a_budget_trains_as_without_dp_among_dp_clients() -> None:
    from swarm.data import digits
    from swarm.models import build_model
    from swarm.partition import partition
    from swarm.privacy import PrivacyBudget
    from swarm.sim.dp_engine import PrivateLoopEngine
    from swarm.sim.engine import Layout, LoopEngine, TrainSettings
    from swarm.similarity import flatten

    clients = partition(digits(), "iid", 2, train=60, val=0, test=20, seed=0)
    torch.manual_seed(0)
    layout = Layout(build_model("digits-mlp"))
    settings = TrainSettings(epochs=1, batch_size=20, lr=0.01, optimizer="sgd", seed=0)
    flat = flatten(layout.model.state_dict()).repeat(2, 1)
    mixed = PrivateLoopEngine(layout, clients, settings, [PrivacyBudget(2.0), None], rounds=2)
    trained, _ = mixed.train(flat, 0)
    plain, _ = LoopEngine(layout, clients, settings).train(flat, 0)
    assert torch.equal(trained[1], plain[1]) and not torch.allclose(trained[0], plain[0], atol=1e-4)
    dp, none = mixed.epsilons()
    assert none is None and dp is not None and 0 < dp < 2.0


def test_the_simulator_merges_only_peers_within_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, dict[str, float]]] = []

    def spy(weights: dict[str, float], epsilons: dict[str, float | None], **kw: object) -> dict[str, float]:
        out = merge_weights(weights, epsilons, **kw)  # type: ignore[arg-type]
        seen.append((str(kw["me"]), {p: w for p, w in out.items() if w > 0 and p != kw["me"]}))
        assert all(epsilons[p] is not None and epsilons[p] <= 3.0 for p in seen[-1][1])  # type: ignore[operator]
        return out

    monkeypatch.setattr(simulator, "merge_weights", spy)
    cfg = load_config(None, ["dataset=digits", "partition=iid", "clients=4", "train_samples=40",
                             "val_samples=0", "test_samples=20", "rounds=2", "strategy=random",
                             "neighbours=3", "dp_epsilons=2,0", "max_peer_epsilon=3",
                             "merge_weights=noise-aware"])
    result = simulate(cfg)
    assert seen and all(set(merged) <= {"c000", "c002"} for _, merged in seen)
    assert any(merged for _, merged in seen)  # the DP peers do merge each other
    assert result.epsilon_spent is not None and 0 < result.epsilon_spent <= 2.0
