"""Fuzzing in CI: bench/fuzz.py's targets with a few hundred hypothesis inputs each (the benchmark run
feeds 10,000 per target). Only the documented exception may escape; parsed inputs keep their invariants."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.config import ConfigError, load_config

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    sys.path.insert(0, str(BENCH))  # bench/ is scripts, not a package
    try:
        module = importlib.import_module("fuzz")
    finally:
        sys.path.remove(str(BENCH))
    yield module, module.Fuzz(tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("target", ["announcement", "snapshot", "config-file", "config-env"])
def test_only_documented_exceptions_escape(fuzz: Any, target: str) -> None:
    module, targets = fuzz
    tally = module.run_hypothesis(targets, target, inputs=300, seed=1)
    assert tally.inputs >= 300
    # The generator reaches both sides: some mutated inputs still parse, most are refused for a reason.
    assert tally.accepted > 0 and len(tally.rejected) >= 5, tally
    assert tally.slowest_ms < module.DEADLINE_MS


def test_seeds_parse_so_mutations_start_from_valid_input(fuzz: Any) -> None:
    _, targets = fuzz
    for name, seeds in targets.seeds.items():
        if name != "announcement":  # the validator remembers the seed: a second look is a replay
            assert all(targets.run(name, seed) == "accepted" for seed in seeds), name


@pytest.mark.parametrize(("content", "message"), [
    (b"\x80\xff", "codec can't decode"),  # was a UnicodeDecodeError escaping settings_from_toml
    (b"lr = nan\n", "not a finite number"),
    (b"round_interval_s = inf\n", "not a finite number"),
    (b"clients = 0\n", "at least 1"),
    (b"client = inf\n", "not a valid int"),  # was an OverflowError escaping _coerce
    (b"rounds = 2.5\n", "not a valid int"),
    (b"batch_size = -3\n", "at least 1"),
    (b"fetch_timeout_s = 0\n", "greater than 0"),
    (b"clip_norm = -1.0\n", "0 or more"),
    (b'data_dir = "a\\u0000b"\n', "NUL"),
])
def test_config_file_defects_found_by_fuzzing_are_config_errors(tmp_path: Path, content: bytes,
                                                                 message: str) -> None:
    path = tmp_path / "node.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})
