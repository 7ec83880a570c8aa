"""Strategies driven through the PeerView interface only: registry, choice, weights, checkpoints."""

from __future__ import annotations

import random

import msgpack
import pytest

from swarm.strategies import STRATEGIES, Candidate, PeerView, UnknownStrategyError, build_strategy
from swarm.strategies.base import strategy_params
from swarm.strategies.dac import DAC, DEFAULT_TAU, softmax_sample
from swarm.strategies.panm import PANM, high_component
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


def test_dac_prefers_similar_peers() -> None:
    s = build_strategy("dac", neighbours=2, tau=30.0, two_hop=False)
    v = view(n=4)
    s.observe(v, {"p1": 2.0, "p2": 0.1, "p3": 1.9}, {"p1": {"p4": 9.0}})
    assert s.estimated == {}
    picks = [s.choose(v, random.Random(i)) for i in range(50)]
    assert all(set(p) == {"p1", "p3"} for p in picks)
    assert s.advertise(limit=1) == {"p1": 2.0}


def test_dac_two_hop_uses_every_table_through_the_most_similar_neighbour() -> None:
    s = build_strategy("dac", neighbours=2)
    v = view(n=8)
    s.observe(
        v,
        {"p1": 2.0, "p2": 0.5, "p3": 1.0},
        {"p1": {"p4": 1.5}, "p2": {"p4": 0.1, "p5": 0.7, "p0": 9.0}, "p3": {"p4": 0.9, "p6": 1.2, "p2": 9.0}},
    )
    # p4 is in three tables: p1's (the most similar) wins; the thesis code would take p2's 0.1.
    assert s.estimated == {"p4": 1.5, "p5": 0.7, "p6": 1.2}
    assert s.prior("p2") == 0.5  # measured beats second-hand
    s.observe(v, {"p7": 1.0, "p4": 0.3}, {"p7": {"p5": 0.2, "p4": 5.0}})
    assert s.prior("p5") == 0.2  # a newer estimate replaces an older one
    assert s.prior("p4") == 0.3  # once measured, tables no longer count


def test_dac_two_hop_cap_keeps_an_estimate_below_the_neighbour_it_came_through() -> None:
    # p1 has an easy task: its table (1/loss on its data) outranks all I measure on mine.
    fresh = {"p1": 0.8, "p2": 1.2}
    tables = {"p1": {"p3": 3.0, "p4": 0.5}, "p2": {"p5": 1.1}}
    raw = build_strategy("dac", neighbours=1, explore_unknown=False)
    raw.observe(view(n=6), fresh, tables)
    assert raw.estimated == {"p3": 3.0, "p4": 0.5, "p5": 1.1}
    capped = build_strategy("dac", neighbours=1, two_hop_cap=True, explore_unknown=False)
    capped.observe(view(n=6), fresh, tables)
    assert capped.estimated == {"p3": 0.8, "p4": 0.5, "p5": 1.1}

    def share(s: DAC, peer: str) -> float:
        return sum(s.choose(view(n=6), random.Random(i)) == [peer] for i in range(300)) / 300

    # Raw, p1's easy-task table draws me to p3, whom I never measured; capped, the most similar peer
    # I measured is the likeliest pick (softmax at tau 10: e^12 / (e^12 + e^11 + 2 e^8 + e^5) ~ 0.71).
    assert share(raw, "p3") > 0.99
    assert share(capped, "p2") == pytest.approx(0.71, abs=0.08)
    restored = build_strategy("dac")
    restored.load_state_dict(capped.state_dict())
    assert restored.two_hop_cap


def test_dac_tau_schedule_and_similarity_weights() -> None:
    s = build_strategy("dac", tau=30.0, tau_growth=2.0, aggregate="similarity")
    assert s.tau_at(0) == 30.0 and s.tau_at(10) == 50.0
    w = s.weights(view(), ["p1", "p2"], {"p1": 3.0, "p2": -1.0})
    assert w == pytest.approx({"p0": 0.5, "p1": 0.5, "p2": 0.0})


def test_dac_tau_defaults_per_metric() -> None:
    assert build_strategy("dac").tau == DEFAULT_TAU["inverse-loss"] == 10.0
    pairs = [("loss-ratio", 30.0), ("cosine-updates", 200.0), ("cosine-weights", 200.0), ("panm", 200.0),
             ("l2", 30.0)]
    for metric, tau in pairs:
        assert build_strategy("dac", similarity=metric, tau=0.0).tau == tau
    assert build_strategy("dac", similarity="l2", tau=5.0).tau == 5.0
    config = {"similarity": "", "tau": 0.0, "tau_growth": 0.0, "explore_unknown": False, "rounds": 3}
    s = build_strategy("dac", **strategy_params("dac", config))
    assert (s.similarity, s.tau, s.explore_unknown) == ("inverse-loss", 10.0, False)
    with pytest.raises(ValueError, match="no default tau"):
        build_strategy("dac", similarity="nope")


