"""PANM: peer-to-peer neighbour matching in two stages (the thesis's client_information_exchange_PANM).

Stage 1 (rounds < `stage1_rounds`, the thesis's T1; its NSMC): each round score `neighbours` uniform
peers outside the memory; the `neighbours` best-scored peers so far form the memory, and the memory
is what gets merged, not the sample just drawn. The memory becomes the neighbour bag.
Stage 2 (its NAEM): each round merge up to `neighbours` uniform members of the bag. Every
`reestimate_every` rounds (its NAEM_frequency) also score `explore` peers outside the bag, then refit
over the scores of the sampled members and those newcomers only (`high_component`): the higher
component stays or joins, unsampled members stay. Newcomers are scored, not merged, that round.
Merge weights are training-set sizes (FedAvg), as in the thesis. Scores come from the runtime with
the `panm` metric (alpha-weighted cosine of current and accumulated updates) unless the config
picks another.

Where an asynchronous peer without a global view cannot do what the thesis's loop does:
- every fetched snapshot is scored, so a remembered score is the latest one (the thesis keeps the
  score from the round NSMC or NAEM drew the peer), and the memory ranks only announcing peers;
- the thesis merges, after a refit, a fresh draw from the refitted bag, which may name members not
  fetched this round; a peer merges what it fetched: the sampled members the refit kept;
- the schedule counts from the start of stage 2 (the thesis: `round % NAEM_frequency` on the absolute
  round; the same when `stage1_rounds` is a multiple of `reestimate_every`);
- an empty bag (members left or were refused by the merge guard) explores the next round; the
  thesis's NAEM keeps an empty bag empty.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from swarm.strategies.base import Needs, Strategy, finite_scores, others, register, sample_weights
from swarm.strategies.view import Advertised, PeerView, Scores

# Means this many pooled standard deviations apart make two components; see `high_component`.
SEPARATION = 5.0


def squared_error(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values)


def high_component(scores: Mapping[str, float]) -> list[str]:
    """Peers in the higher-mean component of a 2-component 1-D Gaussian mixture over their scores, or
    all of them when a single component fits better.

    The fit assigns each score to one component, as the thesis's NAEM (a hard EM) does, but exactly:
    in 1-D it is the cut of the sorted scores with the least within-group squared error. The variance
    is shared, so a lone score cannot make a zero-variance component (NAEM's `norm.pdf` with scale 0
    is NaN). NAEM keeps the component it seeded with the bag members whatever its mean; the higher
    mean is the similar side even when newcomers beat the members.
    Two components win only when their means are `SEPARATION` pooled standard deviations apart: on
    the 4-10 scores of a refit, BIC prefers two components for a sample of one Gaussian in 30-85% of
    cases (sklearn, measured), which would split an already pure bag; this rule does in about 5%
    (10 scores) to 30% (4 scores). Fewer than 3 scores cannot show two components.
    """
    ids = sorted(scores, key=lambda p: (scores[p], p))
    values = [scores[p] for p in ids]
    if len(ids) < 3:
        return sorted(ids)
    error, cut = min((squared_error(values[:c]) + squared_error(values[c:]), c) for c in range(1, len(ids)))
    gap = sum(values[cut:]) / len(values[cut:]) - sum(values[:cut]) / cut
    if gap <= SEPARATION * math.sqrt(error / (len(ids) - 2)):
        return sorted(ids)
    return sorted(ids[cut:])


@register
class PANM(Strategy):
    """PANM sampling (see the module docstring); merges only me and the memory / bag members."""

    name = "panm"
    needs = Needs(scores=True, similarity="panm")

    def __init__(
        self,
        neighbours: int = 5,
        stage1_rounds: int = 50,
        reestimate_every: int = 2,
        explore: int | None = None,
    ) -> None:
        super().__init__(neighbours)
        if reestimate_every < 1:
            raise ValueError(f"reestimate_every must be >= 1, got {reestimate_every}")
        self.stage1_rounds, self.reestimate_every = int(stage1_rounds), int(reestimate_every)
        # The thesis's NSMC draws as many newcomers as neighbours.
        self.explore = neighbours if explore is None else int(explore)
        self.seen: dict[str, float] = {}
        self.bag: list[str] = []
        self.merging: list[str] = []  # the fetched peers this round's merge may weigh (set by observe)

    def in_stage1(self, round_: int) -> bool:
        return round_ < self.stage1_rounds

    def reestimates(self, round_: int) -> bool:
        return not self.in_stage1(round_) and (round_ - self.stage1_rounds) % self.reestimate_every == 0

    def top_bag(self, among: Collection[str]) -> list[str]:
        ranked = sorted((p for p in self.seen if p in among), key=lambda p: (-self.seen[p], p))
        return ranked[: self.neighbours]

    def choose(self, view: PeerView, rng: random.Random) -> list[str]:
        ids = sorted(c.peer_id for c in others(view))
        alive, members = set(ids), set(self.bag)
        bag = [p for p in self.bag if p in alive]
        outside = [p for p in ids if p not in members]
        if self.in_stage1(view.round):
            return rng.sample(outside, min(self.neighbours, len(outside))) + bag
        picked = rng.sample(bag, min(self.neighbours, len(bag)))
        if self.reestimates(view.round) or not picked:
            picked += rng.sample(outside, min(self.explore, len(outside)))
        return picked

    def observe(self, view: PeerView, scores: Scores, advertised: Advertised | None = None) -> None:
        fresh = finite_scores(scores, view.me)
        members = set(self.bag)
        self.seen.update(fresh)
        if self.in_stage1(view.round):
            self.bag = self.top_bag({c.peer_id for c in others(view)})
            self.merging = [p for p in self.bag if p in fresh]
            return
        if any(p not in members for p in fresh):  # outsiders were explored: refit
            self.bag = sorted({*(members - set(fresh)), *high_component(fresh)})
        self.merging = sorted(p for p in fresh if p in members and p in self.bag)

    def weights(self, view: PeerView, fetched: Sequence[str], scores: Scores) -> dict[str, float]:
        merging = set(self.merging)
        weights = {p: 0.0 for p in fetched if p != view.me}
        weights.update(sample_weights(view, [p for p in fetched if p in merging]))
        return weights

    def rejected(self, peers: Sequence[str]) -> None:
        """Out of the bag, and remembered as the least similar peer so far (just below the lowest
        score, so a tie does not favour it), so that stage 1's memory does not pick it straight back;
        a fresh score, if it is drawn again, replaces that."""
        refused = set(peers)
        floor = math.nextafter(min(self.seen.values(), default=0.0), -math.inf)
        for peer in refused & set(self.seen):
            self.seen[peer] = floor
        self.bag = [p for p in self.bag if p not in refused]

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "stage1_rounds": self.stage1_rounds,
            "reestimate_every": self.reestimate_every,
            "explore": self.explore,
            "seen": dict(self.seen),
            "bag": list(self.bag),
            "merging": list(self.merging),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.stage1_rounds, self.reestimate_every = (
            int(state["stage1_rounds"]),
            int(state["reestimate_every"]),
        )
        self.explore = int(state["explore"])
        self.seen = {str(k): float(v) for k, v in state["seen"].items()}
        self.bag = [str(p) for p in state["bag"]]
        self.merging = [str(p) for p in state.get("merging", [])]  # absent in older checkpoints
