"""The warning before a DP-SGD run that cannot learn (swarm.dp_advice): the rule on plans the accountant
really makes, the node's plan, and the CLI on the issue's command and on a setting that learns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from node.config import NodeConfig
from node.learner import Learner, load_shard
from swarm.dp_advice import NoisePlan, cannot_learn, plan_of, warning
from swarm.privacy import PrivacyBudget, plan_noise

DIGITS_MLP, FASHION_CNN = 4_810, 55_338  # parameters of the data sets' default models


def plan(samples: int, batch: int, epochs: int, epsilon: float, parameters: int, optimizer: str) -> NoisePlan:
    """What the simulator's DP engine plans (Poisson rate batch / samples, round(1 / rate) steps an epoch)."""
    rate = min(1.0, batch / samples)
    steps = epochs * round(1 / rate)
    sigma = plan_noise(PrivacyBudget(epsilon), rate, steps)
    return NoisePlan(sigma, rate * samples, steps, parameters, samples, epsilon, 1.0, optimizer)


def test_the_issues_run_cannot_learn_and_the_warning_says_why_and_what_helps() -> None:
    issue = plan(40, 32, 15, 4.0, DIGITS_MLP, "adam")  # 5 rounds x 3 local epochs
    assert issue.step_ratio == pytest.approx(0.125, abs=0.002)
    text = warning(issue)
    assert text is not None
    for words in ("sigma*C/B", "More rounds will not help", "samples per client (now 40)",
                  "larger epsilon (now 4)", "larger expected batch (now 32", "adam scales every step"):
        assert words in text


def test_more_rounds_leave_the_ratio_where_it_was_more_data_or_epsilon_raise_it() -> None:
    base = plan(40, 32, 15, 4.0, DIGITS_MLP, "adam")
    longer = plan(40, 32, 60, 4.0, DIGITS_MLP, "adam")
    assert longer.run_ratio == pytest.approx(base.run_ratio, rel=0.05)
    assert longer.step_ratio < base.step_ratio  # each step noisier: the accountant spreads epsilon thinner
    assert warning(longer) is not None
    more_data = plan(130, 32, 15, 4.0, DIGITS_MLP, "adam")
    more_epsilon = plan(40, 32, 15, 16.0, DIGITS_MLP, "adam")
    assert more_data.run_ratio > 2.5 * base.run_ratio and more_epsilon.run_ratio > 2.5 * base.run_ratio


def test_settings_measured_to_learn_get_no_warning() -> None:
    # digits, 130 samples a client, adam, epsilon 256: 0.62 (0.79 without DP)
    assert warning(plan(130, 32, 15, 256.0, DIGITS_MLP, "adam")) is None
    # Fashion-MNIST, 600 samples, SGD lr 0.1: alone 0.37 at epsilon 1, merged 0.45-0.47 at 4 and 8
    for epsilon in (1.0, 4.0, 8.0):
        assert warning(plan(600, 64, 8, epsilon, FASHION_CNN, "sgd")) is None


def test_sgd_is_warned_where_it_was_measured_at_chance() -> None:
    # Fashion-MNIST alone, 200 samples, SGD, epsilon 0.25: 0.124 (0.329 without DP)
    hopeless = plan(200, 64, 8, 0.25, FASHION_CNN, "sgd")
    assert hopeless.run_ratio < 0.1
    assert "over the 24 planned steps" in (warning(hopeless) or "")
    clip_only = NoisePlan(0.0, 32, 15, DIGITS_MLP, 40, float("inf"), 1.0, "adam")
    assert not cannot_learn(clip_only)


def test_adam_is_held_to_each_step_sgd_to_the_whole_run() -> None:
    # digits, 130 samples, epsilon 16: R 3.7 but rho 0.48; measured adam 0.33, SGD 0.62 (clip only 0.62)
    adam, sgd = plan(130, 32, 15, 16.0, DIGITS_MLP, "adam"), plan(130, 32, 15, 16.0, DIGITS_MLP, "sgd")
    assert adam.run_ratio > 1 > adam.step_ratio
    assert warning(adam) is not None
    assert warning(sgd) is None


def learner(**over: object) -> Learner:
    settings: dict = {"dataset": "digits", "partition": "iid", "clients": 10, "client": 0, "rounds": 5,
                      "local_epochs": 3, "optimizer": "adam", **over}
    cfg = NodeConfig(**settings)
    return Learner(cfg, load_shard(cfg), torch.device("cpu"))


def test_a_node_plans_from_its_own_dp_state() -> None:
    small = learner(samples_per_client=40, dp_epsilon=4.0)
    assert small.private is not None
    got = plan_of(small.private, "adam")
    assert got.samples == 40 and got.parameters == DIGITS_MLP
    assert got.steps == small.private.steps_planned and got.noise_multiplier == small.private.noise_multiplier
    assert warning(got) is not None
    large = learner(samples_per_client=130, dp_epsilon=256.0)
    assert large.private is not None and warning(plan_of(large.private, "adam")) is None


ISSUE = ["dataset=digits", "partition=iid", "clients=10", "rounds=5", "strategy=random", "seed=1"]


def simulate_stderr(tmp_path: Path, *sets: str) -> str:
    args = [sys.executable, "-m", "node.cli", "simulate", "--quiet", "--checkpoint-s", "0",
            "--out", str(tmp_path / "run")]
    done = subprocess.run(args + [f"--set={s}" for s in sets], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_simulate_warns_for_the_issues_command(tmp_path: Path) -> None:
    err = simulate_stderr(tmp_path, *ISSUE, "dp_epsilon=4")
    assert "10 clients: DP-SGD as planned will learn little, if at all" in err
    assert "More rounds will not help" in err
    assert err.index("will learn little") < err.index("privacy budget spent")  # before training


def test_simulate_stays_quiet_for_a_setting_that_learns(tmp_path: Path) -> None:
    err = simulate_stderr(tmp_path, *ISSUE, "train_samples=130", "dp_epsilon=256")
    assert "privacy budget spent" in err and "will learn little" not in err
