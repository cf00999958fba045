"""A trained policy at the robot: read a `b1k-train` checkpoint with lerobot alone, adapt the BEHAVIOR
evaluator's observations to exactly what training saw, execute action chunks, serve the evaluator's
websocket protocol (`b1k-serve`), and measure a checkpoint's action error offline through the same
policy object (`b1k-eval`).

Serving: `wire` (the msgpack wire format) -> `server` (the websocket server, `batching` of requests
across connections) -> `policy` (chunk prediction and execution: `ChunkModel`, `Policy`, `execution`)
-> `adapter` (observation -> policy inputs) over `checkpoint` (loading, `DeploySpec`); `cli` is
`b1k-serve`. `deploy.eval` is `b1k-eval`.

Imports `schemas/` and `shards/` only, never `preprocess/` or `train/`; train/ does not import deploy/
either. They meet through the checkpoint format: lerobot's own files, whose processor pipelines name the
steps they run (lerobot's, and the per-chunk-step action (un)normaliser of `--action-norm per_timestep`,
`schemas.processor_steps`, which train/ writes and the pipelines run here; `action_norm` only keeps the
class paths that checkpoints saved before it moved name), and `b1k_provenance.json`. `b1k-train
--eval-every` runs `b1k-eval` as a program on a checkpoint and reads back its `report.json`.
"""
