"""A trained policy at the robot: read a `b1k-train` checkpoint with lerobot alone, adapt the BEHAVIOR
evaluator's observations to exactly what training saw, execute action chunks, serve the evaluator's
websocket protocol (`b1k-serve`), and measure a checkpoint's action error offline through the same
policy object (`b1k-eval`).

Serving: `wire` (the msgpack wire format) -> `server` (the websocket server, `batching` of requests
across connections) -> `policy` (chunk prediction and execution: `ChunkModel`, `Policy`, `execution`)
-> `adapter` (observation -> policy inputs) over `checkpoint` (loading, `DeploySpec`); `cli` is
`b1k-serve`. `action_norm` is the per-chunk-step action (un)normaliser, a lerobot processor step saved
in `--action-norm per_timestep` checkpoints. `deploy.eval` is `b1k-eval`.
Imports `schemas/` and `shards/` only, never `preprocess/` or `train/`.
"""
