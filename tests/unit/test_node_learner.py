"""The node's learning side on real digits: the same swarm/ code the simulator runs, DP wired in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from node.config import NodeConfig
from node.learner import Learner, load_shard
from swarm.privacy import BudgetExhausted, PrivacyConfigError


def learner(**over: object) -> Learner:
    settings: dict = {"dataset": "digits", "partition": "iid", "clients": 2, "client": 0,
                      "samples_per_client": 200, "rounds": 3, **over}
    cfg = NodeConfig(**settings)
    return Learner(cfg, load_shard(cfg), torch.device("cpu"))


def test_peers_of_one_swarm_start_from_the_same_weights_and_differ_after_training() -> None:
    a, b = learner(client=0), learner(client=1)
    assert all(torch.equal(a.init[k], b.init[k]) for k in a.init)
    a.train(None)
    b.train(None)
    assert not all(torch.equal(a.state()[k], b.state()[k]) for k in a.init)


def test_dp_learner_spends_at_most_its_budget_then_stops() -> None:
    dp, plain = learner(dp_epsilon=2.0), learner()
    for _ in range(3):
        dp.train(None)
        plain.train(None)
    assert dp.epsilon is not None and 0.5 < dp.epsilon <= 2.0
    assert plain.epsilon is None
    # Same seed, same data, same init: only clipping and noise make the weights differ.
    assert not all(torch.allclose(dp.state()[k], plain.state()[k]) for k in dp.init)
    with pytest.raises(BudgetExhausted, match="privacy budget spent"):
        dp.train(None)


def test_dp_noise_is_not_drawn_from_the_shared_settings() -> None:
    # Same config, same data, same batches: were the noise seeded from the settings, anyone who knows
    # them could draw it again and subtract it from the published weights.
    first = learner(dp_epsilon=2.0)
    first.train(None)
    again = learner(dp_epsilon=2.0)
    again.train(None)
    assert not any(torch.equal(first.state()[k], again.state()[k]) for k in first.init)


def test_dp_needs_a_planned_number_of_rounds() -> None:
    with pytest.raises(PrivacyConfigError, match="--rounds"):
        learner(dp_epsilon=2.0, rounds=0)


def test_score_and_merge_use_the_peer_state() -> None:
    a, b = learner(client=0), learner(client=1)
    for _ in range(2):
        a.train(None)
        b.train(None)
    assert a.scores({"b": b.state()})["b"] > 0
    mine, theirs = a.state(), b.state()
    verdict = a.merge("me", {"me": mine, "peer": theirs}, {"me": 0.5, "peer": 0.5}, rounds_trained=2)
    assert verdict.rejected == []  # iid digits: the peer's model helps
    key = next(k for k in mine if mine[k].is_floating_point())
    assert torch.allclose(a.state()[key], (mine[key] + theirs[key]) / 2, atol=1e-6)


def test_loss_ratio_divides_my_loss_by_the_peers_on_my_data(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = learner(strategy="dac", similarity="loss-ratio"), learner(client=1)
    a.train(None)
    b.train(None)
    mine, theirs = a.state(), b.state()
    expected = a.loss_on_my_data(mine) / a.loss_on_my_data(theirs)
    measure, evaluated = a.loss_on_my_data, []

    def counted(state: dict[str, torch.Tensor], split: str = "train") -> float:
        evaluated.append(state)
        return measure(state, split)

    monkeypatch.setattr(a, "loss_on_my_data", counted)
    got = a.scores({"b": theirs, "me": mine, "b again": theirs})
    assert got["b"] == pytest.approx(expected) and got["b again"] == got["b"]
    assert got["me"] == pytest.approx(1.0)
    assert len(evaluated) == 4, "my own loss is measured once per scoring, not once per peer"


def test_the_merge_guard_refuses_a_poisoned_model_and_tells_the_strategy() -> None:
    a = learner(strategy="dac")
    a.train(None)
    mine = a.state()
    poisoned = {k: -50 * v if v.is_floating_point() else v for k, v in mine.items()}
    a.strategy.measured["bad"] = 2.0
    verdict = a.merge("me", {"me": mine, "bad": poisoned}, {"me": 0.5, "bad": 0.5}, rounds_trained=2)
    assert verdict.rejected == ["bad"] and verdict.weights == {"me": 1.0}
    assert all(torch.equal(a.state()[k], mine[k]) for k in mine)
    assert a.strategy.measured["bad"] == 1.0  # DAC halved its prior
    unguarded = learner(merge_guard=False)
    unguarded.merge("me", {"me": mine, "bad": poisoned}, {"me": 0.5, "bad": 0.5}, rounds_trained=2)
    assert not all(torch.equal(unguarded.state()[k], mine[k]) for k in mine)
    tolerant = learner(strategy="dac", guard_tolerance=1e9)  # --guard-tolerance reaches the guard
    verdict = tolerant.merge("me", {"me": mine, "bad": poisoned}, {"me": 0.5, "bad": 0.5}, rounds_trained=2)
    assert verdict.rejected == []


@pytest.mark.parametrize("keep", ["best", "last"])
def test_the_model_keep_names_is_the_one_tested(keep: str) -> None:
    a = learner(lr=0.01, keep=keep)
    for _ in range(3):
        a.train(None)
    loss, _ = a.judge(1)
    best = a.state()
    a.model.load_state_dict({k: torch.zeros_like(v) for k, v in best.items()})  # a useless model
    worse, _ = a.judge(2)
    assert worse > loss and a.best.round == 1
    acc, which = a.reported()
    if keep == "best":  # the zeroed model is not the one tested
        assert a.evaluate("test")[1] < 0.2 < acc and which == "the best model on validation, round 1"
    else:
        assert acc == pytest.approx(a.evaluate("test")[1]) and acc < 0.2 and which == "the model it holds"
    a.model.load_state_dict(best)
    assert a.reported()[0] == pytest.approx(a.evaluate("test")[1])


def test_a_volunteers_image_folder_becomes_a_shard(tmp_path: Path) -> None:
    from PIL import Image

    for label, shade in (("cats", 40), ("dogs", 200)):
        (tmp_path / label).mkdir()
        for i in range(12):
            Image.new("RGB", (40, 30), (shade, shade + i, shade)).save(tmp_path / label / f"{i}.png")
    cfg = NodeConfig(image_folder=str(tmp_path), rounds=2)
    shard = load_shard(cfg)
    assert (shard.in_channels, shard.num_classes) == (1, 2)
    assert len(shard.data.train_y) + len(shard.data.val_y) + len(shard.data.test_y) == 24
    peer = Learner(cfg, shard, torch.device("cpu"))
    assert peer.train(None).samples == len(shard.data.train_y)
    with pytest.raises(FileNotFoundError, match="class folders"):
        load_shard(NodeConfig(image_folder=str(tmp_path / "missing")))


@pytest.mark.parametrize("judge_merged", [True, False])
def test_a_merged_model_better_on_validation_becomes_the_kept_one(judge_merged: bool) -> None:
    """The peer's barely trained model merges with a well trained one: the merge is better than anything
    it trained, and it is kept (and reported) only when merged models are judged too."""
    a, b = learner(judge_merged=judge_merged), learner(client=1, lr=0.01)
    for _ in range(3):
        b.train(None)
    a.train(1)
    trained_loss, _ = a.judge(2)
    mine = a.state()
    a.merge("me", {"me": mine, "peer": b.state()}, {"me": 0.5, "peer": 0.5}, rounds_trained=2)
    merged = a.state()
    merged_loss, _ = a.evaluate("val")
    assert merged_loss < trained_loss  # the setting: the merge is the better model
    kept = merged if judge_merged else mine
    assert all(torch.equal(a.best_state[k], kept[k]) for k in kept)
    assert a.best.loss == pytest.approx(merged_loss if judge_merged else trained_loss)
