"""Strategies: whom to fetch and how to weigh them, from a peer's own view (see `base`)."""

from swarm.strategies import dac, gossip, panm, simple  # noqa: F401  (registers the strategies)
from swarm.strategies.base import (
    STRATEGIES,
    Candidate,
    PeerView,
    Strategy,
    UnknownStrategyError,
    build_strategy,
    strategy_params,
)

__all__ = [
    "STRATEGIES", "Candidate", "PeerView", "Strategy", "UnknownStrategyError", "build_strategy",
    "strategy_params",
]
