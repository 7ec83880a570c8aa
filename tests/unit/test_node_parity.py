"""Node parity with the simulator: every simulator key is a `join` setting of the same name and meaning
(or a listed simulator-only one), PANM's metric sees both current updates in the node, and a node runs
sparse personalised models (the pruning schedule, the personal mask in its checkpoint, sparse
snapshots on the wire) with the simulator's pruning code."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import torch

from node import checkpoint
from node.commands.join import HELP
from node.config import ConfigError, NodeConfig, load_config
from node.learner import Learner, load_shard
from storage import decode, encode
from swarm.pruning import mask_of, prunable
from swarm.sim.config import SIMULATOR_ONLY, SimConfig
from swarm.similarity import flatten

torch.set_num_threads(1)
NODE_KEYS = typing.get_type_hints(NodeConfig)


def learner(**over: object) -> Learner:
    cfg = NodeConfig(**{"dataset": "digits", "partition": "iid", "clients": 2, "client": 0,
                        "samples_per_client": 100, **over})
    return Learner(cfg, load_shard(cfg), torch.device("cpu"))


@pytest.mark.parametrize("key", sorted(f.name for f in dataclasses.fields(SimConfig)))
def test_every_simulator_key_is_a_node_setting_of_the_same_meaning_or_simulator_only(key: str) -> None:
    if key in SIMULATOR_ONLY:
        assert key not in NODE_KEYS, f"{key} is a node setting: take it out of SIMULATOR_ONLY"
        return
    assert key in NODE_KEYS, f"simulator key {key} is no `join` setting: add it, or to SIMULATOR_ONLY"
    # Same meaning: the same type, so a value from a simulator config file means the same to a node,
    # and documented in `swarm-node join --help`.
    assert NODE_KEYS[key] is type(getattr(SimConfig(), key)), key
    assert key in HELP, f"--{key.replace('_', '-')} has no help text"


def test_the_simulator_only_list_names_simulator_keys() -> None:
    assert set(SIMULATOR_ONLY) <= {f.name for f in dataclasses.fields(SimConfig)}


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_panm_scores_with_both_current_updates_not_only_the_accumulated_ones() -> None:
    """With panm_alpha = 1 PANM's metric is the cosine of the current updates: mine since this round's
    training started, the peer's since its snapshot I scored before. Without those inputs the metric
    falls back to the cosine of the accumulated updates (w - init), which this test tells apart."""
    me, peer = learner(strategy="panm", panm_alpha=1.0), learner(client=1)
    me.train(None)
    peer.train(None)
    before = peer.state()
    me.scores({"peer": before})
    peer.train(None)
    theirs = peer.state()
    got = me.scores({"peer": theirs})["peer"]
    mine, start, init = flatten(me.state()), flatten(me.start), flatten(me.init)
    current = cos(flatten(theirs) - flatten(before), mine - start)
    accumulated = cos(flatten(theirs) - init, mine - init)
    assert got == pytest.approx(current, abs=1e-5)
    assert abs(current - accumulated) > 0.01  # far beyond the tolerance: the degraded metric fails
    # The same snapshot scored again is no new update: the step before it still counts.
    assert me.scores({"peer": theirs})["peer"] == pytest.approx(current, abs=1e-5)
    # A peer seen once: its update since the common init, as in the simulator's first round.
    once = me.scores({"newcomer": theirs})["newcomer"]
    assert once == pytest.approx(cos(flatten(theirs) - init, mine - start), abs=1e-5)


def test_panm_alpha_reaches_the_node_from_flags_env_and_toml(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text("panm_alpha = 0.25\nprune_target = 0.5\n")
    cfg = load_config(toml, {"prune_every": "2"}, env={"SWARM_PRUNE_RATE": "0.3"})
    assert (cfg.panm_alpha, cfg.prune_target, cfg.prune_rate, cfg.prune_every) == (0.25, 0.5, 0.3, 2)
    with pytest.raises(ConfigError, match="prune rate must be in"):
        load_config(None, {"prune_target": "0.5", "prune_rate": "1.5"}, env={})


def pruned_learner() -> Learner:
    """A learner pruned twice at rate 0.5 (rounds 2 and 3; the schedule starts after the first)."""
    peer = learner(prune_target=0.25, prune_rate=0.5, prune_every=1)
    for round_ in (1, 2, 3):
        peer.train(None)
        peer.prune(round_)
        assert peer.density == pytest.approx({1: 1.0, 2: 0.5, 3: 0.25}[round_], abs=0.01)
    return peer


def test_a_node_prunes_on_the_schedule_and_its_pruned_weights_are_zero_on_the_wire() -> None:
    peer = pruned_learner()
    state = peer.state()
    assert mask_of(state).keys() == peer.mask.keys()
    assert all(torch.equal(mask_of(state)[k], peer.mask[k]) for k in peer.mask)
    wire = encode(state)
    got = decode(wire).state_dict
    assert all(torch.equal(got[k], state[k]) for k in state)  # lossless: the mask survives
    # The sparse codec carries mask bits and kept values only: the same model with small random
    # values where it has zeros takes about four times the bytes.
    noise = torch.Generator().manual_seed(0)
    dense = {k: torch.where(v == 0, 1e-3 * torch.randn(v.shape, generator=noise), v) if prunable(k, v) else v
             for k, v in state.items()}
    assert len(wire) < 0.5 * len(encode(dense))


def test_a_sparse_node_merges_where_masks_overlap_and_keeps_its_pruned_weights_zero() -> None:
    peer, other = pruned_learner(), learner(client=1)
    other.train(None)
    peer.merge("me", {"me": peer.state(), "other": other.state()}, {"me": 0.5, "other": 0.5},
               rounds_trained=1)
    after = peer.state()
    for k, m in peer.mask.items():
        assert bool((after[k][~m] == 0).all()), k


def test_the_personal_mask_survives_a_checkpoint(tmp_path: Path) -> None:
    peer = pruned_learner()
    checkpoint.save(tmp_path, checkpoint.Checkpoint(peer_id="me", round=3, **peer.saved()))
    saved = checkpoint.load(tmp_path)
    assert saved is not None
    resumed = learner(prune_target=0.25, prune_rate=0.5, prune_every=1)
    resumed.restore(vars(saved))
    assert resumed.density == pytest.approx(0.25, abs=0.01)
    assert all(torch.equal(resumed.mask[k], peer.mask[k]) for k in peer.mask)
    resumed.train(None)
    resumed.prune(4)  # at its target: no further pruning, and training did not revive a weight
    assert all(torch.equal(mask_of(resumed.state())[k] | peer.mask[k], peer.mask[k]) for k in peer.mask)


def test_patience_stops_a_node_as_the_simulator_stops_a_client() -> None:
    """The node's best-model record is the simulator's (`BestModel`), given the node's --patience;
    the loop stops training (and keeps serving) once it says stalled."""
    peer = learner(patience=2)
    assert peer.best.offer(1.0, 1) and not peer.best.offer(1.5, 2)
    assert not peer.best.stalled(2) and peer.best.stalled(3)
