"""The trainer: stream a shard set with many DataLoader workers and fine-tune lerobot's SmolVLA.

- `train.tiny_backbone`: a tiny random-weight SmolVLM backbone built offline (`b1k-tiny-backbone`).
- `train.model`: SmolVLA for the shard set's features (from a SmolVLA checkpoint or a VLM backbone),
  normalisation with the manifest's stats through lerobot's own pre/post-processors.
- `train.data`: the shard stream (deterministic per-epoch shard order, node and worker split,
  shuffle buffer, decode, chunk slicing, collation to SmolVLA's batch keys), resumable exactly.
- `train.recipes`: action recipes (relative actions, mean_std/quantile/per-timestep normalisation with
  exact chunk-target stats from the stats sidecars) and the EMA of the weights.
- `train.loop`: `TrainConfig` and `train()`: weighted flow-matching loss, AdamW + cosine warmup,
  logs, validation, checkpoints in lerobot's format, resume, DDP through torchrun.
- `train.cli`: `b1k-train`.
"""
