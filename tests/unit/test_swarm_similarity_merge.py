"""Similarity metrics on state dicts and stacked rows; robust merge."""

from __future__ import annotations

import math

import pytest
import torch

from swarm.merge import MergeError, merge
from swarm.similarity import (
    SIMILARITIES,
    MissingInputError,
    SimilarityInputs,
    UnknownSimilarityError,
    flatten,
    similarity,
)


def sd(*values: float) -> dict[str, torch.Tensor]:
    return {
        "b": torch.tensor(values[2:], dtype=torch.float32),
        "a": torch.tensor(values[:2], dtype=torch.float32),
    }


def test_flatten_sorted_keys_and_skips_integers() -> None:
    state = {"z": torch.tensor([1.0]), "a": torch.tensor([2.0, 3.0]), "n": torch.tensor(4)}
    assert flatten(state).tolist() == [2.0, 3.0, 1.0]


def test_metrics_on_state_dicts() -> None:
    mine, theirs, init = sd(1, 0, 0), sd(2, 0, 0), sd(1, 1, 0)
    assert similarity("cosine-weights")(mine, theirs) == pytest.approx(1.0)
    assert similarity("cosine-updates")(mine, theirs, SimilarityInputs(init=init)) == pytest.approx(
        1 / math.sqrt(2)
    )
    assert similarity("l2")(mine, theirs) == pytest.approx(1.0)
    ctx = SimilarityInputs(loss_of=lambda w: float(w.sum()))
    assert similarity("inverse-loss")(mine, theirs, ctx) == pytest.approx(0.5)
    ctx = SimilarityInputs(loss_of=lambda w: float(w.sum()), own_loss=lambda: 0.5)
    assert similarity("loss-ratio")(mine, theirs, ctx) == pytest.approx(0.25)
    ctx = SimilarityInputs(init=init, mine_prev=sd(0, 0, 0), theirs_prev=sd(0, 0, 1), alpha=0.25)
    expected = 0.25 * (2 / math.sqrt(5)) + 0.75 * (1 / math.sqrt(2))
    assert similarity("panm")(mine, theirs, ctx) == pytest.approx(expected)


@pytest.mark.parametrize("name", sorted(SIMILARITIES))
def test_stacked_rows_equal_single_pairs(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    mine, theirs, init = (torch.randn(4, 7, generator=g) for _ in range(3))
    def ctx(rows: torch.Tensor) -> SimilarityInputs:
        return SimilarityInputs(init=init[0], mine_prev=init[1], theirs_prev=init[2],
                                loss_of=lambda w: w.abs().sum(dim=-1),
                                own_loss=lambda: rows.abs().sum(dim=-1))

    stacked = similarity(name)(mine, theirs, ctx(mine))
    single = [similarity(name)(mine[k], theirs[k], ctx(mine[k])) for k in range(4)]
    assert stacked.tolist() == pytest.approx(single, rel=1e-5)


def test_similarity_errors_are_specific() -> None:
    with pytest.raises(UnknownSimilarityError, match="choose one of"):
        similarity("dot")
    with pytest.raises(MissingInputError, match="init"):
        similarity("cosine-updates")(sd(1, 2, 3), sd(1, 2, 3))
    with pytest.raises(MissingInputError, match="own_loss"):
        similarity("loss-ratio")(sd(1, 2, 3), sd(1, 2, 3), SimilarityInputs(loss_of=lambda w: 1.0))


def test_weighted_mean_renormalises() -> None:
    out = merge({"a": sd(0, 0, 0), "b": sd(3, 3, 3)}, {"a": 2.0, "b": 1.0})
    assert flatten(out).tolist() == pytest.approx([1.0, 1.0, 1.0])


@pytest.mark.parametrize("method", ["median", "trimmed-mean"])
@pytest.mark.parametrize("bad", [float("nan"), 1e12])
def test_robust_merge_ignores_nan_or_huge_peer(method: str, bad: float) -> None:
    states = {f"p{i}": sd(1 + 0.1 * i, 1, 1) for i in range(4)} | {"evil": sd(bad, bad, bad)}
    out = flatten(merge(states, {p: 1.0 for p in states}, method=method, trim=0.2))
    assert torch.isfinite(out).all()
    honest_centre = 1.15 if method == "median" else 1.2  # trimmed mean keeps p1..p3
    assert out.tolist() == pytest.approx([honest_centre, 1.0, 1.0], abs=0.06)


def test_mean_drops_nan_peer_and_clipping_bounds_huge_peer(caplog: pytest.LogCaptureFixture) -> None:
    mine = sd(0, 0, 0)
    states = {"me": mine, "nan": sd(float("nan"), 0, 0), "huge": sd(1e9, 0, 0)}
    out = flatten(merge(states, {"me": 0.5, "nan": 0.25, "huge": 0.5}, clip_norm=1.0, reference=mine))
    assert out.tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert "dropped nan: non-finite values" in caplog.text


def test_merge_errors() -> None:
    with pytest.raises(MergeError, match="no usable state"):
        merge({"x": sd(float("inf"), 0, 0)}, {"x": 1.0})
    with pytest.raises(MergeError, match="reference"):
        merge({"x": sd(0, 0, 0)}, {"x": 1.0}, clip_norm=1.0)
    with pytest.raises(MergeError, match="choose one of"):
        merge({"x": sd(0, 0, 0)}, {"x": 1.0}, method="mode")
