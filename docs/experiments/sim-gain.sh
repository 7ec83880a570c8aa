#!/usr/bin/env bash
# The demo's setting in the simulator (the same learning code as the real swarm): each client's test
# accuracy with DAC against training alone, per peer count and seed. Finished runs are skipped.
#   nice -n 10 bash docs/experiments/sim-gain.sh [RUNS_DIR]      (NODES="4 6 10", SEEDS="0 1 2")
# then: .venv/bin/python bench/demo_gain.py sim-table RUNS_DIR
set -euo pipefail
runs=${1:-docs/results/sim-gain}
SIM=${SWARM_NODE:-.venv/bin/swarm-node}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# What `swarm-node demo` runs: Fashion-MNIST rotation, 400 training / 100 validation / 1,000 test images
# per peer, 20 rounds of 3 local epochs, Adam lr 1e-3, batch 32, DAC with inverse loss and 3 neighbours.
DEMO=(dataset=fashion-mnist partition=rotation train_samples=400 val_samples=100 test_samples=1000
      rounds=20 local_epochs=3 lr=0.001 batch_size=32 neighbours=3 similarity=inverse-loss)
for n in ${NODES:-4 6 10}; do
  for seed in ${SEEDS:-0 1 2}; do
    for strategy in local dac random; do
      name="n$n-s$seed-$strategy"
      [[ -f $runs/$name/summary.json ]] && continue
      sets=()
      for kv in "${DEMO[@]}" clients=$n seed=$seed strategy=$strategy; do sets+=(--set "$kv"); done
      $SIM simulate --quiet "${sets[@]}" --out "$runs/$name"
      rm -f "$runs/$name"/*.png
    done
  done
done
