"""A simulation stopped after any round and started again ends exactly as if it had never stopped."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from node.checkpoint import CheckpointError
from node.commands.simulate import Checkpoints
from storage.wire import SnapshotWire
from swarm.sim.config import SimConfig, load_config
from swarm.sim.simulator import SimResult, SimState, simulate

torch.set_num_threads(1)
FAST = dict(clients=8, rounds=6, train_samples=20, val_samples=5, test_samples=10, local_epochs=1, seed=3)
RUNS = {
    # strategy state (priors, 2-hop tables), the merge guard, best models (merged ones judged too)
    # and early stopping
    "dac": dict(strategy="dac", merge_guard=True, patience=2, explore_unknown=True, judge_merged=True),
    # the bag and the top-k memory across the stage switch and re-estimations
    "panm": dict(strategy="panm", stage1_rounds=2, reestimate_every=2),
    # the privacy accountant's steps and spent budget
    "dp": dict(strategy="random", dp_epsilon=8.0),
    # each publisher's keyframe and the bases each reader holds (the bytes it pays next)
    "topk-delta": dict(strategy="random", encoding="topk-delta"),
}


def comparable(result: SimResult) -> dict:
    record = dataclasses.asdict(result)
    record.pop("wall_s")
    for row in record["rounds"]:
        for timing in ("wall_s", "cpu_s"):
            row.pop(timing)
    return record


def stopped_after(cfg: SimConfig, round_: int, out: Path) -> SimState:
    """Run `cfg`, writing its checkpoint the way the CLI does, and return what resuming would load."""
    saver = Checkpoints(out, cfg.to_dict(), every_s=0.0)

    def offer(state: SimState) -> None:
        if state.next_round == round_:
            saver.offer(state)

    simulate(cfg, wire=SnapshotWire(cfg.encoding), on_state=offer)
    state = saver.load()
    assert state is not None and state.next_round == round_
    return state


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_resumed_run_ends_as_the_uninterrupted_run(name: str, tmp_path: Path) -> None:
    cfg = SimConfig(**{**FAST, **RUNS[name]})
    whole = simulate(cfg, wire=SnapshotWire(cfg.encoding))
    assert whole.rounds, "the run must train"
    for stop in (1, 4):
        resumed = simulate(cfg, wire=SnapshotWire(cfg.encoding),
                           resume=stopped_after(cfg, stop, tmp_path / f"stop{stop}"))
        assert comparable(resumed) == comparable(whole), f"stopped after round {stop}"


def test_the_cli_resumes_from_its_checkpoint_and_refuses_another_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = [f"{k}={v}" for k, v in {**FAST, **RUNS["dac"]}.items()]
    cfg = load_config(None, sets)
    stopped_after(cfg, 3, out)
    args = [sys.executable, "-m", "node.cli", "simulate", "--quiet", "--out", str(out)]

    other = subprocess.run([*args, *(f"--set={s}" for s in sets), "--set=seed=4"], capture_output=True,
                           text=True, timeout=120)
    assert other.returncode == 2 and "other settings (seed)" in other.stderr, other.stderr
    assert "Traceback" not in other.stderr and (out / "checkpoint.pt").exists()

    done = subprocess.run([*args, *(f"--set={s}" for s in sets)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resuming at round 3 of 6" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    whole = simulate(cfg)
    assert summary["final"]["per_client"] == whole.per_client
    assert [r["val_acc"] for r in summary["rounds"]] == [r["val_acc"] for r in whole.rounds]
    assert not (out / "checkpoint.pt").exists(), "a finished run leaves no checkpoint behind"


def test_a_checkpoint_from_before_a_setting_existed_resumes_at_its_default(tmp_path: Path) -> None:
    cfg = SimConfig(**{**FAST, **RUNS["dac"]})
    stopped_after(cfg, 2, tmp_path)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del saved["config"]["two_hop_cap"]
    torch.save(saved, tmp_path / "checkpoint.pt")
    state = Checkpoints(tmp_path, cfg.to_dict(), every_s=60.0).load()
    assert state is not None and state.next_round == 2
    capped = SimConfig(**{**FAST, **RUNS["dac"], "two_hop_cap": True})
    with pytest.raises(CheckpointError, match=r"other settings \(two_hop_cap\)"):
        Checkpoints(tmp_path, capped.to_dict(), every_s=60.0).load()


def test_a_checkpoint_from_before_kept_models_were_told_apart_resumes_not_knowing(tmp_path: Path) -> None:
    cfg = SimConfig(**{**FAST, **RUNS["dac"], "patience": 0, "rounds": 3})
    stopped_after(cfg, 2, tmp_path)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del saved["state"]["kept_merged"]
    torch.save(saved, tmp_path / "checkpoint.pt")
    state = Checkpoints(tmp_path, cfg.to_dict(), every_s=60.0).load()
    assert state is not None
    whole = simulate(cfg, wire=SnapshotWire(cfg.encoding))
    resumed = simulate(cfg, wire=SnapshotWire(cfg.encoding), resume=state)
    assert resumed.per_client == whole.per_client
    for old, new, round_ in zip(resumed.kept_merged, whole.kept_merged, whole.best_rounds, strict=True):
        assert old == (new if round_ == 2 else None)


def test_an_unreadable_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="delete it to start the run over"):
        Checkpoints(tmp_path, SimConfig(**FAST).to_dict(), every_s=60.0).load()
