"""Similarity metrics between my weights and a peer's (a registry: a new metric is one function).

Every metric takes flat weight vectors (`flatten(state_dict)`, or stacked `[M, P]` rows to score M
pairs at once) plus a `SimilarityInputs` with what some metrics need, and returns a score per pair
(higher = more similar). `similarity(name)` returns a callable that also accepts state dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from swarm.errors import SwarmError

StateDict = Mapping[str, torch.Tensor]
Weights = torch.Tensor | StateDict


def flatten(state: Weights) -> torch.Tensor:
    """Floating-point entries of a state dict, in sorted key order, as one fp32 vector."""
    if isinstance(state, torch.Tensor):
        return state.float()
    return torch.cat(
        [state[k].detach().reshape(-1).float() for k in sorted(state) if state[k].is_floating_point()]
    )


@dataclass
class SimilarityInputs:
    """Optional inputs: `init` = the swarm's common initial weights; `*_prev` = the weights the
    latest local training started from; `loss_of(theirs)` = loss of the peer's weights on MY training
    data and `own_loss()` = loss of my weights on it (the runtime provides both, it owns the model and
    data; for stacked rows, one loss per row); `alpha` weighs PANM's two cosines."""

    init: Weights | None = None
    mine_prev: Weights | None = None
    theirs_prev: Weights | None = None
    loss_of: Callable[[torch.Tensor], torch.Tensor | float] | None = None
    own_loss: Callable[[], torch.Tensor | float] | None = None
    alpha: float = 0.5


class UnknownSimilarityError(SwarmError, ValueError):
    """Asked for a metric name that is not registered."""


class MissingInputError(SwarmError, ValueError):
    """A metric needs an input (e.g. `init`, `loss_of`) the caller did not provide."""


def _need(value: Weights | None, what: str, metric: str) -> torch.Tensor:
    if value is None:
        raise MissingInputError(f"similarity {metric!r} needs {what}; pass it in SimilarityInputs")
    return flatten(value)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12)


def inverse_loss(mine: torch.Tensor, theirs: torch.Tensor, ctx: SimilarityInputs) -> torch.Tensor:
    """1 / loss of the peer's model on my training data (DAC)."""
    if ctx.loss_of is None:
        raise MissingInputError("similarity 'inverse-loss' needs loss_of; pass it in SimilarityInputs")
    loss = torch.as_tensor(ctx.loss_of(theirs), dtype=torch.float32)
    return 1.0 / loss.clamp_min(1e-8)


def loss_ratio(mine: torch.Tensor, theirs: torch.Tensor, ctx: SimilarityInputs) -> torch.Tensor:
    """My loss / the peer's loss, both on my training data: 1 = the peer's model fits my data as
    well as mine does. 1/loss grows as every model learns, so a score DAC stored 30 rounds ago looks
    worse than one measured now, and a peer draws mostly the few it measured last; the ratio divides
    that drift out."""
    if ctx.loss_of is None or ctx.own_loss is None:
        raise MissingInputError(
            "similarity 'loss-ratio' needs loss_of and own_loss; pass them in SimilarityInputs"
        )
    own = torch.as_tensor(ctx.own_loss(), dtype=torch.float32)
    loss = torch.as_tensor(ctx.loss_of(theirs), dtype=torch.float32)
    return own / loss.clamp_min(1e-8)


def cosine_weights(mine: torch.Tensor, theirs: torch.Tensor, ctx: SimilarityInputs) -> torch.Tensor:
    return _cos(theirs, mine)


def cosine_updates(mine: torch.Tensor, theirs: torch.Tensor, ctx: SimilarityInputs) -> torch.Tensor:
    """Cosine of the updates w - w_init (all peers start from the swarm's common init)."""
    init = _need(ctx.init, "init", "cosine-updates")
    return _cos(theirs - init, mine - init)


def l2(mine: torch.Tensor, theirs: torch.Tensor, ctx: SimilarityInputs) -> torch.Tensor:
    return 1.0 / torch.linalg.vector_norm(theirs - mine, dim=-1).clamp_min(1e-12)


def panm(mine: torch.Tensor, theirs: torch.Tensor, ctx: SimilarityInputs) -> torch.Tensor:
    """alpha * cos(current updates) + (1 - alpha) * cos(accumulated updates w - w_init) (PANM)."""
    accumulated = cosine_updates(mine, theirs, ctx)
    if ctx.mine_prev is None or ctx.theirs_prev is None:
        return accumulated
    current = _cos(theirs - flatten(ctx.theirs_prev), mine - flatten(ctx.mine_prev))
    return ctx.alpha * current + (1 - ctx.alpha) * accumulated


SIMILARITIES: dict[str, Callable[[torch.Tensor, torch.Tensor, SimilarityInputs], torch.Tensor]] = {
    "inverse-loss": inverse_loss,
    "loss-ratio": loss_ratio,
    "cosine-weights": cosine_weights,
    "cosine-updates": cosine_updates,
    "l2": l2,
    "panm": panm,
}

# The metrics that read `mine_prev` / `theirs_prev`: a runtime keeps peers' earlier models for them only.
READS_PREVIOUS = frozenset({"panm"})


def check_name(name: str) -> str:
    if name not in SIMILARITIES:
        raise UnknownSimilarityError(f"unknown similarity {name!r}; choose one of {', '.join(SIMILARITIES)}")
    return name


def similarity(name: str) -> Callable[..., torch.Tensor | float]:
    """`similarity("cosine-updates")(mine, theirs, SimilarityInputs(init=...))` -> float for one pair
    of state dicts / vectors, or a `[M]` tensor for stacked `[M, P]` rows."""
    metric = SIMILARITIES[check_name(name)]

    def score(mine: Weights, theirs: Weights, ctx: SimilarityInputs | None = None) -> torch.Tensor | float:
        with torch.no_grad():
            out = metric(flatten(mine), flatten(theirs), ctx or SimilarityInputs())
        return float(out) if out.dim() == 0 else out

    return score
