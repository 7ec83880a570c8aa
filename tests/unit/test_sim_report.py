"""The comparison plot's curves: one per variant (the run directory's name without its seed), the
seeds of a variant averaged, never two variants of one strategy merged into one line, no two lines
drawn alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarm.sim.report import compare, line_styles, mean_curves


def run(root: Path, name: str, strategy: str, val_accs: list[float]) -> Path:
    d = root / name
    d.mkdir()
    rounds = [{"round": t, "mean_acc": None, "val_acc": a} for t, a in enumerate(val_accs)]
    (d / "summary.json").write_text(json.dumps({"config": {"strategy": strategy}, "rounds": rounds}))
    return d


def test_variants_of_one_strategy_keep_their_own_lines_and_seeds_average(tmp_path: Path) -> None:
    dirs = [run(tmp_path, "local-s1", "local", [0.5, 0.6, 0.7]),
            run(tmp_path, "local-fast-s1", "local", [0.6, 0.7]),
            run(tmp_path, "dac-inverse-loss-s1", "dac", [0.4, 0.8, 0.9]),
            run(tmp_path, "dac-inverse-loss-s2", "dac", [0.6, 0.6])]
    curves, split = mean_curves(dirs)
    assert split == "validation"
    assert set(curves) == {"local", "local-fast", "dac-inverse-loss"}
    assert curves["local"] == pytest.approx([0.5, 0.6, 0.7])
    assert curves["local-fast"] == pytest.approx([0.6, 0.7])
    assert curves["dac-inverse-loss"] == pytest.approx([0.5, 0.7])  # the mean of two seeds, as long as both


def test_no_two_lines_look_alike_past_the_tenth_colour(tmp_path: Path) -> None:
    assert len(set(line_styles(30))) == 30
    assert line_styles(11)[10] == ("C0", "--")  # the first colour again, dashed
    dirs = [run(tmp_path, f"variant{i}-s1", "dac", [0.5, 0.6]) for i in range(11)]
    compare(tmp_path / "plot.png", dirs)
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")
