# shellcheck shell=bash
# Sourced by the sweep scripts here: `run CONFIG DIR NAME KEY=VALUE...` runs one simulation into
# DIR/NAME unless its summary.json exists (CONFIG "" = the simulator's defaults; ROUNDS, if set,
# overrides the rounds; THREADS, if set, gives one run that many torch threads, for a run alone on
# the machine). A run holds DIR/NAME.lock while it runs, so two copies of a
# script share the rows out, one per core; an interrupted run resumes from its checkpoint.pt.
SIM=${SWARM_NODE:-.venv/bin/swarm-node}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one process per core, one thread each (docs/benchmarks.md)

run() {
  local config=$1 dir=$2 name=$3; shift 3
  [[ -f $dir/$name/summary.json ]] && return 0
  mkdir -p "$dir"
  exec {lock}>"$dir/$name.lock"
  flock -n "$lock" || { exec {lock}>&-; return 0; }  # the other copy runs it
  local args=()
  [[ -n $config ]] && args+=(--config "$config")
  [[ -n ${ROUNDS:-} ]] && args+=(--set "rounds=$ROUNDS")  # else the config's (300 in the thesis configs)
  for kv in "$@"; do args+=(--set "$kv"); done
  [[ -n ${THREADS:-} ]] && args+=(--threads "$THREADS")
  $SIM simulate --quiet "${args[@]}" --out "$dir/$name"
  rm -f "$dir/$name"/*.png  # plots of all rows are drawn from rounds.csv
  exec {lock}>&-
}

# ours in the thesis tables: DAC with inverse loss, the merge guard (allowance 10%), optimistic
# exploration and int8 snapshots (4x fewer bytes)
# shellcheck disable=SC2034  # used by the scripts that source this file
OURS=(strategy=dac similarity=inverse-loss merge_guard=true guard_tolerance=0.1 explore_unknown=true
      encoding=int8)
