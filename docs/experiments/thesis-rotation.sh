#!/usr/bin/env bash
# The thesis's Fashion-MNIST rotation experiment (swarm/configs/fmnist-rotation-thesis.toml), one run per
# directory; finished runs (summary.json present) are skipped and an interrupted run resumes from its
# checkpoint.pt. A run holds a lock while it runs, so two copies of the script share the rows out, one
# per core:
#   nice -n 10 bash docs/experiments/thesis-rotation.sh [RUNS_DIR] &   (SEEDS="1 2 3", ROUNDS=300)
#   nice -n 10 bash docs/experiments/thesis-rotation.sh [RUNS_DIR] &
# then: .venv/bin/python -m swarm.sim.grid table RUNS_DIR
#       .venv/bin/python -m swarm.sim.report compare docs/plots/thesis-rotation.png RUNS_DIR/*
set -euo pipefail
runs=${1:-runs/thesis-rotation}
SIM=${SWARM_NODE:-.venv/bin/swarm-node}
CONFIG=swarm/configs/fmnist-rotation-thesis.toml
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one process per core, one thread each (docs/benchmarks.md)

run() {  # run NAME KEY=VALUE...
  local name=$1; shift
  [[ -f $runs/$name/summary.json ]] && return 0
  mkdir -p "$runs"
  exec {lock}>"$runs/$name.lock"
  flock -n "$lock" || { exec {lock}>&-; return 0; }  # the other copy runs it
  local sets=(--set "rounds=${ROUNDS:-300}")
  for kv in "$@"; do sets+=(--set "$kv"); done
  $SIM simulate --quiet --config "$CONFIG" "${sets[@]}" --out "$runs/$name"
  rm -f "$runs/$name"/*.png  # the plot of all rows is drawn from rounds.csv
  exec {lock}>&-
}

for seed in ${SEEDS:-1 2}; do
  run "local-s$seed" seed=$seed strategy=local lr=0.00005   # the thesis's no-communication baseline
  run "local-fast-s$seed" seed=$seed strategy=local          # the same lr as everyone else
  run "random-s$seed" seed=$seed strategy=random
  run "dac-inverse-loss-s$seed" seed=$seed strategy=dac similarity=inverse-loss
  # ours: DAC with the merge guard (allowance 10%), optimistic exploration and int8 snapshots (4x fewer
  # bytes)
  run "ours-s$seed" seed=$seed strategy=dac similarity=inverse-loss merge_guard=true guard_tolerance=0.1 \
      explore_unknown=true encoding=int8
  run "oracle-s$seed" seed=$seed strategy=oracle
  run "dac-cosine-updates-s$seed" seed=$seed strategy=dac similarity=cosine-updates
  run "panm-inverse-loss-s$seed" seed=$seed strategy=panm similarity=inverse-loss
  run "panm-cosine-s$seed" seed=$seed strategy=panm similarity=panm
done
