"""Epsilon-aware neighbours: whom a peer may merge given the privacy each publisher spent, and how
much a noisier model weighs. Both runtimes call these functions, the simulator with the epsilon each
virtual client spent, the node with what announcements and fetched snapshots say.

A peer's epsilon is the DP epsilon it spent so far (`dp_epsilon` of its announcement and snapshot
meta); None means the publisher trains without DP. Without DP nothing bounds what its weights reveal,
so it counts as infinite epsilon: a ceiling (`max_peer_epsilon` > 0) excludes it. The merging peer
itself is never excluded: a ceiling is about whose models I take, my own model is mine anyway.

Noise-aware weights: the strategy's weight of each peer (FedAvg's rule: its samples) times
f(epsilon) = epsilon^2 / (epsilon^2 + HALF_WEIGHT_EPSILON^2), renormalised to sum to 1. Why this f:
DP-SGD's noise standard deviation scales as 1 / epsilon for a fixed training length, so the noise
variance a model carries scales as 1 / epsilon^2; weighing each model by the inverse of (its data
variance + its DP noise variance), with the two equal at HALF_WEIGHT_EPSILON, gives f up to a
constant. f increases with epsilon, saturates at 1, and f(no DP) = 1. Announcements carry the epsilon
spent so far, not the noise multiplier: early in a run every DP peer has spent little and weighs
less than it will later, peers with the same plan alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from swarm.errors import SwarmError
from swarm.strategies.view import PeerView

MERGE_WEIGHTS = ("strategy", "noise-aware")
# The epsilon spent at which a DP peer's noise-aware weight is half that of a peer without DP.
HALF_WEIGHT_EPSILON = 2.0

Epsilons = Mapping[str, float | None]  # peer id -> epsilon spent (None: no DP)


class PeerPrivacyError(SwarmError, ValueError):
    """A bad epsilon ceiling or merge-weight scheme."""


def check_settings(max_peer_epsilon: float, merge_weights: str) -> None:
    """Refuse settings that cannot work, before anything is built."""
    if not (max_peer_epsilon >= 0 and math.isfinite(max_peer_epsilon)):
        raise PeerPrivacyError(f"max_peer_epsilon must be a finite number >= 0 (0: off), "
                               f"got {max_peer_epsilon}")
    if merge_weights not in MERGE_WEIGHTS:
        raise PeerPrivacyError(f"merge_weights must be one of {', '.join(MERGE_WEIGHTS)}, "
                               f"got {merge_weights!r}")


def allowed(epsilon: float | None, max_peer_epsilon: float) -> bool:
    """Whether a model whose publisher spent `epsilon` may be merged under the ceiling (0: no ceiling)."""
    if max_peer_epsilon <= 0:
        return True
    return epsilon is not None and epsilon <= max_peer_epsilon


def eligible(view: PeerView, max_peer_epsilon: float) -> PeerView:
    """`view` without the candidates over the ceiling, so a strategy never chooses (and a node never
    fetches) them; the viewing peer itself stays."""
    kept = [c for c in view.candidates if c.peer_id == view.me or allowed(c.epsilon, max_peer_epsilon)]
    return replace(view, candidates=kept)


def refused(epsilons: Epsilons, me: str, max_peer_epsilon: float) -> list[str]:
    """The peers (never `me`) whose models must not be merged under the ceiling, sorted."""
    return sorted(p for p, e in epsilons.items() if p != me and not allowed(e, max_peer_epsilon))


def noise_factor(epsilon: float | None) -> float:
    """f(epsilon) of the module docstring: 0 at epsilon 0, 1/2 at HALF_WEIGHT_EPSILON, 1 without DP."""
    if epsilon is None or math.isinf(epsilon):
        return 1.0
    return epsilon**2 / (epsilon**2 + HALF_WEIGHT_EPSILON**2)


def merge_weights(weights: Mapping[str, float], epsilons: Epsilons, *, me: str, max_peer_epsilon: float,
                  scheme: str) -> dict[str, float]:
    """The strategy's `weights` (me and the fetched peers) with the peers over the ceiling at 0 and,
    for `scheme` "noise-aware", each weight times `noise_factor` of its epsilon; sums to 1 (all on
    `me` when nothing else is left). A peer missing from `epsilons` counts as without DP."""
    check_settings(max_peer_epsilon, scheme)
    out_of_bounds = set(refused({p: epsilons.get(p) for p in weights}, me, max_peer_epsilon))
    noisy = scheme == "noise-aware"
    if not (noisy or out_of_bounds):
        return dict(weights)  # bit for bit what the strategy gave: runs without these options are unchanged
    raw = {p: 0.0 if p in out_of_bounds else w * (noise_factor(epsilons.get(p)) if noisy else 1.0)
           for p, w in weights.items()}
    total = sum(raw.values())
    if not total > 0:
        return {p: float(p == me) for p in {me, *weights}}
    return {p: w / total for p, w in raw.items()}

