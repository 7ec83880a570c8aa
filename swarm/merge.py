"""Merging peers' weights: weighted mean, or robust coordinate-wise median / trimmed mean, with
optional norm clipping of each peer's difference to a reference. Non-finite snapshots are dropped
(with a one-line log naming the peer and the reason) before anything is combined."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch

from swarm.errors import SwarmError
from swarm.similarity import StateDict, flatten

log = logging.getLogger(__name__)
METHODS = ("mean", "median", "trimmed-mean")


class MergeError(SwarmError, ValueError):
    """Nothing usable to merge, or a bad merge option."""


def short(peer: str) -> str:
    return peer if len(peer) <= 12 else f"{peer[:6]}…{peer[-4:]}"


def rejection(state: StateDict, reference: StateDict | None) -> str | None:
    """Why a peer's state cannot be merged, or None if it can."""
    if reference is not None and set(state) != set(reference):
        return "different parameter names than mine"
    if reference is not None and any(state[k].shape != reference[k].shape for k in state):
        return "different parameter shapes than mine"
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        return "non-finite values"
    return None


def merge(
    states: Mapping[str, StateDict],
    weights: Mapping[str, float],
    *,
    method: str = "mean",
    clip_norm: float | None = None,
    reference: StateDict | None = None,
    trim: float = 0.2,
) -> dict[str, torch.Tensor]:
    """Combine `states` (peer id -> state dict) with `weights` (peer id -> weight; renormalised over
    the states kept). `median` / `trimmed-mean` ignore weights (robust statistics per coordinate);
    `clip_norm` clips each ||state - reference|| to at most `clip_norm` first (needs `reference`)."""
    if method not in METHODS:
        raise MergeError(f"unknown merge method {method!r}; choose one of {', '.join(METHODS)}")
    if clip_norm is not None and reference is None:
        raise MergeError("clip_norm needs a reference state (usually the merging peer's own weights)")
    kept: dict[str, StateDict] = {}
    for peer, state in states.items():
        reason = rejection(state, reference)
        if reason is None and weights.get(peer, 0.0) > 0 and math.isfinite(weights.get(peer, 0.0)):
            kept[peer] = state
        elif reason is not None:
            log.warning("merge: dropped %s: %s", short(peer), reason)
    if not kept:
        raise MergeError("no usable state to merge; keep the current weights")
    if clip_norm is not None and reference is not None:  # checked above: clip_norm comes with a reference
        kept = {p: clip(s, reference, clip_norm) for p, s in kept.items()}
    total = sum(weights[p] for p in kept)
    w = torch.tensor([weights[p] / total for p in kept], dtype=torch.float64)
    template = next(iter(kept.values()))
    out: dict[str, torch.Tensor] = {}
    for key, value in template.items():
        if not value.is_floating_point():
            out[key] = (reference or template)[key].clone()
            continue
        stack = torch.stack([kept[p][key].double() for p in kept])
        out[key] = combine(stack, w, method, trim).to(value.dtype)
    return out


def combine(stack: torch.Tensor, w: torch.Tensor, method: str, trim: float) -> torch.Tensor:
    if method == "mean":
        return torch.tensordot(w, stack, dims=1)
    n = stack.shape[0]
    ordered = stack.sort(dim=0).values
    if method == "median":
        return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    cut = math.floor(trim * n)
    return ordered[cut : n - cut].mean(dim=0)


def clip(state: StateDict, reference: StateDict, max_norm: float) -> dict[str, torch.Tensor]:
    diff = flatten(state) - flatten(reference)
    scale = min(1.0, max_norm / max(float(torch.linalg.vector_norm(diff)), 1e-12))
    return {
        k: (reference[k] + (v - reference[k]) * scale) if v.is_floating_point() else v
        for k, v in state.items()
    }
