"""Per-merge provenance: which snapshots a model was merged from, at which weights, and how similar
the merger found each one.

A snapshot's meta carries it as two JSON objects in strings (docs/protocol.md, "Provenance"):
`parent_weights` (CID -> merge weight, the merger's own snapshot included, summing to 1) and
`parent_similarity` (CID -> the similarity the merger's metric gave it, neighbours it scored only).
Strings, not maps: `storage.snapshot.decode` accepts unknown meta keys with scalar values only, so a
map would make every reader that predates these keys reject the whole snapshot.

The self parent is the merger's own snapshot that went into the merge: the key of `parent_weights`
that is not in `parents` (which lists the neighbours' snapshots, as announcements always have).
A snapshot trained on without any merge names its previous one with weight 1, so following the self
parents leads back to a publisher's first snapshot.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

WEIGHTS_KEY = "parent_weights"
SIMILARITY_KEY = "parent_similarity"


class ProvenanceError(ValueError):
    """A snapshot's provenance fields are malformed (hostile or from a buggy publisher)."""


@dataclass(frozen=True)
class Provenance:
    """One merge, keyed by CID: `weights` sum to 1 over `self_cid` and the neighbours' snapshots."""

    self_cid: str  # the merger's own snapshot in the merge; "" when it was never published
    weights: dict[str, float] = field(default_factory=dict)
    similarity: dict[str, float] = field(default_factory=dict)
    round: int | None = None  # the merger's round when it merged (status only; the snapshot has its own)

    @classmethod
    def alone(cls, previous_cid: str) -> Provenance:
        """Trained on from `previous_cid` without merging anything."""
        return cls(previous_cid, {previous_cid: 1.0} if previous_cid else {})

    @classmethod
    def of_merge(cls, round_: int, me: str, self_cid: str, weights: dict[str, float], cids: dict[str, str],
                 scores: dict[str, float]) -> Provenance:
        """From a merge keyed by peer (`me` is this node): `cids` names the snapshot of each neighbour
        that was merged; the weights are renormalised over those and me, as the merge itself does."""
        kept = {p: w for p, w in weights.items() if (p == me or p in cids) and w > 0 and math.isfinite(w)}
        total = sum(kept.values())
        by_cid = {(self_cid if p == me else cids[p]): w / total for p, w in kept.items()}
        # An unpublished own model has no CID: it keeps its share of the sum, under no key.
        by_cid.pop("", None)
        similarity = {cids[p]: s for p, s in scores.items() if p in cids and math.isfinite(s)}
        return cls(self_cid, by_cid, similarity, round_)

    def meta(self) -> dict[str, str]:
        """The snapshot meta fields (none for a first snapshot, which has no parents)."""
        if not self.weights:
            return {}
        out = {WEIGHTS_KEY: json.dumps(self.weights, separators=(",", ":"))}
        if self.similarity:
            out[SIMILARITY_KEY] = json.dumps(self.similarity, separators=(",", ":"))
        return out

    def record(self) -> dict[str, Any]:
        """As status.json shows the node's last merge and its checkpoint keeps it."""
        return {"round": self.round, "self": self.self_cid, "weights": self.weights,
                "similarity": self.similarity}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Provenance:
        return cls(record["self"], dict(record["weights"]), dict(record["similarity"]), record["round"])


def read_provenance(meta: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(weights, similarity) by CID from a snapshot's meta; empty for snapshots without them. Raises
    ProvenanceError when a field is there but is not a JSON object of CID -> finite number."""
    return _cid_numbers(meta, WEIGHTS_KEY), _cid_numbers(meta, SIMILARITY_KEY)


def _cid_numbers(meta: dict[str, Any], key: str) -> dict[str, float]:
    text = meta.get(key)
    if text is None:
        return {}
    if not isinstance(text, str):
        raise ProvenanceError(f"meta[{key!r}] is a {type(text).__name__}, not a JSON string")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # deep nesting hits the parser's recursion limit
        raise ProvenanceError(f"meta[{key!r}] is not JSON: {exc}") from None
    numbers = isinstance(value, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value.values())
    if not numbers:
        raise ProvenanceError(f"meta[{key!r}] is not an object of CID -> finite number")
    return {k: float(v) for k, v in value.items()}
