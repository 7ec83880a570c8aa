"""The strategy interface shared by the simulator and the real node.

A strategy object belongs to one peer and decides, from a `PeerView` only (`swarm.strategies.view`:
who announced what, which snapshots were fetched, their similarity scores), whom to fetch and how to
weigh them in the merge.
It never sees the network, IPFS, or tensors of other clients; its state is plain msgpack-able data.

Round protocol, identical in both runtimes:
1. `choose(view, rng)` -> peer ids to fetch this round;
2. the runtime fetches them and scores each with `swarm.similarity.similarity(name)`;
3. `observe(view, scores, advertised)` updates the peer's state (priors, bag, schedules);
   `advertised` maps a fetched peer id to the similarity table that peer announced
   (`advertise()`), the only second-hand knowledge a peer can have (DAC's 2-hop expansion);
4. `weights(view, fetched, scores)` -> merge weights over `view.me` and the fetched peers (sum 1;
   a zero weight leaves that peer out of the merge);
5. the runtime may refuse some of those merges (its merge guard: the peer's model raised the loss
   on my own validation data) and tells the strategy with `rejected(peers)`.

The contract, which both runtimes obey: what a strategy asks of the runtime is declared once, as the
class attribute `needs` (a `Needs`): whether fetched snapshots are scored at all (step 2 is skipped
when not), the metric used when the config names none, whether it is a central-server baseline, and
the runtimes able to run it. A runtime never reads these ad hoc: it calls
`resolve_needs(name, runtime, configured_metric)`, which refuses a strategy this runtime cannot run
(`UnsupportedRuntimeError`, naming the ones it can; a node does so when its config is loaded) and
fills in the metric to score with; then it builds the strategy from its own config with
`configured_strategy`, which passes the config entries the constructor takes (`strategy_params`:
the simulator's `SimConfig` and the node's `NodeConfig` name a parameter alike, e.g. `tau`,
`stage1_rounds`, `topology`) and the resolved metric. A new strategy is a subclass with `name`,
`needs` and the constructor parameters it wants, registered with `@register`; a parameter new to
both configs is a field of each; neither runtime's code changes.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from swarm.errors import SwarmError
from swarm.strategies.view import Advertised, Candidate, PeerView, Scores

Runtime = Literal["simulator", "node"]
RUNTIMES: tuple[Runtime, ...] = ("simulator", "node")


@dataclass(frozen=True)
class Needs:
    """What a strategy asks of the runtime that drives it (see the module docstring).

    `scores`: score each fetched snapshot (a strategy that weighs without scores spares the runtime
    the work); `similarity`: the metric to score with (on the class, the default used when the config
    names none; from `resolve_needs`, the one the runtime uses); `central`: a central-server baseline
    (bytes counted as one upload + one download per client, every client ends on one shared average,
    no merge guard); `runtimes`: where it can run, `why` says what keeps it out of the others.
    """

    scores: bool = False
    similarity: str = "inverse-loss"
    central: bool = False
    runtimes: tuple[Runtime, ...] = RUNTIMES
    why: str = ""


class UnknownStrategyError(SwarmError, ValueError):
    """Asked for a strategy name that is not registered."""


class UnsupportedRuntimeError(SwarmError, ValueError):
    """A strategy was asked of a runtime that cannot run it (e.g. a central baseline on a node)."""


class Strategy:
    """Base of all strategies: sensible defaults so each strategy overrides only what it changes;
    `needs` tells the runtime what the strategy asks of it."""

    name: ClassVar[str] = "base"
    needs: ClassVar[Needs] = Needs()

    def __init__(self, neighbours: int = 5) -> None:
        if neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, got {neighbours}; pass a non-negative count")
        self.neighbours = neighbours

    def choose(self, view: PeerView, rng: random.Random) -> list[str]:
        return []

    def observe(self, view: PeerView, scores: Scores, advertised: Advertised | None = None) -> None:
        return None

    def weights(self, view: PeerView, fetched: Sequence[str], scores: Scores) -> dict[str, float]:
        return uniform_weights(view.me, fetched)

    def rejected(self, peers: Sequence[str]) -> None:
        """The runtime refused to merge `peers` (they raised the loss on my validation data): a
        strategy that learns whom to pick hears of it; the others need not."""
        return None

    def advertise(self, limit: int = 20) -> dict[str, float]:
        """The similarity table this peer would put in its announcement (at most `limit` entries)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.neighbours = int(state["neighbours"])


def uniform_weights(me: str, fetched: Sequence[str]) -> dict[str, float]:
    ids = [me, *[p for p in fetched if p != me]]
    return {p: 1.0 / len(ids) for p in ids}


def sample_weights(view: PeerView, fetched: Sequence[str]) -> dict[str, float]:
    """Weights proportional to training-set sizes (FedAvg's rule)."""
    known = view.by_id()
    sizes = {view.me: max(view.my_samples, 0)}
    for p in fetched:
        if p != view.me:
            sizes[p] = max(known[p].samples, 0) if p in known else 0
    total = sum(sizes.values())
    if total <= 0:
        return uniform_weights(view.me, fetched)
    return {p: n / total for p, n in sizes.items()}


def others(view: PeerView) -> list[Candidate]:
    return [c for c in view.candidates if c.peer_id != view.me]


def finite_scores(scores: Scores, me: str) -> dict[str, float]:
    """The scores of other peers that are numbers (a NaN or infinite score says nothing about a peer)."""
    return {p: float(s) for p, s in scores.items() if p != me and math.isfinite(float(s))}


STRATEGIES: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES[cls.name] = cls
    return cls


def factory(name: str) -> type[Strategy]:
    """The registered strategy `name`; an unknown name is an error that lists the choices."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}"
        ) from None


def runnable(runtime: Runtime) -> list[str]:
    """The registered strategies `runtime` can run, sorted."""
    return sorted(n for n, cls in STRATEGIES.items() if runtime in cls.needs.runtimes)


def resolve_needs(name: str, runtime: Runtime, similarity: str = "") -> Needs:
    """What strategy `name` needs of `runtime`, with the metric to score with: `similarity` (the
    config's choice) or, when it is empty, the strategy's default. Both runtimes call this once,
    before building anything, so a strategy the runtime cannot run is refused up front."""
    needs = factory(name).needs
    if runtime not in needs.runtimes:
        where = " or ".join(needs.runtimes)
        raise UnsupportedRuntimeError(
            f"strategy {name!r} runs in the {where} only ({needs.why}); "
            f"choose one the {runtime} runs: {', '.join(runnable(runtime))}"
        )
    return replace(needs, similarity=similarity or needs.similarity)


def strategy_params(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `settings` (a simulator or node config) that strategy `name`'s constructor takes,
    so both runtimes build a strategy from their config the same way."""
    accepted = inspect.signature(factory(name)).parameters
    return {k: v for k, v in settings.items() if k in accepted}


def configured_strategy(name: str, needs: Needs, settings: Mapping[str, Any]) -> Strategy:
    """Strategy `name` built from a runtime's config `settings`, told the metric the runtime scores
    with (`needs.similarity`, from `resolve_needs`): a strategy tuned per metric (DAC's tau) must
    agree with the runtime on it."""
    return build_strategy(name, **strategy_params(name, {**settings, "similarity": needs.similarity}))


def build_strategy(name: str, **params: Any) -> Strategy:
    """Build a registered strategy, e.g. `build_strategy("dac", neighbours=5, tau=30)`."""
    make = factory(name)
    try:
        return make(**params)
    except TypeError as exc:
        raise UnknownStrategyError(f"strategy {name!r}: bad parameters ({exc}); see its docstring") from None