def chosen_over_rounds(explore_unknown: bool, seed: int, rounds: int) -> set[str]:
    """Everyone a DAC peer of a 4-peer swarm fetches in `rounds` rounds; only p2 is in its cluster."""
    s = build_strategy("dac", neighbours=2, explore_unknown=explore_unknown)
    rng, chosen = random.Random(seed), set()
    for r in range(rounds):
        v = view(r, n=4)
        picks = s.choose(v, rng)
        chosen.update(picks)
        s.observe(v, {p: 2.0 if p == "p2" else 0.5 for p in picks})
    return chosen


def test_dac_explore_unknown_tries_every_peer() -> None:
    assert all(chosen_over_rounds(True, seed, 6) == {"p1", "p2", "p3"} for seed in range(50))
    # The thesis's rule: the peer missed in round 0 is hardly ever drawn again.
    assert sum(chosen_over_rounds(False, seed, 10) == {"p1", "p2", "p3"} for seed in range(50)) <= 5


def test_dac_without_explore_unknown_samples_as_before() -> None:
    s = build_strategy("dac", neighbours=2, explore_unknown=False)
    v = view(n=6)
    s.observe(v, {"p1": 1.0, "p2": 0.2}, {})
    ids = ["p1", "p2", "p3", "p4", "p5"]
    for seed in range(20):
        before = softmax_sample(ids, [s.tau * s.prior(p) for p in ids], 2, random.Random(seed))
        assert s.choose(v, random.Random(seed)) == before
    optimist = build_strategy("dac", neighbours=2)
    optimist.observe(v, {"p1": 1.0, "p2": 0.2}, {})
    assert build_strategy("dac").choose(view(n=4), random.Random(0))  # nothing known: uniform
    left_out = [sum("p1" not in x.choose(v, random.Random(i)) for i in range(200)) for x in (s, optimist)]
    assert left_out[0] < 5 and left_out[1] > 60  # optimism: p3..p5 are as attractive as p1


def test_rejected_lowers_dac_priors() -> None:
    s = build_strategy("dac")
    s.observe(view(), {"p1": 2.0, "p2": -0.5, "p3": 1.0})
    s.rejected(["p1", "p2", "p9"])
    assert s.measured == {"p1": 1.0, "p2": -1.0, "p3": 1.0}
    gentle = build_strategy("dac", rejection_penalty=1.0)
    gentle.observe(view(), {"p1": 2.0, "p2": -0.5})
    gentle.rejected(["p1", "p2"])
    assert gentle.measured == {"p1": 2.0, "p2": -0.5}
    with pytest.raises(ValueError, match=r"rejection_penalty must be in \(0, 1\]"):
        build_strategy("dac", rejection_penalty=0.0)
    build_strategy("random").rejected(["p1"])  # other strategies ignore it


def panm_in_stage2(bag: dict[str, float], neighbours: int = 2, explore: int = 2) -> PANM:
    """A PANM peer whose stage 2 starts at round 1 (a re-estimation round) with `bag`."""
    s = build_strategy("panm", neighbours=neighbours, stage1_rounds=1, reestimate_every=2, explore=explore)
    assert isinstance(s, PANM)
    s.seen, s.bag = dict(bag), sorted(bag)
    return s


def merged(s: PANM, v: PeerView, chosen: list[str]) -> set[str]:
    w = s.weights(v, chosen, {})
    assert set(w) == {"p0", *chosen} and sum(w.values()) == pytest.approx(1.0)
    return {p for p, weight in w.items() if weight > 0 and p != "p0"}


def same_cluster(p: str) -> bool:
    return int(p[1:]) % 2 == 0


def test_panm_stage1_scores_a_sample_but_merges_the_memory() -> None:
    s = build_strategy("panm", neighbours=2, stage1_rounds=5)
    assert isinstance(s, PANM)
    for r in range(3):
        v = view(r)
        memory = list(s.bag)
        chosen = s.choose(v, random.Random(r))
        assert len(chosen) == len(set(chosen)) == 2 + len(memory)
        assert set(memory) <= set(chosen)  # the memory is fetched every round, the rest is new
        s.observe(v, {p: 0.9 + 0.01 * int(p[1:]) if same_cluster(p) else 0.1 for p in chosen})
        ranked = sorted(s.seen, key=lambda p: (-s.seen[p], p))
        assert s.bag == ranked[:2]  # the memory: top-k of everything scored so far
        assert merged(s, v, chosen) == set(s.bag)  # not the random sample


