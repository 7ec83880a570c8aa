#!/usr/bin/env bash
# The runs the DP warning (swarm/dp_advice.py) is set against (docs/results.md, "When DP-SGD cannot learn"):
# the issue's digits command (10 iid clients, 5 rounds, random gossip, seed 1) at more samples per client,
# other epsilons, a larger batch and SGD; Fashion-MNIST clients training alone (the DP setting of
# privacy-and-compression.sh) at 600 and 200 samples. Finished runs are skipped.
#   nice -n 10 bash docs/experiments/dp-warning.sh [RUNS_DIR]             # ~5-30 s a digits run, 1-2 min FMNIST
#   .venv/bin/python -m swarm.sim.sweep_report RUNS_DIR docs/plots         # the table
set -euo pipefail
runs=${1:-runs/dp-warning}

# shellcheck source=docs/experiments/sweep-run.sh
source "$(dirname "$0")/sweep-run.sh"
row() { run "" "$runs" "$@"; }

ISSUE=(dataset=digits partition=iid clients=10 rounds=5 strategy=random seed=1)  # adam lr 1e-3, batch 32
for n in 40 130; do
  for eps in 0 inf 4 16 64 256; do
    row "rule-digits-n$n-e$eps" "${ISSUE[@]}" train_samples=$n dp_epsilon=$eps
  done
  for eps in 0 inf 4 16; do
    row "rule-digits-n$n-sgd-e$eps" "${ISSUE[@]}" train_samples=$n optimizer=sgd lr=0.1 dp_epsilon=$eps
  done
done
for eps in 0 4 16 64; do
  row "rule-digits-n130-b128-e$eps" "${ISSUE[@]}" train_samples=130 batch_size=128 dp_epsilon=$eps
done
for eps in 0 inf 4; do  # more rounds, as the warning says, do not help
  row "rule-digits-n40-r20-e$eps" "${ISSUE[@]}" train_samples=40 rounds=20 dp_epsilon=$eps
done
LOCAL=(dataset=fashion-mnist partition=iid clients=10 val_samples=0 test_samples=200 rounds=8 local_epochs=1
       optimizer=sgd lr=0.1 batch_size=64 neighbours=2 degree=4 dp_delta=1e-5 dp_max_grad_norm=1.0 seed=0
       strategy=local)
for eps in 0 inf 0.25 1 2 4 8; do
  row "rule-fmnist-n200-e$eps" "${LOCAL[@]}" train_samples=200 dp_epsilon=$eps
done
for eps in 0 inf 0.25 1 2; do  # 4 and 8 at 600 samples, merged: privacy-and-compression.sh dp
  row "rule-fmnist-n600-e$eps" "${LOCAL[@]}" train_samples=600 dp_epsilon=$eps
done
row rule-fmnist-n200-r16-e0.25 "${LOCAL[@]}" train_samples=200 rounds=16 dp_epsilon=0.25
