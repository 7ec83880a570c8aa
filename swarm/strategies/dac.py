"""DAC: decentralized adaptive clustering (softmax sampling over similarity priors).

Each peer keeps a prior similarity per peer it knows. It samples `neighbours` peers with
probability softmax(tau_t * prior), tau_t = tau + tau_growth * round. The thesis's final runs keep
tau fixed per metric (`DEFAULT_TAU`); `tau_growth` is ours, a linear schedule that sharpens the
choice once priors are informative (not the thesis's sigmoid "softmax-variable-tau" rule). Nothing
known (round 0) means a uniform draw.

A peer never scored and never estimated gets, with `explore_unknown`, the best prior this peer
knows: optimism makes every peer tried before the sampling settles. Without it (the thesis) an
unknown peer has prior 0, i.e. almost no chance once anything is known, so with few peers a peer keeps
re-drawing whichever neighbour it met first, right cluster or wrong.

2-hop expansion stays within what a peer can know: a peer announces its own measured table
(`advertise()`); after scoring, every fetched neighbour's table fills in priors for peers this peer
never measured itself, each from the most similar neighbour that lists it (measured values always
win over second-hand ones; a newer estimate replaces an older one). A neighbour's table is measured
on the neighbour's data, on its scale: 1/loss is larger wherever the task is easier, so a peer with
an easy task hands out estimates above anything a peer with a hard one measures itself, and draws it
to the wrong cluster until it has measured them. With `two_hop_cap` an estimate is at most the
similarity of the neighbour it came through (ours; the thesis copies the value as it is).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from swarm.strategies.base import Needs, Strategy, finite_scores, others, register, sample_weights
from swarm.strategies.view import Advertised, PeerView, Scores

AGGREGATIONS = ("samples", "similarity")
# The thesis's temperatures per similarity metric (cosine was tried at 100, 200 and 300): the metrics'
# scales differ (1/loss is ~0.1-10, a cosine at most 1), so one tau cannot suit them all. loss-ratio
# is ours: on fresh scores 30 keeps a peer's own cluster near uniform (spread ~0.02 around 0.96 at the
# rotation setting, e^+-0.6), draws a 10% worse fit e^3 times less often and the wrong orientation
# (~0.15) never; stored scores still narrow the choice (docs/results.md, "DAC's choices narrow").
DEFAULT_TAU = {
    "inverse-loss": 10.0,
    "loss-ratio": 30.0,
    "cosine-updates": 200.0,
    "cosine-weights": 200.0,
    "panm": 200.0,
    "l2": 30.0,
}


def softmax_sample(items: Sequence[str], logits: Sequence[float], k: int, rng: random.Random) -> list[str]:
    """Draw `k` distinct items, each draw from the softmax over the remaining logits."""
    pool = list(zip(items, logits, strict=True))
    chosen: list[str] = []
    while pool and len(chosen) < k:
        top = max(logit for _, logit in pool)
        probs = [math.exp(logit - top) for _, logit in pool]
        pick = rng.random() * sum(probs)
        index = len(pool) - 1
        for i, p in enumerate(probs):
            pick -= p
            if pick <= 0:
                index = i
                break
        chosen.append(pool.pop(index)[0])
    return chosen


def default_tau(metric: str) -> float:
    try:
        return DEFAULT_TAU[metric]
    except KeyError:
        raise ValueError(
            f"dac has no default tau for similarity {metric!r} (known: {', '.join(DEFAULT_TAU)}); set tau > 0"
        ) from None


@register
class DAC(Strategy):
    """DAC sampling with optional 2-hop expansion; merge weights by training-set size or similarity.

    `similarity` names the metric the runtime scores with ("" = `needs.similarity`); it only picks
    the default temperature: `tau <= 0` means `DEFAULT_TAU[similarity]`.
    """

    name = "dac"
    needs = Needs(scores=True, similarity="inverse-loss")

    def __init__(
        self,
        neighbours: int = 5,
        tau: float = 0.0,
        tau_growth: float = 0.0,
        two_hop: bool = True,
        two_hop_cap: bool = False,
        aggregate: str = "samples",
        similarity: str = "",
        explore_unknown: bool = True,
        rejection_penalty: float = 0.5,
    ) -> None:
        super().__init__(neighbours)
        if aggregate not in AGGREGATIONS:
            raise ValueError(f"dac aggregate must be one of {', '.join(AGGREGATIONS)}, got {aggregate!r}")
        if not 0 < rejection_penalty <= 1:
            raise ValueError(f"dac rejection_penalty must be in (0, 1] (1: none), got {rejection_penalty}")
        self.similarity = similarity or self.needs.similarity
        self.tau = float(tau) if tau > 0 else default_tau(self.similarity)
        self.tau_growth, self.two_hop, self.aggregate = float(tau_growth), two_hop, aggregate
        self.explore_unknown, self.two_hop_cap = explore_unknown, two_hop_cap
        self.rejection_penalty = float(rejection_penalty)
        self.measured: dict[str, float] = {}
        self.estimated: dict[str, float] = {}

    def tau_at(self, round_: int) -> float:
        return self.tau + self.tau_growth * round_

    def prior(self, peer: str) -> float:
        return self.measured.get(peer, self.estimated.get(peer, 0.0))

    def choose(self, view: PeerView, rng: random.Random) -> list[str]:
        ids = sorted(c.peer_id for c in others(view))
        return softmax_sample(ids, self.logits(ids, view.round), self.neighbours, rng)

    def logits(self, ids: Sequence[str], round_: int) -> list[float]:
        """tau_t * prior of each of `ids`: the first draw's softmax is where a peer's choice goes."""
        known = self.measured.keys() | self.estimated.keys()
        unknown = max(map(self.prior, known), default=0.0) if self.explore_unknown else 0.0
        tau = self.tau_at(round_)
        return [tau * (self.prior(p) if p in known else unknown) for p in ids]

    def observe(self, view: PeerView, scores: Scores, advertised: Advertised | None = None) -> None:
        fresh = finite_scores(scores, view.me)
        self.measured.update(fresh)
        if self.two_hop and advertised:
            self.estimated.update(self.two_hop_estimates(fresh, advertised, view.me))

    def two_hop_estimates(self, fresh: Scores, advertised: Advertised, me: str) -> dict[str, float]:
        """For each peer I never measured, its value in the table of the most similar fetched
        neighbour that lists it: that neighbour's view of the peer is the likeliest to be mine.
        (The thesis's client_information_exchange_DAC keeps the LEAST similar one, `if
        similarity_scores[j] < two_step_similarities[k][0]`, a flipped comparison.) With
        `two_hop_cap`, never more than my similarity to that neighbour."""
        estimates: dict[str, float] = {}
        # Ascending similarity, so the most similar neighbour writes last and wins.
        for neighbour in sorted((p for p in fresh if p in advertised), key=lambda p: (fresh[p], p)):
            for peer, score in finite_scores(advertised[neighbour], me).items():
                if peer not in self.measured:
                    estimates[peer] = min(score, fresh[neighbour]) if self.two_hop_cap else score
        return estimates

    def weights(self, view: PeerView, fetched: Sequence[str], scores: Scores) -> dict[str, float]:
        if self.aggregate == "samples":
            return sample_weights(view, fetched)
        # Similarity weights: negative/unknown similarity gets nothing; the peer itself counts as
        # much as its most similar neighbour (its own score is not defined for every metric).
        fresh = finite_scores(scores, view.me)
        raw = {p: max(fresh.get(p, 0.0), 0.0) for p in fetched if p != view.me}
        top = max(raw.values(), default=0.0)
        raw[view.me] = top if top > 0 else 1.0
        total = sum(raw.values())
        return {p: w / total for p, w in raw.items()}

    def rejected(self, peers: Sequence[str]) -> None:
        """A refused merge is evidence the peer is less similar than its score says: move its measured
        prior away from the top (times `rejection_penalty` if positive, divided by it if negative)
        until it is re-scored. At 0.5 and a sharp tau a peer of my own cluster refused once, on the
        noise of 100 validation images, is drawn e^9 times less often (tau 10, 1/loss ~2), so it is
        rarely re-scored (docs/results.md, "DAC's choices narrow")."""
        factor = self.rejection_penalty
        for peer in peers:
            if peer in self.measured:
                prior = self.measured[peer]
                self.measured[peer] = prior * factor if prior > 0 else prior / factor

    def advertise(self, limit: int = 20) -> dict[str, float]:
        best = sorted(self.measured.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return dict(best)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "tau": self.tau,
            "tau_growth": self.tau_growth,
            "two_hop": self.two_hop,
            "aggregate": self.aggregate,
            "similarity": self.similarity,
            "explore_unknown": self.explore_unknown,
            "two_hop_cap": self.two_hop_cap,
            "rejection_penalty": self.rejection_penalty,
            "measured": dict(self.measured),
            "estimated": dict(self.estimated),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.tau, self.tau_growth = float(state["tau"]), float(state["tau_growth"])
        self.two_hop, self.aggregate = bool(state["two_hop"]), str(state["aggregate"])
        # Checkpoints written before these settings existed keep the configured ones.
        self.similarity = str(state.get("similarity", self.similarity))
        self.explore_unknown = bool(state.get("explore_unknown", self.explore_unknown))
        self.two_hop_cap = bool(state.get("two_hop_cap", self.two_hop_cap))
        self.rejection_penalty = float(state.get("rejection_penalty", self.rejection_penalty))
        self.measured = {str(k): float(v) for k, v in state["measured"].items()}
        self.estimated = {str(k): float(v) for k, v in state["estimated"].items()}
