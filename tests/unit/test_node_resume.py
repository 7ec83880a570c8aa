"""A PANM node resumed from its checkpoint goes on exactly as the node that never stopped: it trains
on the same batches, picks the same neighbours and scores a peer's next snapshot the same, because
PANM's metric compares that snapshot with the peer's previous one (`PeerHistory`), which the
checkpoint keeps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from node import checkpoint
from node.config import NodeConfig
from node.learner import Learner, PeerHistory, load_shard
from swarm.strategies import Candidate, PeerView

torch.set_num_threads(1)
PEERS = [f"peer-{i}" for i in range(6)]


def learner(**over: object) -> Learner:
    cfg = NodeConfig(**{"dataset": "digits", "partition": "iid", "clients": 2, "client": 0,
                        "samples_per_client": 100, "strategy": "panm", "neighbours": 2,
                        "stage1_rounds": 2, "reestimate_every": 1, **over})
    return Learner(cfg, load_shard(cfg), torch.device("cpu"))


def view(round_: int) -> PeerView:
    return PeerView(me="me", round=round_, my_samples=80,
                    candidates=[Candidate(p, 80, round_) for p in PEERS])


def one_round(me: Learner, round_: int, snapshots: dict[str, dict[str, torch.Tensor]]) -> None:
    """A node's round without the network: choose, train, score the chosen peers' snapshots, observe."""
    chosen = me.choose(view(round_))
    me.train(None)
    me.observe(view(round_), me.scores({p: snapshots[p] for p in chosen}), {})


def test_a_panm_learner_resumed_from_its_checkpoint_scores_and_chooses_as_the_uninterrupted_one(
        tmp_path: Path) -> None:
    # The peers' snapshots: two trained models, each a different model every round.
    a, b = learner(client=0, strategy="local"), learner(client=1, strategy="local")
    rounds = []
    for _ in range(3):
        a.train(None)
        b.train(None)
        rounds.append({p: (a if i % 2 else b).state() for i, p in enumerate(PEERS)})
        for i, p in enumerate(PEERS):  # every peer's own model: scaled apart so no two are equal
            rounds[-1][p] = {k: v * (1 + 0.1 * i) for k, v in rounds[-1][p].items()}

    me = learner(panm_alpha=0.5)
    for round_ in (0, 1):  # both rounds of stage 1: every peer is scored at least once
        one_round(me, round_, rounds[round_])
    checkpoint.save(tmp_path, checkpoint.Checkpoint(peer_id="me", round=2, **me.saved()))
    saved = checkpoint.load(tmp_path)  # weights_only=True: the history is plain tensors
    assert saved is not None
    resumed = learner(panm_alpha=0.5)
    resumed.restore(vars(saved))

    assert resumed.choose(view(2)) == me.choose(view(2))  # the strategy's random draws continue
    me.train(None)
    resumed.train(None)
    assert all(torch.equal(resumed.state()[k], me.state()[k]) for k in me.state())  # the same batches
    for peer in PEERS:
        got, uninterrupted = (node.scores({peer: rounds[2][peer]})[peer] for node in (resumed, me))
        assert got == uninterrupted, (peer, got, uninterrupted)


def test_checkpoint_history_holds_the_models_scored(tmp_path: Path) -> None:
    """What PANM needs is in the checkpoint as tensors: each peer's latest and previous model."""
    me, peer = learner(), learner(client=1, strategy="local")
    me.train(None)
    for _ in range(2):
        peer.train(None)
        me.scores({"peer": peer.state()})
    checkpoint.save(tmp_path, checkpoint.Checkpoint(peer_id="me", round=2, **me.saved()))
    saved = checkpoint.load(tmp_path)
    assert saved is not None
    assert set(saved.history["latest"]) == set(saved.history["before"]) == {"peer"}
    assert all(torch.equal(saved.history["latest"]["peer"][k], v) for k, v in peer.state().items())


def test_a_checkpoint_without_history_or_draws_still_resumes(tmp_path: Path) -> None:
    """A checkpoint written before the history and random states were kept resumes (without them)."""
    me = learner()
    me.train(None)
    old = {k: v for k, v in me.saved().items() if k not in ("history", "draws")}
    checkpoint.save(tmp_path, checkpoint.Checkpoint(peer_id="me", round=1, **old))
    saved = checkpoint.load(tmp_path)
    assert saved is not None
    resumed = learner()
    resumed.restore(vars(saved))
    assert all(torch.equal(resumed.state()[k], me.state()[k]) for k in me.state())


def test_malformed_random_states_say_how_to_start_fresh() -> None:
    me = learner()
    broken = {**me.saved(), "draws": {"strategy": (3, (1, 2), None)}}
    with pytest.raises(checkpoint.CheckpointError, match="move the checkpoint away"):
        learner().restore(broken)


def test_the_history_keeps_only_the_most_recently_scored_peers() -> None:
    init = {"w": torch.zeros(2)}
    history = PeerHistory(init, max_peers=2)
    for peer in ("a", "b"):
        history.previous(peer, {"w": torch.ones(2)})
        history.previous(peer, {"w": torch.full((2,), 2.0)})
    history.previous("a", {"w": torch.full((2,), 3.0)})  # a is now the most recent, b the oldest
    history.previous("c", {"w": torch.ones(2)})
    assert set(history.latest) == {"a", "c"} and set(history.before) == {"a"}
    assert torch.equal(history.previous("a", {"w": torch.full((2,), 4.0)})["w"], torch.full((2,), 3.0))
    assert history.previous("b", {"w": torch.full((2,), 5.0)}) is init  # forgotten: scored as new
