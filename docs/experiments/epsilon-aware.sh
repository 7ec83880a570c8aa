#!/usr/bin/env bash
# Epsilon-aware neighbours (docs/results.md): 12 Fashion-MNIST iid clients, a third each at DP target
# epsilon 1, 8 and no DP (client i gets dp_epsilons[i % 3]); merge weights by the strategy (samples /
# uniform: equal shards) vs noise-aware; gossip on the full graph (3 neighbours) and FedAvg; and gossip
# with a ceiling max_peer_epsilon = 8; gossip without DP for context. Finished runs are skipped.
#   SEEDS="0 1 2" nice -n 10 bash docs/experiments/epsilon-aware.sh run [RUNS_DIR]   # ~1-2 min a run
#   bash docs/experiments/epsilon-aware.sh table [RUNS_DIR]                          # the markdown table
set -euo pipefail
what=${1:?usage: epsilon-aware.sh run|table [RUNS_DIR]}
runs=${2:-runs/epsilon-aware}
PY=${PYTHON:-.venv/bin/python}

BASE=(dataset=fashion-mnist partition=iid clients=12 train_samples=600 val_samples=0 test_samples=200 rounds=8
      local_epochs=1 optimizer=sgd lr=0.1 batch_size=64 dp_epsilons=1,8,0)
GOSSIP=(strategy=gossip topology=full neighbours=3)

# shellcheck source=docs/experiments/sweep-run.sh
source "$(dirname "$0")/sweep-run.sh"
row() { run "" "$runs" "$@"; }

if [[ $what == run ]]; then
  for seed in ${SEEDS:-0}; do
    for w in strategy noise-aware; do
      row "gossip-$w-s$seed" "${BASE[@]}" "${GOSSIP[@]}" merge_weights=$w seed=$seed
      row "fedavg-$w-s$seed" "${BASE[@]}" strategy=fedavg merge_weights=$w seed=$seed
    done
    row "gossip-cap8-s$seed" "${BASE[@]}" "${GOSSIP[@]}" max_peer_epsilon=8 seed=$seed
    row "gossip-nodp-s$seed" "${BASE[@]}" "${GOSSIP[@]}" dp_epsilons=0 seed=$seed  # context: nobody uses DP
  done
elif [[ $what == table ]]; then
  $PY - "$runs" <<'PY'
import json, statistics, sys
from pathlib import Path
runs = Path(sys.argv[1])
rows = {}
for summary in sorted(runs.glob("*/summary.json")):
    variant, seed = summary.parent.name.rsplit("-s", 1)
    acc = json.loads(summary.read_text())["final"]["per_client"]
    thirds = [statistics.mean(acc[k::3]) for k in range(3)]  # clients 0, 3, ...: epsilon 1; 1, 4, ...: 8
    rows.setdefault(variant, []).append([statistics.mean(acc), *thirds])
def cell(values):
    half = (max(values) - min(values)) / 2
    return f"{statistics.mean(values):.3f} ±{half:.3f}" if len(values) > 1 else f"{values[0]:.3f}"
print("| variant | seeds | mean acc | ε 1 third | ε 8 third | no-DP third |")
print("|---|---|---|---|---|---|")
for variant, seeds in rows.items():
    print(f"| {variant} | {len(seeds)} | " + " | ".join(cell([s[k] for s in seeds]) for k in range(4)) + " |")
PY
fi
