#!/usr/bin/env bash
# The search for a DP-SGD recipe that still learns, and its table, on swarm/configs/fmnist-dp-recipe.toml
# (Fashion-MNIST iid, 10 clients x 6,000 images, dp-cnn, SGD, clipping norm 0.1). One run per
# directory; finished runs are skipped, interrupted ones resume; two copies share the rows out:
#   nice -n 10 bash docs/experiments/dp-recipe.sh search|table|samples|scatter|dac [RUNS_DIR] &   (SEEDS="0 1")
# search: without DP over the rate, for the same model at batch 64; then FedAvg at epsilon 3 over
#         the expected batch (1024, 512, 2048) and the learning rate (80, 40, 20), 30 rounds (= epochs).
# table:  the recipe (the config) at epsilon 3, 1, 8 and without DP, for FedAvg, centralised DP-SGD
#         (one client holding all 60,000 images), gossip on the full graph and on a ring.
# samples: FedAvg at epsilon 3 and without DP with 1,000 and 200 images per client, dp-cnn and scatter-linear.
# scatter: the same with a linear model on ScatterNet features (scatter-linear): its rate, then FedAvg,
#          centralised, and gossip on the full graph and a ring, at epsilon 3, 1 and without DP
#          (SCATTER_LR, SCATTER_NODP_LR).
# dac:    DAC (inverse loss) against random neighbours under DP, rotation, 1,000 images per client.
# then: .venv/bin/python -m swarm.sim.grid table RUNS_DIR
set -euo pipefail
what=${1:?usage: dp-recipe.sh search|table|samples|scatter|dac [RUNS_DIR]}
runs=${2:-runs/dp-recipe}
CONFIG=swarm/configs/fmnist-dp-recipe.toml
# shellcheck source=docs/experiments/sweep-run.sh
source "$(dirname "$0")/sweep-run.sh"
row() { run "$CONFIG" "$runs/$what" "$@"; }

# without DP the same model learns best with small batches and a small rate (the search's nodp rows)
NODP=(dp_epsilon=0 batch_size=64 "lr=${NODP_LR:-0.2}")
# scatter-linear (a linear model on ScatterNet features) at the rates its search (scatter) chose
SCAT=(model=scatter-linear "lr=${SCATTER_LR:-40}")
SCAT_NODP=(model=scatter-linear dp_epsilon=0 batch_size=64 "lr=${SCATTER_NODP_LR:-0.8}")
method_sets() {  # the keys of a method: fedavg, central (one client with all 60,000 images), gossip-TOPOLOGY
  case $1 in
    fedavg) sets=() ;;
    central) sets=(clients=1 train_samples=60000 test_samples=10000 strategy=local) ;;
    gossip-*) sets=(strategy=gossip "topology=${1#gossip-}" neighbours=2) ;;
  esac
}

for seed in ${SEEDS:-0}; do
  if [[ $what == search ]]; then
    for lr in 0.05 0.1 0.2; do
      row "fedavg-nodp-b64-r15-lr$lr-s$seed" seed="$seed" dp_epsilon=0 batch_size=64 rounds=15 lr=$lr
    done
    # plain SGD: the step is lr x (clipped mean gradient, norm <= 0.1, + noise); Tramer and Boneh's
    # lr 4 with momentum 0.9 takes steps like lr 40 without it
    for b in 1024 512 2048; do
      for lr in 80 40 20; do
        row "fedavg-e3-b$b-r30-lr$lr-s$seed" seed="$seed" batch_size=$b rounds=30 lr=$lr
      done
    done
  elif [[ $what == table ]]; then
    # the goal rows first (epsilon 3 and 1, and without DP), FedAvg, then the centralised reference
    for method in fedavg central gossip-full gossip-ring; do
      method_sets $method
      for eps in 3 1; do
        row "$method-e$eps-s$seed" seed="$seed" dp_epsilon=$eps "${sets[@]}"
      done
      row "$method-nodp-s$seed" seed="$seed" "${NODP[@]}" "${sets[@]}"
    done
    for method in fedavg gossip-full gossip-ring central; do
      method_sets $method
      row "$method-e8-s$seed" seed="$seed" dp_epsilon=8 "${sets[@]}"
    done
  elif [[ $what == samples ]]; then
    # fewer images per client at the recipe's sampling rate (the batch shrinks with the data), so the
    # noise multiplier is the recipe's and only the signal per step falls
    for n in 1000 200; do
      batch=$(( ${BATCH:-1024} * n / 6000 ))
      row "fedavg-n$n-e3-s$seed" seed="$seed" train_samples=$n dp_epsilon=3 "batch_size=$batch"
      row "fedavg-n$n-nodp-s$seed" seed="$seed" train_samples=$n "${NODP[@]}"
      row "fedavg-scatter-n$n-e3-s$seed" seed="$seed" "${SCAT[@]}" train_samples=$n dp_epsilon=3 "batch_size=$batch"
      row "fedavg-scatter-n$n-nodp-s$seed" seed="$seed" "${SCAT_NODP[@]}" train_samples=$n
    done
  elif [[ $what == scatter ]]; then
    # the recipe's sampling and clipping with a linear model on ScatterNet features (scatter-linear):
    # the rate first (epsilon 3 and without DP, FedAvg), then the table's goal rows at the best rate
    for lr in 20 40 80; do
      row "fedavg-scatter-e3-lr$lr-s$seed" seed="$seed" model=scatter-linear dp_epsilon=3 lr=$lr
    done
    for lr in 0.05 0.2 0.8; do
      row "fedavg-scatter-nodp-lr$lr-s$seed" seed="$seed" model=scatter-linear dp_epsilon=0 batch_size=64 lr=$lr
    done
    for method in fedavg central gossip-full gossip-ring; do
      method_sets $method
      for eps in 3 1; do
        row "$method-scatter-e$eps-s$seed" seed="$seed" "${SCAT[@]}" dp_epsilon=$eps "${sets[@]}"
      done
      row "$method-scatter-nodp-s$seed" seed="$seed" "${SCAT_NODP[@]}" "${sets[@]}"
    done
  elif [[ $what == dac ]]; then
    # does similarity survive the noise? Rotation (20 clients: 14 / 4 / 1 / 1 see 0 / 180 / 10 / 350
    # degrees), 1,000 images per client, 3 neighbours, DAC with inverse loss against random choice
    ROT=(partition=rotation clients=20 train_samples=1000 test_samples=500 neighbours=3)
    for eps in 8 0; do
      if [[ $eps == 0 ]]; then sets=("${NODP[@]}"); else sets=("dp_epsilon=$eps" batch_size=170); fi
      for strategy in dac random; do
        row "$strategy-rotation-e$eps-s$seed" seed="$seed" "${ROT[@]}" strategy=$strategy "${sets[@]}"
      done
    done
  fi
done
