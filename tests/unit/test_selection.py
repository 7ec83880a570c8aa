"""The merge guard and best-validation selection (swarm/selection.py), on toy loss functions."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from swarm.selection import BestModel, guard

# Each peer's "model" is a point; the loss of a merge is the distance of the weighted mean to the
# validation optimum at 0: a neighbour on my side helps, one far away on the other side hurts.
POINTS = {"me": 1.0, "near": 0.0, "also": 0.2, "far": 9.0}


def loss_of(weights: Mapping[str, float]) -> float:
    return abs(sum(POINTS[p] * w for p, w in weights.items()))


def test_guard_keeps_helpful_neighbours_and_refuses_a_harmful_one() -> None:
    weights = {"me": 0.25, "near": 0.25, "also": 0.25, "far": 0.25}
    verdict = guard("me", weights, own_loss=1.0, loss_of=loss_of)
    assert verdict.rejected == ["far"]
    assert verdict.weights == pytest.approx({"me": 1 / 3, "near": 1 / 3, "also": 1 / 3})
    assert loss_of(verdict.weights) == pytest.approx(0.4)


def test_guard_with_only_harmful_neighbours_keeps_the_own_model() -> None:
    verdict = guard("me", {"me": 0.5, "far": 0.5}, own_loss=1.0, loss_of=loss_of)
    assert verdict.weights == {"me": 1.0} and verdict.rejected == ["far"]


def test_guard_falls_back_to_the_best_pair_when_all_together_is_worse() -> None:
    # Each neighbour alone helps, together they overshoot the optimum.
    points = {"me": 1.0, "a": -0.9, "b": -0.9}

    def overshoot(weights: Mapping[str, float]) -> float:
        return abs(sum(points[p] * w for p, w in weights.items()) - 0.0) + (0.9 if len(weights) == 3 else 0.0)

    verdict = guard("me", {"me": 1 / 3, "a": 1 / 3, "b": 1 / 3}, own_loss=1.0, loss_of=overshoot)
    assert verdict.rejected == []
    assert set(verdict.weights) == {"me", "a"} and verdict.weights["me"] == pytest.approx(0.5)


def test_guard_refuses_a_merge_whose_loss_is_not_a_number() -> None:
    verdict = guard("me", {"me": 0.5, "x": 0.5}, own_loss=1.0, loss_of=lambda w: math.nan)
    assert verdict.weights == {"me": 1.0} and verdict.rejected == ["x"]


def test_best_model_keeps_the_lowest_loss_and_stops_after_patience() -> None:
    best = BestModel(patience=2)
    assert best.offer(1.0, 0) and not best.offer(1.5, 1) and best.offer(0.5, 2)
    assert (best.loss, best.round) == (0.5, 2)
    assert not best.offer(0.7, 3) and not best.stalled(3)
    assert not best.offer(0.6, 4) and best.stalled(4)
    assert not BestModel(patience=0).stalled(100)


def test_guard_allows_a_small_rise_of_the_loss_but_not_a_large_one() -> None:
    # Averaging costs some progress at first even within one cluster: a 5% rise passes, 30% does not.
    losses = {"same": 1.05, "other": 1.3}
    verdict = guard("me", {"me": 0.5, "same": 0.25, "other": 0.25}, own_loss=1.0,
                    loss_of=lambda w: max((losses[p] for p in w if p != "me"), default=1.0))
    assert verdict.rejected == ["other"] and set(verdict.weights) == {"me", "same"}
    strict = guard("me", {"me": 0.5, "same": 0.5}, own_loss=1.0, loss_of=lambda w: 1.05, tolerance=0.0)
    assert strict.weights == {"me": 1.0}


def test_nothing_is_merged_or_refused_in_the_first_round() -> None:
    verdict = guard("me", {"me": 0.5, "near": 0.5}, own_loss=1.0, loss_of=loss_of, rounds_trained=1)
    assert verdict.weights == {"me": 1.0} and verdict.rejected == []
    assert guard("me", {"me": 0.5, "near": 0.5}, own_loss=1.0, loss_of=loss_of, rounds_trained=2).weights == {
        "me": 0.5, "near": 0.5}
