"""What the checkpoint scripts here share: a run's saved state and the clients, model and engine its
settings build (the same partition and data the run trained on)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from swarm.sim.config import SimConfig
from swarm.sim.simulator import Setup, build_setup


def load(checkpoint: Path) -> tuple[dict[str, Any], Setup]:
    torch.set_num_threads(1)
    state = torch.load(checkpoint, weights_only=False)["state"]
    keys = {f.name for f in dataclasses.fields(SimConfig)} - {"engine"}  # the summary names its class
    cfg = SimConfig(**{k: v for k, v in state["result"]["config"].items() if k in keys})
    return state, build_setup(cfg)
