"""Seconds spent per phase of a node's round: the round event carries them (bench/round.py reads them)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class Timer:
    """`with timer("fetch"): ...` adds the block's duration to phase "fetch" of the current round."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def reset(self) -> None:
        self.spent = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent[phase] = self.spent.get(phase, 0.0) + time.perf_counter() - started
