"""DAC: decentralized adaptive clustering (softmax sampling over similarity priors).

Each peer keeps a prior similarity per peer it knows. It samples `neighbours` peers with
probability softmax(tau_t * prior), tau_t = tau + tau_growth * round (an increasing schedule sharpens
the choice once priors are informative). Unknown peers have prior 0, so round 0 is uniform.

2-hop expansion stays within what a peer can know: a peer announces its own measured table
(`advertise()`); after scoring, the most similar fetched neighbour's table fills in priors for peers
this peer never measured itself (measured values always win over second-hand ones).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from swarm.strategies.base import PeerView, Strategy, others, register, sample_weights

AGGREGATIONS = ("samples", "similarity")


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


def finite_scores(scores: Mapping[str, float], me: str) -> dict[str, float]:
    return {p: float(s) for p, s in scores.items() if p != me and math.isfinite(float(s))}


@register
class DAC(Strategy):
    """DAC sampling with optional 2-hop expansion; merge weights by training-set size or similarity."""

    name = "dac"
    needs_scores = True
    default_similarity = "inverse-loss"

    def __init__(
        self,
        neighbours: int = 5,
        tau: float = 30.0,
        tau_growth: float = 0.0,
        two_hop: bool = True,
        aggregate: str = "samples",
    ) -> None:
        super().__init__(neighbours)
        if aggregate not in AGGREGATIONS:
            raise ValueError(f"dac aggregate must be one of {', '.join(AGGREGATIONS)}, got {aggregate!r}")
        self.tau, self.tau_growth, self.two_hop, self.aggregate = (
            float(tau),
            float(tau_growth),
            two_hop,
            aggregate,
        )
        self.measured: dict[str, float] = {}
        self.estimated: dict[str, float] = {}

    def tau_at(self, round_: int) -> float:
        return self.tau + self.tau_growth * round_

    def prior(self, peer: str) -> float:
        return self.measured.get(peer, self.estimated.get(peer, 0.0))

    def choose(self, view: PeerView, rng: random.Random) -> list[str]:
        ids = sorted(c.peer_id for c in others(view))
        tau = self.tau_at(view.round)
        return softmax_sample(ids, [tau * self.prior(p) for p in ids], self.neighbours, rng)

    def observe(
        self,
        view: PeerView,
        scores: Mapping[str, float],
        advertised: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        fresh = finite_scores(scores, view.me)
        self.measured.update(fresh)
        if not (self.two_hop and advertised and fresh):
            return
        tables = [p for p in fresh if p in advertised]
        if not tables:
            return
        best = max(tables, key=lambda p: (fresh[p], p))
        for peer, score in finite_scores(advertised[best], view.me).items():
            if peer not in self.measured:
                self.estimated[peer] = score

    def weights(
        self, view: PeerView, fetched: Sequence[str], scores: Mapping[str, float]
    ) -> dict[str, float]:
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
            "measured": dict(self.measured),
            "estimated": dict(self.estimated),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.tau, self.tau_growth = float(state["tau"]), float(state["tau_growth"])
        self.two_hop, self.aggregate = bool(state["two_hop"]), str(state["aggregate"])
        self.measured = {str(k): float(v) for k, v in state["measured"].items()}
        self.estimated = {str(k): float(v) for k, v in state["estimated"].items()}