def test_panm_stage2_merges_only_bag_members() -> None:
    s = panm_in_stage2({"p2": 0.8, "p4": 0.82, "p6": 0.84})
    v = view(1)  # re-estimation round: 2 members + 2 outsiders
    chosen = s.choose(v, random.Random(3))
    outsiders = [p for p in chosen if p not in {"p2", "p4", "p6"}]
    assert len(outsiders) == 2 and len(chosen) == 4
    s.observe(v, {p: 0.81 if same_cluster(p) else 0.1 for p in chosen})
    assert merged(s, v, chosen) == set(chosen) - set(outsiders)  # outsiders scored, not merged
    assert {"p2", "p4", "p6"} <= set(s.bag) and all(same_cluster(p) for p in s.bag)
    v = view(2)  # an ordinary round: bag members only
    chosen = s.choose(v, random.Random(4))
    assert len(chosen) == 2 and set(chosen) <= set(s.bag)
    s.observe(v, {p: 0.8 for p in chosen})
    assert merged(s, v, chosen) == set(chosen)


def test_panm_refit_keeps_a_pure_bag_whole() -> None:
    members = {"p2": 0.80, "p4": 0.83, "p6": 0.85, "p8": 0.81, "p10": 0.84}
    s = panm_in_stage2(members, neighbours=5, explore=3)
    v = view(1, n=14)
    chosen = s.choose(v, random.Random(0))
    assert set(members) <= set(chosen)
    # all members and one same-cluster newcomer score alike; the other newcomers are far below
    scores = {**members, **{p: 0.82 if same_cluster(p) else 0.15 + 0.01 * int(p[1:]) for p in chosen}}
    s.observe(v, {p: scores[p] for p in chosen})
    assert set(s.bag) == set(members) | {p for p in chosen if same_cluster(p)}
    assert s.merging == sorted(members)
    everyone_alike = {**members, "p12": 0.79, "p3": 0.82, "p5": 0.86}
    assert high_component(everyone_alike) == sorted(everyone_alike)


def test_panm_refit_keeps_unsampled_members_and_drops_low_ones() -> None:
    s = panm_in_stage2({"p2": 0.8, "p4": 0.8, "p5": 0.3})
    v = view(1)
    s.observe(v, {"p2": 0.85, "p5": 0.1, "p7": 0.12, "p9": 0.11, "p8": 0.83})
    assert s.bag == ["p2", "p4", "p8"]  # p4 was not sampled: it stays
    assert s.merging == ["p2"]


def test_rejected_drops_from_panm_bag_and_memory() -> None:
    s = panm_in_stage2({"p2": 0.9, "p4": 0.8, "p3": 0.1, "p5": 0.05})
    s.rejected(["p2"])
    assert s.bag == ["p3", "p4", "p5"] and s.seen["p2"] == pytest.approx(0.05) and s.seen["p2"] < 0.05
    memory = build_strategy("panm", neighbours=2, stage1_rounds=5)
    assert isinstance(memory, PANM)
    memory.observe(view(0), {"p2": 0.9, "p4": 0.8, "p3": 0.1})
    memory.rejected(["p2"])
    memory.observe(view(1), {})
    assert memory.bag == ["p4", "p3"]  # the stage 1 memory does not take it straight back


def test_high_component_separates_two_groups_only() -> None:
    scores = {f"a{i}": 0.9 + 0.01 * i for i in range(5)} | {f"b{i}": 0.1 + 0.01 * i for i in range(6)}
    assert high_component(scores) == sorted(p for p in scores if p.startswith("a"))
    assert high_component({"a": 1.0, "b": 1.0, "c": 1.0}) == ["a", "b", "c"]
    assert high_component({"a": 1.0, "b": 0.0}) == ["a", "b"]  # too few to tell
    assert high_component({"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0}) == ["a", "b"]


def test_new_state_round_trips() -> None:
    dac = build_strategy("dac", similarity="cosine-updates", explore_unknown=False, tau_growth=1.0)
    dac.observe(view(), {"p1": 0.5}, {"p1": {"p3": 0.4}})
    panm = panm_in_stage2({"p2": 0.8, "p4": 0.82, "p6": 0.84})
    panm.observe(view(2), {"p2": 0.8})
    assert panm.merging == ["p2"]
    for s in (dac, panm):
        state = msgpack.unpackb(msgpack.packb(s.state_dict()), strict_map_key=False)
        twin = build_strategy(s.name)
        twin.load_state_dict(state)
        assert twin.state_dict() == s.state_dict()
        assert twin.choose(view(2), random.Random(1)) == s.choose(view(2), random.Random(1))
