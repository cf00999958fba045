"""The class paths `--action-norm per_timestep` checkpoints written before `schemas.processor_steps`
name in their pipeline JSON (`deploy.action_norm.ChunkNormalizerStep` / `ChunkUnnormalizerStep`):
lerobot's `PolicyProcessorPipeline.from_pretrained` imports this module to build those steps, so it
stays, an alias of the classes that live in `schemas.processor_steps` (the same class objects;
checkpoints saved since name those)."""

from __future__ import annotations

from schemas.processor_steps import ChunkNormalizerStep, ChunkUnnormalizerStep, PerTimestepActionError

__all__ = ["ChunkNormalizerStep", "ChunkUnnormalizerStep", "PerTimestepActionError"]
