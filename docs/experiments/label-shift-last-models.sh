#!/usr/bin/env bash
# The label-shift analogue (swarm/configs/fmnist-label-shift-thesis.toml) under the protocol with which
# ours meets the goal on rotation (docs/results.md, "ours, another protocol"): no early stopping, merged
# models judged too, and every summary records each client's last model beside its kept one
# (`final.last_models`). Ours, the oracle and random gossip, seeds 1-3. One run per directory; finished
# runs are skipped, interrupted ones resume from checkpoint.pt; two copies share the rows out:
#   nice -n 10 bash docs/experiments/label-shift-last-models.sh [RUNS_DIR] &
#   nice -n 10 bash docs/experiments/label-shift-last-models.sh [RUNS_DIR] &
# then (one folder per seed; a glob would also catch the runs' .lock files):
#   .venv/bin/python docs/experiments/last-models-row.py \
#     RUNS_DIR/thesis-label-shift-diagnostics/ours-judge-merged-no-patience-s{1,2,3} \
#     --against oracle:last=RUNS_DIR/thesis-label-shift-diagnostics/oracle-judge-merged-no-patience-s{seed}
set -euo pipefail
runs=${1:-runs}
LABEL_SHIFT=swarm/configs/fmnist-label-shift-thesis.toml
# shellcheck source=docs/experiments/sweep-run.sh
source "$(dirname "$0")/sweep-run.sh"

dir=$runs/thesis-label-shift-diagnostics
protocol=(judge_merged=true patience=0)
for seed in ${SEEDS:-1 2 3}; do
  run "$LABEL_SHIFT" "$dir" "ours-judge-merged-no-patience-s$seed" seed="$seed" "${OURS[@]}" "${protocol[@]}"
  run "$LABEL_SHIFT" "$dir" "oracle-judge-merged-no-patience-s$seed" seed="$seed" strategy=oracle "${protocol[@]}"
  run "$LABEL_SHIFT" "$dir" "random-judge-merged-no-patience-s$seed" seed="$seed" strategy=random "${protocol[@]}"
done
