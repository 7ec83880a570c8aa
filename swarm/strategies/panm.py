"""PANM: peer-to-peer neighbour matching in two stages.

Stage 1 (`stage1_rounds`): `neighbours` uniform peers per round; every score is remembered and the
top-`neighbours` peers form the neighbour bag. Stage 2: sample from the bag; every `reestimate_every`
rounds also fetch `explore` peers outside the bag, then refit the bag with a 2-component Gaussian
mixture over the scores of bag + newcomers, keeping the component with the higher mean.
Scores come from the runtime with the `panm` metric (alpha-weighted cosine of current and
accumulated updates) unless the config picks another.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from swarm.strategies.base import PeerView, Strategy, others, register, sample_weights


def gmm_high_component(scores: Mapping[str, float], seed: int = 0) -> list[str]:
    """Peers in the higher-mean component of a 2-component 1-D Gaussian mixture over their scores."""
    from sklearn.mixture import GaussianMixture

    ids = sorted(scores)
    values = [[scores[p]] for p in ids]
    if len(ids) < 3 or max(v[0] for v in values) - min(v[0] for v in values) < 1e-12:
        return ids
    gmm = GaussianMixture(n_components=2, random_state=seed).fit(values)
    high = int(gmm.means_.argmax())
    labels = gmm.predict(values)
    return [p for p, label in zip(ids, labels, strict=True) if label == high]


@register
class PANM(Strategy):
    name = "panm"
    needs_scores = True
    default_similarity = "panm"

    def __init__(
        self,
        neighbours: int = 5,
        stage1_rounds: int = 50,
        reestimate_every: int = 5,
        explore: int | None = None,
    ) -> None:
        super().__init__(neighbours)
        if reestimate_every < 1:
            raise ValueError(f"reestimate_every must be >= 1, got {reestimate_every}")
        self.stage1_rounds, self.reestimate_every = int(stage1_rounds), int(reestimate_every)
        self.explore = neighbours if explore is None else int(explore)
        self.seen: dict[str, float] = {}
        self.bag: list[str] = []

    def in_stage1(self, round_: int) -> bool:
        return round_ < self.stage1_rounds

    def reestimates(self, round_: int) -> bool:
        return not self.in_stage1(round_) and (round_ - self.stage1_rounds) % self.reestimate_every == 0

    def top_bag(self) -> list[str]:
        return [p for p, _ in sorted(self.seen.items(), key=lambda kv: (-kv[1], kv[0]))[: self.neighbours]]

    def choose(self, view: PeerView, rng: random.Random) -> list[str]:
        ids = sorted(c.peer_id for c in others(view))
        if self.in_stage1(view.round):
            return rng.sample(ids, min(self.neighbours, len(ids)))
        if not self.bag:
            self.bag = self.top_bag()
        bag = [p for p in self.bag if p in set(ids)]
        picked = rng.sample(bag, min(self.neighbours, len(bag)))
        if self.reestimates(view.round) or not picked:
            outside = [p for p in ids if p not in set(bag)]
            picked += rng.sample(outside, min(self.explore, len(outside)))
        return picked

    def observe(
        self,
        view: PeerView,
        scores: Mapping[str, float],
        advertised: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        fresh = {p: float(s) for p, s in scores.items() if p != view.me and math.isfinite(float(s))}
        self.seen.update(fresh)
        if self.in_stage1(view.round):
            self.bag = self.top_bag()
        elif self.reestimates(view.round):
            pool = {p: self.seen[p] for p in {*self.bag, *fresh} if p in self.seen}
            self.bag = gmm_high_component(pool) or self.top_bag()

    def weights(
        self, view: PeerView, fetched: Sequence[str], scores: Mapping[str, float]
    ) -> dict[str, float]:
        return sample_weights(view, fetched)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "stage1_rounds": self.stage1_rounds,
            "reestimate_every": self.reestimate_every,
            "explore": self.explore,
            "seen": dict(self.seen),
            "bag": list(self.bag),
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
