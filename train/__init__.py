"""The trainer: stream a shard set with many DataLoader workers and fine-tune lerobot's SmolVLA.

- `train.model`: SmolVLA for the shard set's features (from a SmolVLA checkpoint or a VLM backbone),
  normalisation with the manifest's stats through lerobot's own pre/post-processors.
- `train.data`: the shard stream (deterministic per-epoch shard order, node and worker split,
  shuffle buffer, decode, chunk slicing, collation to SmolVLA's batch keys), resumable exactly.
- `train.recipes`: action recipes (relative actions, mean_std/quantile/per-timestep normalisation with
  exact chunk-target stats from the stats sidecars) and the EMA of the weights.
- `train.config`: `TrainConfig` (every `b1k-train` option), `TrainResult`, the errors that stop a run.
- `train.loop`: `train()`: the loop (one step, then log / validate / evaluate / save when due), DDP
  through torchrun; `train.setup` builds what it runs on (data, policy, optimizer, resume, loaders).
- `train.loss`: raw batch -> SmolVLA's batch (with `--augment`) -> temporally weighted flow-matching loss.
- `train.logs`: the JSONL log (+ TensorBoard, wandb, curves PNG); `train.checkpoint`: checkpoints in
  lerobot's format and where `--resume` starts (`train.resume`: what it must find unchanged).
- `train.action_eval`, `train.curves`, `train.tracking`: `--eval-every` (b1k-eval run as a program on a
  checkpoint of the step), `curves.png`, wandb.
- `train.cli`: `b1k-train`.

train/ and deploy/ meet only through `schemas/`, `shards/` and the checkpoint on disk: train/ writes
checkpoints in lerobot's format whose pipelines hold the steps of `schemas.processor_steps` and whose
`b1k_provenance.json` deploy/ reads; `--eval-every` runs `b1k-eval` (`python -m deploy.eval.cli`) on such a
checkpoint and reads its `report.json`. train/ imports nothing from deploy/ (tests/train/test_imports.py).
"""
