"""A trained policy at the robot: read a `b1k-train` checkpoint with lerobot alone, adapt the BEHAVIOR
evaluator's observations to exactly what training saw, execute action chunks, serve the evaluator's
websocket protocol (`b1k-serve`), and measure a checkpoint's action error offline through the same
policy object (`b1k-eval`).

Modules: `wire` (the msgpack wire format), `checkpoint` (loading, `DeploySpec`), `adapter` (observation
-> policy inputs), `policy` (chunk prediction and execution: `ChunkModel`, `Policy`), `action_norm` (the per-chunk-step
action (un)normaliser, a lerobot processor step saved in `--action-norm per_timestep` checkpoints), `server` (the
websocket server), `cli` (`b1k-serve`); `evaluate` (open-loop and executed action error on a shard
set's held-out episodes) with its parts `eval_config`, `eval_frames` (which frames), `eval_inputs`
(frames -> policy inputs), `eval_replay` (open-loop and executed replay, the baseline) and `eval_tally`
(error sums by group, progress bin, chunk step and task); `eval_report` (report.json, table, plot),
`eval_cli` (`b1k-eval`).
Imports `schemas/` and `shards/` only, never `preprocess/` or `train/`.
"""
