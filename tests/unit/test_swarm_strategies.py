"""Strategies driven through the PeerView interface only: registry, choice, weights, checkpoints."""

from __future__ import annotations

import random

import msgpack
import pytest

from swarm.strategies import STRATEGIES, Candidate, PeerView, UnknownStrategyError, build_strategy
from swarm.strategies.dac import softmax_sample
from swarm.strategies.panm import gmm_high_component
from swarm.strategies.simple import MissingClusterError


def view(round_: int = 0, n: int = 10, my_cluster: int | None = 0) -> PeerView:
    cands = [Candidate(f"p{i}", 100 + i, round_, i % 2) for i in range(n)]
    return PeerView("p0", round_, 100, cands, my_cluster)


def test_unknown_strategy_lists_choices() -> None:
    with pytest.raises(UnknownStrategyError, match=r"choose one of .*dac.*panm"):
        build_strategy("nope")
    with pytest.raises(UnknownStrategyError, match="bad parameters"):
        build_strategy("random", tau=3)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_chooses_others_and_weights_sum_to_one(name: str) -> None:
    s = build_strategy(name, neighbours=3)
    v = view()
    chosen = s.choose(v, random.Random(0))
    assert "p0" not in chosen and len(set(chosen)) == len(chosen)
    s.observe(v, {p: 1.0 for p in chosen}, {p: {} for p in chosen})
    w = s.weights(v, chosen, {p: 1.0 for p in chosen})
    assert set(w) == {"p0", *chosen}
    assert sum(w.values()) == pytest.approx(1.0)
    state = msgpack.unpackb(msgpack.packb(s.state_dict()), strict_map_key=False)
    twin = build_strategy(name, neighbours=1)
    twin.load_state_dict(state)
    assert twin.state_dict() == s.state_dict()


def test_oracle_picks_own_cluster_and_needs_clusters() -> None:
    s = build_strategy("oracle", neighbours=3)
    chosen = s.choose(view(), random.Random(1))
    assert chosen and all(int(p[1:]) % 2 == 0 for p in chosen)
    with pytest.raises(MissingClusterError):
        s.choose(view(my_cluster=None), random.Random(1))


def test_softmax_sampling_follows_similarity() -> None:
    rng = random.Random(0)
    hits = sum(softmax_sample(["a", "b", "c"], [3.0, 0.0, 0.0], 1, rng) == ["a"] for _ in range(2000))
    assert hits / 2000 == pytest.approx(20.09 / 22.09, abs=0.03)  # e^3 / (e^3 + 2)


def test_dac_prefers_similar_peers_and_uses_two_hop_tables() -> None:
    s = build_strategy("dac", neighbours=2, tau=30.0)
    v = view(n=6)
    s.observe(v, {"p1": 2.0, "p2": 0.1}, {"p1": {"p3": 1.9, "p2": 5.0, "p0": 9.0}, "p2": {"p4": 3.0}})
    assert s.prior("p3") == 1.9  # from the most similar neighbour p1 only
    assert s.prior("p2") == 0.1  # measured beats second-hand
    assert s.prior("p4") == 0.0 and "p0" not in s.estimated
    picks = [s.choose(v, random.Random(i)) for i in range(50)]
    assert all(set(p) == {"p1", "p3"} for p in picks)
    assert s.advertise(limit=1) == {"p1": 2.0}


def test_dac_tau_schedule_and_similarity_weights() -> None:
    s = build_strategy("dac", tau=30.0, tau_growth=2.0, aggregate="similarity")
    assert s.tau_at(0) == 30.0 and s.tau_at(10) == 50.0
    w = s.weights(view(), ["p1", "p2"], {"p1": 3.0, "p2": -1.0})
    assert w == pytest.approx({"p0": 0.5, "p1": 0.5, "p2": 0.0})


def test_panm_stage_two_samples_bag_and_refits_it() -> None:
    s = build_strategy("panm", neighbours=2, stage1_rounds=2, reestimate_every=3, explore=2)
    for r in range(2):
        v = view(r)
        chosen = s.choose(v, random.Random(r))
        s.observe(v, {p: (1.0 if int(p[1:]) % 2 == 0 else 0.0) for p in chosen})
    ranked = sorted(s.seen.values(), reverse=True)
    assert [s.seen[p] for p in s.bag] == ranked[:2]  # stage 1 bag = top-k of everything scored
    v2 = view(2)
    chosen = s.choose(v2, random.Random(5))  # round 2 re-estimates: bag members + 2 outsiders
    assert len(chosen) == len(set(chosen)) == min(2, len(s.bag)) + 2
    s.observe(v2, {p: (0.9 if int(p[1:]) % 2 == 0 else 0.1) for p in chosen})
    assert s.bag and all(int(p[1:]) % 2 == 0 for p in s.bag)
    s.bag = ["p2", "p4"]
    assert set(s.choose(view(3), random.Random(0))) == {"p2", "p4"}


def test_gmm_separates_two_groups() -> None:
    scores = {f"a{i}": 0.9 + 0.01 * i for i in range(5)} | {f"b{i}": 0.1 + 0.01 * i for i in range(6)}
    assert sorted(gmm_high_component(scores)) == sorted(p for p in scores if p.startswith("a"))
