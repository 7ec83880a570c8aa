"""The simulator and `swarm-node simulate` on sklearn digits (seconds)."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from swarm.sim import grid
from swarm.sim.config import ConfigError, SimConfig, load_config
from swarm.sim.report import write_outputs
from swarm.sim.simulator import purity_by_cluster, simulate
from swarm.sim.wire import RawWire
from swarm.similarity import SIMILARITIES
from swarm.strategies import STRATEGIES

torch.set_num_threads(1)
FAST = dict(clients=8, rounds=3, train_samples=20, val_samples=5, test_samples=10, local_epochs=1)
# The collaboration setting: 20 clients, 25 training samples each, 20 rounds. Margins below were
# checked on seeds 0-4 (dac - local >= 0.057, purity dac - random >= 0.12); the test runs seed 0.
COLLAB = dict(
    clients=20,
    rounds=20,
    train_samples=25,
    val_samples=10,
    test_samples=30,
    lr=3e-3,
    partition="rotation",
    seed=0,
)


def tail(result, key: str) -> float:
    return statistics.fmean(r[key] for r in result.rounds[-3:])


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_runs(strategy: str) -> None:
    result = simulate(SimConfig(strategy=strategy, stage1_rounds=1, reestimate_every=1, **FAST))
    assert len(result.rounds) == 3 and len(result.per_client) == 8
    assert all(0.0 <= a <= 1.0 for a in result.per_client)
    assert (result.bytes_sent_total == 0) == (strategy == "local")


@pytest.mark.parametrize("metric", sorted(SIMILARITIES))
def test_dac_runs_with_every_metric(metric: str) -> None:
    result = simulate(SimConfig(strategy="dac", similarity=metric, aggregate="similarity", **FAST))
    assert result.config["similarity"] == metric and result.rounds[-1]["purity"] is not None


def test_same_seed_same_run_other_seed_other_run() -> None:
    a, b = (simulate(SimConfig(strategy="dac", **FAST)) for _ in range(2))
    c = simulate(SimConfig(strategy="dac", **{**FAST, "seed": 1}))
    timing = ("wall_s", "cpu_s")
    strip = [{k: v for k, v in r.items() if k not in timing} for r in a.rounds]
    assert strip == [{k: v for k, v in r.items() if k not in timing} for r in b.rounds]
    assert a.per_client != c.per_client


def test_dac_beats_local_and_picks_purer_neighbours_than_random() -> None:
    runs = {s: simulate(SimConfig(strategy=s, **COLLAB)) for s in ("local", "random", "dac")}
    assert tail(runs["dac"], "mean_acc") > tail(runs["local"], "mean_acc") + 0.05
    assert tail(runs["dac"], "purity") > tail(runs["random"], "purity") + 0.10


def test_oracle_is_pure_and_fedavg_is_one_model() -> None:
    oracle = simulate(SimConfig(strategy="oracle", partition="label-shift", **FAST))
    assert all(r["purity"] == 1.0 and set(r["cluster_purity"]) == {1.0} for r in oracle.rounds)
    fed = simulate(SimConfig(strategy="fedavg", partition="iid", **FAST))
    model_bytes = fed.rounds[0]["bytes_sent"] / (2 * 8)
    assert model_bytes == 4 * sum(p.numel() for p in torch.nn.Linear(64, 64).parameters()) + 4 * 650


def test_injected_wire_is_used_and_a_nan_peer_is_dropped() -> None:
    class Poisoned(RawWire):
        def send(self, peer: int, state: dict, round: int) -> dict:
            super().send(peer, state, round)
            return {k: torch.full_like(v, float("nan")) for k, v in state.items()}

    result = simulate(SimConfig(strategy="random", **FAST), wire=Poisoned(size=lambda state: 7))
    clean = simulate(SimConfig(strategy="local", **FAST))
    assert result.rounds[0]["bytes_sent"] == 7 * 8 * 5
    assert result.per_client == clean.per_client  # every fetched snapshot dropped: as if alone


def test_config_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[simulate]\nstrategy = "panm"\nrounds = 7\ntwo_hop = false\n')
    cfg = load_config(path, ["rounds=2", "tau=5"])
    assert (cfg.strategy, cfg.rounds, cfg.tau, cfg.two_hop) == ("panm", 2, 5.0, False)
    with pytest.raises(ConfigError, match="unknown config key 'rnds'"):
        load_config(None, ["rnds=2"])
    with pytest.raises(ConfigError, match="rounds must be a int"):
        load_config(None, ["rounds=many"])


def test_shipped_configs_parse() -> None:
    configs = sorted((Path(__file__).parents[2] / "swarm" / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        cfg = load_config(path)
        assert cfg.strategy in STRATEGIES


def test_cli_writes_the_summary_contract(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [sys.executable, "-m", "node.cli", "simulate", "--quiet", "--out", str(out)]
    sets = [f"--set={k}={v}" for k, v in {**FAST, "strategy": "dac"}.items()]
    done = subprocess.run(args + sets, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"config", "final", "rounds", "bytes_sent_total", "wall_s"}
    assert {"mean_acc", "std_acc", "min_acc", "max_acc", "per_client"} <= set(summary["final"])
    assert summary["final"]["mean_acc"] == pytest.approx(statistics.fmean(summary["final"]["per_client"]))
    assert all(0 <= r < 3 for r in summary["final"]["best_round"])
    last = summary["final"]["last_models"]
    assert set(last) == {"mean_acc", "std_acc", "min_acc", "max_acc", "per_client"}
    assert len(last["per_client"]) == 8
    assert last["mean_acc"] == pytest.approx(statistics.fmean(last["per_client"]))
    assert summary["bytes_sent_total"] == sum(r["bytes_sent"] for r in summary["rounds"])
    with open(out / "rounds.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    cpu = [r["cpu_s"] for r in summary["rounds"]]
    assert all(c > 0 for c in cpu)
    header, _, row = grid.table(tmp_path).splitlines()
    assert header.endswith("| s/round | CPU s/round |") and row.endswith(f"| {statistics.fmean(cpu):.1f} |")
    assert (out / "accuracy.png").stat().st_size > 1000 and (out / "clients.png").stat().st_size > 1000
    bad = subprocess.run([*args, "--set", "strategy=nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "choose one of" in bad.stderr and "Traceback" not in bad.stderr


def test_versus_counts_the_clients_below_the_same_client_of_a_reference(tmp_path: Path) -> None:
    for name, strategy in (("local", "local"), ("random", "random")):
        for seed in (0, 1):
            write_outputs(simulate(SimConfig(**{**FAST, "strategy": strategy, "seed": seed})),
                          tmp_path / f"{name}-s{seed}")
    per_client = {d.name: json.loads((d / "summary.json").read_text())["final"]["per_client"]
                  for d in tmp_path.iterdir()}
    gains = {s: [a - b for a, b in zip(per_client[f"random-s{s}"], per_client[f"local-s{s}"], strict=True)]
             for s in (0, 1)}
    header, _, local, random_ = grid.versus(tmp_path, ["local"]).splitlines()
    assert header.startswith("| variant | seeds | below local (per seed) |")
    assert local == "| local | 0 1 | - | - | - |"
    below = " / ".join(str(sum(g < 0 for g in gains[s])) for s in (0, 1))
    assert random_ == (f"| random | 0 1 | {below} | {min(gains[0] + gains[1]):+.3f} "
                       f"| {statistics.fmean(gains[0] + gains[1]):+.3f} |")
    with pytest.raises(ValueError, match="no runs of oracle"):
        grid.versus(tmp_path, ["oracle"])
    write_outputs(simulate(SimConfig(**{**FAST, "clients": 4, "strategy": "local"})), tmp_path / "few-s0")
    with pytest.raises(ValueError, match="few and local have different numbers of clients"):
        grid.versus(tmp_path, ["local"])


def test_without_a_validation_split_the_last_models_are_tested() -> None:
    result = simulate(SimConfig(**{**FAST, "val_samples": 0, "strategy": "random"}))
    assert statistics.fmean(result.per_client) == pytest.approx(result.rounds[-1]["mean_acc"])
    assert result.best_rounds == [2] * 8
    assert result.last_per_client == result.per_client
    assert result.kept_merged == [True] * 8  # each client merged its neighbours in the last round
    # FedAvg hands every client the server's average, not only the client that computed it
    fed = simulate(SimConfig(**{**FAST, "val_samples": 0, "strategy": "fedavg", "partition": "iid"}))
    assert fed.kept_merged == [True] * 8
    alone = simulate(SimConfig(**{**FAST, "val_samples": 0, "strategy": "local"}))
    assert alone.kept_merged == [False] * 8


def test_the_best_model_on_validation_is_the_one_tested() -> None:
    # Tiny shards, many epochs, a large step: the models overfit, so the best validation loss comes
    # before the last round for some clients, and their tested model is not the last one.
    cfg = SimConfig(**{**FAST, "rounds": 8, "local_epochs": 5, "lr": 0.05, "strategy": "local"})
    result = simulate(cfg)
    assert any(r < 7 for r in result.best_rounds), result.best_rounds
    assert statistics.fmean(result.per_client) != pytest.approx(result.rounds[-1]["mean_acc"])
    # the models held at the end are tested too: the last round's test accuracy, client for client
    assert statistics.fmean(result.last_per_client) == pytest.approx(result.rounds[-1]["mean_acc"])
    assert min(result.last_per_client) == pytest.approx(result.rounds[-1]["min_acc"])
    for i, round_ in enumerate(result.best_rounds):
        if round_ == 7:
            assert result.last_per_client[i] == result.per_client[i], i
    early = simulate(SimConfig(**{**FAST, "rounds": 8, "local_epochs": 5, "lr": 0.05, "strategy": "local",
                                  "patience": 1}))
    assert len(early.rounds) < 8 or early.rounds[-1]["active"] < 8  # early stopping stopped clients


def test_keep_last_reports_the_models_held_at_the_end() -> None:
    overfit = {**FAST, "rounds": 8, "local_epochs": 5, "lr": 0.05, "strategy": "local"}
    best, last = (simulate(SimConfig(**overfit, keep=k)) for k in ("best", "last"))
    assert [r["train_loss"] for r in best.rounds] == [r["train_loss"] for r in last.rounds]
    assert last.per_client == last.last_per_client == best.last_per_client != best.per_client
    assert last.best_rounds == [7] * 8 and last.kept_merged == [False] * 8
    # early stopping still judges by the validation loss; a stopped client's last model is from its stop
    stopped = simulate(SimConfig(**overfit, keep="last", patience=1))
    judged = simulate(SimConfig(**overfit, patience=1))
    assert stopped.best_rounds == [min(r + 1, 7) for r in judged.best_rounds] != [7] * 8
    # with neighbours, a client's last model is a merged one where the last round's merge changed it
    mixed = simulate(SimConfig(**{**COLLAB, "rounds": 4, "strategy": "random", "merge_guard": False,
                                  "keep": "last"}))
    assert mixed.kept_merged == [True] * 20
    with pytest.raises(ConfigError, match="keep must be one of best, last"):
        simulate(SimConfig(**FAST, keep="newest"))


def test_judging_merged_models_changes_which_model_is_kept_not_how_clients_train() -> None:
    cfg = {**COLLAB, "rounds": 8, "strategy": "dac"}
    judged, trained_only = (simulate(SimConfig(**cfg, judge_merged=j)) for j in (True, False))
    assert [r["train_loss"] for r in judged.rounds] == [r["train_loss"] for r in trained_only.rounds]
    assert judged.per_client != trained_only.per_client
    assert any(judged.kept_merged) and not any(trained_only.kept_merged)
    # A trained model that beat every merged one also beat every trained one: the same model is kept.
    for i, merged in enumerate(judged.kept_merged):
        if not merged:
            assert judged.best_rounds[i] == trained_only.best_rounds[i], i
            assert judged.per_client[i] == trained_only.per_client[i], i


def test_every_fedavg_client_merges_and_judges_the_servers_average() -> None:
    fed = simulate(SimConfig(**{**FAST, "strategy": "fedavg", "partition": "rotation"}))
    assert set(fed.clusters) == {0, 1}
    # each client averages with all others, as it chose them: the merged neighbours are the chosen ones
    assert all(r["merged_purity"] == pytest.approx(r["purity"]) for r in fed.rounds)
    assert any(fed.kept_merged[1:]), "clients after the first were never offered the average"


def test_purity_per_cluster_counts_each_clusters_own_choices() -> None:
    clusters = [0, 0, 1, 1, 2]
    chosen = {0: [1, 2], 1: [0], 2: [3], 3: [], 4: []}  # cluster 2 chose nobody
    assert purity_by_cluster(chosen, clusters) == [pytest.approx(2 / 3), 1.0, None]
