#!/usr/bin/env bash
# Privacy and compression experiments at reduced scale (2 shared CPU cores): DP gossip vs FedAvg, DAC under DP,
# bytes vs accuracy per snapshot encoding, sparse personalized models, how DP noise spreads between peers.
# Finished runs are skipped.
#   nice -n 10 bash docs/experiments/privacy-and-compression.sh dp|dac-dp|comm|spread [RUNS_DIR]  (SEEDS="0 1" for more seeds)
# then: .venv/bin/python -m swarm.sim.sweep_report RUNS_DIR docs/plots
set -euo pipefail
what=${1:?usage: privacy-and-compression.sh dp|dac-dp|comm|spread [RUNS_DIR]}
runs=${2:-runs/privacy-and-compression}
# shellcheck source=docs/experiments/sweep-run.sh
source "$(dirname "$0")/sweep-run.sh"
row() { run "" "$runs" "$@"; }

# Gossip under DP vs FedAvg: 10 clients x 600 Fashion-MNIST images, 8 rounds of 1 local epoch,
# DP-SGD (SGD lr 0.1, batch 64 Poisson-sampled, clip 1.0), epsilon 0 = no DP, inf = clipping only.
DP=(dataset=fashion-mnist clients=10 train_samples=600 val_samples=0 test_samples=200 rounds=8
    local_epochs=1 optimizer=sgd lr=0.1 batch_size=64 neighbours=2 degree=4 dp_delta=1e-5 dp_max_grad_norm=1.0)
if [[ $what == dp ]]; then
  for seed in ${SEEDS:-0}; do
    tag=$( ((seed)) && echo "-s$seed" || true)
    for part in iid rotation; do
      for eps in 0 8 4 2 1; do
        row "dp-$part-fedavg-e$eps$tag" "${DP[@]}" seed=$seed partition=$part strategy=fedavg dp_epsilon=$eps
        for topo in ring regular full; do
          row "dp-$part-$topo-e$eps$tag" "${DP[@]}" seed=$seed partition=$part strategy=gossip topology=$topo \
            dp_epsilon="$eps"
        done
      done
    done
  done
  # ablation: per-sample clipping without noise (dp_epsilon=inf), to separate clipping from noise
  for topo in fedavg ring; do
    strat=$([[ $topo == fedavg ]] && echo fedavg || echo gossip)
    row "dp-iid-$topo-clip" "${DP[@]}" partition=iid strategy=$strat topology=$topo dp_epsilon=inf
  done
fi

# How DP noise spreads through the network: the DP setting above (iid), per topology, without DP,
# clipping only (epsilon inf: separates what clipping does to the spread from what noise does) and
# epsilon 2; rounds.csv has the spread between the peers' models per round (before and after merging).
# ROUNDS=16 runs the same for 16 rounds (runs named -r16; the DP noise is planned for 16 epochs);
# EPSILONS="0 2" runs only those.
if [[ $what == spread ]]; then
  rounds=${ROUNDS:-8}
  tag=$( ((rounds != 8)) && echo "-r$rounds" || true)
  for seed in ${SEEDS:-0}; do
    for eps in ${EPSILONS:-0 2 inf}; do
      for topo in fedavg full regular ring; do
        if [[ $topo == fedavg ]]; then how=(strategy=fedavg); else how=(strategy=gossip "topology=$topo"); fi
        row "spread-$topo-e$eps$tag-s$seed" "${DP[@]}" seed="$seed" partition=iid "${how[@]}" dp_epsilon="$eps" \
          rounds="$rounds"
      done
    done
  done
fi

# DAC rotation setting (reduced): 20 clients x 200 images, 2 local epochs, 15 rounds, 3 neighbours.
DAC=(dataset=fashion-mnist partition=rotation clients=20 train_samples=200 val_samples=0 test_samples=100
     rounds=15 local_epochs=2 batch_size=32 optimizer=adam lr=1e-3 neighbours=3 tau=30)
if [[ $what == dac-dp ]]; then
  for eps in 0 8 2; do
    row "dacdp-e$eps" "${DAC[@]}" strategy=dac dp_epsilon=$eps
  done
fi
if [[ $what == comm ]]; then
  for enc in fp32 fp16 int8 topk-delta; do
    row "comm-dac-$enc" "${DAC[@]}" strategy=dac encoding=$enc
  done
  row comm-random-fp32 "${DAC[@]}" strategy=random encoding=fp32
  row comm-dac-sparse "${DAC[@]}" strategy=dac encoding=fp32 prune_target=0.1 prune_rate=0.3
  row comm-random-sparse "${DAC[@]}" strategy=random encoding=fp32 prune_target=0.1 prune_rate=0.3
  row comm-local "${DAC[@]}" strategy=local encoding=fp32
fi
