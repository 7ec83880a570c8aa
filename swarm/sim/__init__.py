"""The simulator: N virtual peers in one process, driving the same strategies, similarity metrics,
merge and model selection as the real node (the shared core is the rest of `swarm/`).

- `config`: `SimConfig`, its defaults, TOML files and `--set key=value` overrides.
- `simulator`: the round loop (`simulate`) and its resumable state (`SimState`).
- `wire`: how snapshots travel between simulated peers (`Wire`; `RawWire`, lossless, is the default;
  the CLI passes storage's real codecs).
- `engine`: training and evaluation of all clients at once (batched) or one at a time (loop).
- `dp_engine`: DP-SGD clients with true Poisson sampling, one at a time.
- `report`: summary.json, rounds.csv and plots of a run; comparison plots over runs.
- `grid`: a resumable grid of runs (variants x seeds) and its table.
- `sweep_report`: tables and plots of the privacy and compression sweeps.
"""
