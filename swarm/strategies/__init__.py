"""Strategies: whom to fetch and how to weigh them, from a peer's own view (see `base`)."""

from swarm.strategies import dac, gossip, panm, simple  # noqa: F401  (registers the strategies)
from swarm.strategies.base import (
    STRATEGIES,
    Needs,
    Strategy,
    UnknownStrategyError,
    UnsupportedRuntimeError,
    build_strategy,
    configured_strategy,
    resolve_needs,
    runnable,
    strategy_params,
)
from swarm.strategies.view import Candidate, PeerView

__all__ = [
    "STRATEGIES", "Candidate", "Needs", "PeerView", "Strategy", "UnknownStrategyError",
    "UnsupportedRuntimeError", "build_strategy", "configured_strategy", "resolve_needs", "runnable",
    "strategy_params",
]
