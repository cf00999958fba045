"""The lerobot processor steps our checkpoints save: per-chunk-step action normalisation
(`b1k-train --action-norm per_timestep`), written by `train/` and run by `deploy/`.

Step k of every action chunk is normalised with the mean and std of step k over the train split's
chunks (padded steps excluded): `(a[..., k, :] - mean[k]) / (std[k] + eps)`, and unnormalised with
`a * std[k] + mean[k]`. Both steps follow lerobot's `NormalizerProcessorStep` mould (a dataclass with
`__call__`, `get_config`, `state_dict`, `transform_features`); their stats live in the pipeline's
safetensors file, and the pipeline JSON names them by class path, so `PolicyProcessorPipeline.from_pretrained`
(`make_pre_post_processors(config, pretrained_path=...)`) imports and builds them wherever this package
is installed, with nothing imported beforehand. Checkpoints written before this module existed name
`deploy.action_norm.ChunkNormalizerStep` / `ChunkUnnormalizerStep`: that module stays, as an alias of
these very classes, so they load unchanged (tests/deploy/test_processor_steps.py).

Why in `schemas/`: a step saved in a checkpoint is part of the checkpoint format (its class path is in
`policy_*processor.json`, its `action.mean`/`action.std` in the pipeline's safetensors), and the
checkpoint format is `schemas/`'s (`schemas.checkpoint`), the one package both `train/` (which writes
the steps) and `deploy/` (which runs them) may import. Not `deploy/` (train would import deploy), not
`train/` (deploy would import train), not `shards/` (the data sets' format, not the checkpoints'), not a
new top-level package (DESIGN.md fixes the top level). Unlike the rest of `schemas/`, this module imports
lerobot and torch when imported (a step must subclass lerobot's `ProcessorStep`); `schemas/__init__`
does not import it, so the rest of the contract stays importable without them.

Only a whole chunk (B, T, A) starting at step 0 can be unnormalised: what `predict_action_chunk`
returns and `deploy.policy.ChunkModel` postprocesses. lerobot's `select_action` hands the
postprocessor one action (B, A) popped from its queue, whose chunk step is lost; that path raises
`PerTimestepActionError` instead of returning mis-scaled actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from lerobot.configs import PipelineFeatureType, PolicyFeature
from lerobot.lerobot_types import EnvTransition, TransitionKey
from lerobot.processor.pipeline import ProcessorStep

from schemas.errors import B1kError
from schemas.r1pro import ACTION_KEY


class PerTimestepActionError(B1kError, ValueError):
    """A single action reached a per-chunk-step (un)normaliser: its chunk step is unknown."""


def _single_action_message(shape: tuple[int, ...]) -> str:
    return (
        f"this checkpoint normalises actions per chunk step (b1k-train --action-norm per_timestep), and an "
        f"action of shape {list(shape)} has no chunk step: lerobot's select_action unnormalises one action at "
        f"a time and cannot undo it. Predict whole chunks instead: policy.predict_action_chunk(batch) and "
        f"the postprocessor on the (B, T, A) chunk, as deploy.policy.ChunkModel, b1k-serve and b1k-eval do."
    )


@dataclass
class _ChunkStats:
    """mean/std (T, A) of each chunk step; `eps` as lerobot's MEAN_STD mode."""

    eps: float = 1e-8
    _mean: torch.Tensor | None = field(default=None, init=False, repr=False)
    _std: torch.Tensor | None = field(default=None, init=False, repr=False)

    def set_stats(self, mean, std) -> _ChunkStats:
        self._mean = torch.as_tensor(mean, dtype=torch.float32).clone()
        self._std = torch.as_tensor(std, dtype=torch.float32).clone()
        if self._mean.ndim != 2 or self._mean.shape != self._std.shape:
            raise ValueError(
                f"per-step stats must be (T, A), got {tuple(self._mean.shape)} and {tuple(self._std.shape)}"
            )
        return self

    def _rows(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._mean is None or self._std is None:
            raise PerTimestepActionError("per-chunk-step action stats were never loaded")
        if action.ndim != 3:
            raise PerTimestepActionError(_single_action_message(tuple(action.shape)))
        steps, dims = action.shape[-2:]
        if steps > self._mean.shape[0] or dims != self._mean.shape[1]:
            raise PerTimestepActionError(
                f"an action chunk of {steps} steps x {dims} dims does not fit the per-step stats "
                f"({self._mean.shape[0]} steps x {self._mean.shape[1]} dims)"
            )
        mean = self._mean[:steps].to(action.device, action.dtype)
        std = self._std[:steps].to(action.device, action.dtype)
        return mean, std

    def _map_action(self, transition: EnvTransition, normalise: bool) -> EnvTransition:
        """The transition with its action chunk (un)normalised per step; no action: unchanged."""
        action = transition.get(TransitionKey.ACTION)
        if action is None:
            return transition
        mean, std = self._rows(action)
        out = transition.copy()
        out[TransitionKey.ACTION] = (action - mean) / (std + self.eps) if normalise else action * std + mean
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self._mean is None or self._std is None:
            return {}
        return {f"{ACTION_KEY}.mean": self._mean.cpu(), f"{ACTION_KEY}.std": self._std.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.set_stats(state[f"{ACTION_KEY}.mean"], state[f"{ACTION_KEY}.std"])

    def get_config(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def transform_features(
        self, features: dict[PipelineFeatureType, dict[str, PolicyFeature]]
    ) -> dict[PipelineFeatureType, dict[str, PolicyFeature]]:
        return features


@dataclass
class ChunkNormalizerStep(_ChunkStats, ProcessorStep):
    """Normalise a training batch's action chunks (B, T, A) per chunk step; no action: unchanged."""

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        return self._map_action(transition, normalise=True)


@dataclass
class ChunkUnnormalizerStep(_ChunkStats, ProcessorStep):
    """Unnormalise predicted chunks (B, T, A) per chunk step; a single action (B, A) is an error."""

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        return self._map_action(transition, normalise=False)
