"""The publishing side of a node's round as far as a merge is concerned, for unit tests that drive
`node.merging.Merging` without IPFS or gossip: it hears of each merge, as `Publisher.note_merge` does."""

from __future__ import annotations

from node.provenance import Provenance


class NotesMerges:
    def __init__(self) -> None:
        self.merged: list[dict[str, str]] = []

    def note_merge(self, round_: int, weights: dict[str, float], cids: dict[str, str],
                   scores: dict[str, float]) -> Provenance:
        self.merged.append(cids)
        return Provenance.of_merge(round_, "me", "", weights, cids, scores)
