"""The deployed policy: a checkpoint that predicts action chunks, and `Policy`, which executes them.

`ChunkModel` is the loaded checkpoint (shared, stateless): `PolicyInputs` -> images float [0,1]
(B, 3, H, W) as the trainer's `to_policy_batch` makes them -> lerobot's preprocessor ->
`SmolVLAPolicy.predict_action_chunk` (with the caller's noise) -> lerobot's postprocessor -> actions
in dataset units, float32 (B, chunk_size, 23). `b1k-eval` calls it on batches of shard samples.

`Policy` is one episode stream (one evaluator connection): `act(observation)` returns the next action
and `reset()` starts a new episode. Chunks are executed here, not by the evaluator:

- receding horizon (default): predict a chunk, send its first `action_steps` actions one per call,
  then predict again from the observation of that step;
- temporal ensembling (`ensemble=True`, ACT's Algorithm 2 via lerobot's `ACTTemporalEnsembler`): predict
  a chunk every step; the action sent for step t is the average of every chunk's prediction for t,
  weighted w_i = exp(-coeff * i) with i = 0 the oldest prediction (coeff 0.01 as in ACT: older
  predictions weigh slightly more; 0 = plain mean; negative favours the newest).

Noise: each `reset()` re-seeds the policy's own generator with `seed`, and the flow-matching noise of
each prediction is drawn from it (on the CPU, then moved), so the same observations after a reset give
the same actions on any device order of calls and independently of other connections.

A step is two halves around the model call, so that a server can run the steps of many policies (one
per connection) as one batched call: `Policy.begin` adapts the observation and draws the noise when a
prediction is due, `predict_together` runs any number of begun steps in one `ChunkModel.predict`, and
`Policy.finish` turns the prediction into the action. `Policy.step` is the three in a row.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deploy.adapter import ObservationAdapter, ObservationError, PolicyInputs
from deploy.checkpoint import LoadedCheckpoint
from deploy.execution import DEFAULT_ENSEMBLE_COEFF, ExecutionConfig
from schemas.errors import OptionError
from schemas.r1pro import STATE_KEY

__all__ = [
    "DEFAULT_ENSEMBLE_COEFF",
    "ChunkModel",
    "ExecutionConfig",
    "Policy",
    "Prediction",
    "predict_together",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One model call: actions in dataset units, float32 (B, chunk_size, action_dim), and its timing."""

    actions: np.ndarray
    model_seconds: float  # SmolVLA's predict_action_chunk alone (synchronised on CUDA)
    total_seconds: float  # to_tensors + preprocessor + model + postprocessor


class ChunkModel:
    """A loaded checkpoint that predicts whole action chunks for a batch of `PolicyInputs`."""

    def __init__(self, checkpoint: LoadedCheckpoint, adapter: ObservationAdapter) -> None:
        self.checkpoint = checkpoint
        self.adapter = adapter
        self.spec = checkpoint.spec
        self.device = torch.device(checkpoint.device)
        config = checkpoint.policy.config
        self.noise_shape = (config.chunk_size, config.max_action_dim)
        self._warned_chunk_sizes: set[int] = set()

    def warn_chunk_size_once(self, size: int) -> None:
        """A client asked for more actions than a chunk holds: said once per size, not per request."""
        if size not in self._warned_chunk_sizes:
            self._warned_chunk_sizes.add(size)
            logger.warning(
                "__action_chunk_size__ %d is above the checkpoint's chunk of %d: replying without "
                "action_chunk (the evaluator then asks once per step)", size, self.spec.chunk_size,
            )  # fmt: skip

    def noise(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Standard-normal flow-matching noise (B, chunk_size, max_action_dim), drawn on the CPU."""
        return torch.randn((batch, *self.noise_shape), generator=generator, dtype=torch.float32)

    def to_batch(self, inputs: PolicyInputs) -> dict[str, Any]:
        """The batch the trainer feeds lerobot's preprocessor (`train.loss.to_policy_batch`)."""
        batch: dict[str, Any] = {}
        for key, frames in inputs.images.items():
            chw = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8, as decoded from shards
            batch[key] = chw.to(self.device).float().div_(255.0)
        batch[STATE_KEY] = torch.from_numpy(inputs.state).to(self.device)
        batch["task"] = list(inputs.tasks)
        return batch

    @torch.no_grad()
    def predict(self, inputs: PolicyInputs, noise: torch.Tensor) -> Prediction:
        started = time.perf_counter()
        batch = self.checkpoint.preprocessor(self.to_batch(inputs))
        self._sync()
        model_started = time.perf_counter()
        chunk = self.checkpoint.policy.predict_action_chunk(batch, noise=noise.to(self.device))
        self._sync()
        model_seconds = time.perf_counter() - model_started
        actions = self.checkpoint.postprocessor(chunk)
        out = actions.detach().to("cpu", torch.float32).numpy()
        return Prediction(out, model_seconds, time.perf_counter() - started)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@dataclass(frozen=True)
class Step:
    """What one `Policy` call returns: the action (B, A), and the chunk when one was asked for."""

    action: np.ndarray  # float32 (B, action_dim)
    chunk: np.ndarray | None  # float32 (B, K, action_dim), first row == action
    batched: bool
    prediction: Prediction | None  # None when the action came from a chunk already predicted


@dataclass(frozen=True)
class PendingStep:
    """A step `Policy.begin` prepared: its inputs, and the noise of its prediction when one is due."""

    inputs: PolicyInputs
    batched: bool
    chunk_size: int | None  # K of a chunk the client replays itself
    noise: torch.Tensor | None = field(repr=False)  # (B, chunk, max_action_dim); None: no model call

    @property
    def needs_model(self) -> bool:
        return self.noise is not None

    @property
    def rows(self) -> int:
        return self.inputs.batch_size


def predict_together(model: ChunkModel, steps: Sequence[PendingStep]) -> list[Prediction]:
    """One model call for the begun steps of any number of policies: their inputs and noise stacked,
    the actions split back. Each step's actions equal those of its own call within float32 rounding
    (each row's noise is its policy's; rows do not attend to each other)."""
    if len(steps) == 1:
        return [model.predict(steps[0].inputs, steps[0].noise)]
    inputs = PolicyInputs(
        images={key: np.concatenate([s.inputs.images[key] for s in steps]) for key in steps[0].inputs.images},
        state=np.concatenate([s.inputs.state for s in steps]),
        tasks=[task for s in steps for task in s.inputs.tasks],
    )
    together = model.predict(inputs, torch.cat([s.noise for s in steps]))
    bounds = np.cumsum([0, *(s.rows for s in steps)])
    return [
        Prediction(together.actions[start:end], together.model_seconds, together.total_seconds)
        for start, end in itertools.pairwise(bounds)
    ]


class Policy:
    """One episode stream over a `ChunkModel`: `act`, `act_chunk`, `reset`, and `begin`/`finish` around
    a shared model call (not thread-safe; one per connection, one step at a time)."""

    def __init__(self, model: ChunkModel, execution: ExecutionConfig | None = None) -> None:
        self.model = model
        self.execution = execution = execution or ExecutionConfig()
        chunk_size = model.spec.chunk_size
        if execution.ensemble and execution.action_steps not in (None, 1):
            raise OptionError("--ensemble predicts a chunk every step: --action-steps does not apply")
        self.action_steps = 1 if execution.ensemble else execution.action_steps or model.spec.n_action_steps
        if not 1 <= self.action_steps <= chunk_size:
            raise OptionError(f"--action-steps {self.action_steps}: must be 1..{chunk_size} (the chunk size)")
        self._generator = torch.Generator(device="cpu")
        self._queue: deque[np.ndarray] = deque()
        self._ensembler = None
        if execution.ensemble:
            from lerobot.policies.act.modeling_act import ACTTemporalEnsembler

            self._ensembler = ACTTemporalEnsembler(execution.ensemble_coeff, chunk_size)
        self._batch_size: int | None = None
        self.reset()

    def reset(self) -> None:
        """A new episode: forget queued and ensembled actions, re-seed the noise."""
        self._generator.manual_seed(self.execution.seed)
        self._queue.clear()
        if self._ensembler is not None:
            self._ensembler.reset()
        self._batch_size = None

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """The next action: float32 [23], or [B, 23] for a batched observation."""
        step = self.step(observation)
        return step.action if step.batched else step.action[0]

    def act_chunk(self, observation: Mapping[str, Any], size: int) -> tuple[np.ndarray, np.ndarray]:
        """(action, chunk): the first `size` actions of a chunk predicted from this observation, for a
        client that replays them itself ([K, 23], or [B, K, 23] batched)."""
        step = self.step(observation, chunk_size=size)
        if step.chunk is None:
            raise ValueError(f"act_chunk: {size} actions asked, a chunk holds {self.model.spec.chunk_size}")
        return (step.action, step.chunk) if step.batched else (step.action[0], step.chunk[0])

    def step(self, observation: Mapping[str, Any], chunk_size: int | None = None) -> Step:
        pending = self.begin(observation, chunk_size)
        prediction = predict_together(self.model, [pending])[0] if pending.needs_model else None
        return self.finish(pending, prediction)

    def begin(self, observation: Mapping[str, Any], chunk_size: int | None = None) -> PendingStep:
        """Adapt the observation; draw the noise when this step needs a prediction. A `chunk_size` above
        the checkpoint's chunk is served as a plain step (no `action_chunk`: the evaluator then asks once
        per step) instead of an error that would abort its run."""
        if chunk_size is not None and chunk_size < 1:
            raise ObservationError(f"__action_chunk_size__: {chunk_size}, expected K >= 1")
        if chunk_size is not None and chunk_size > self.model.spec.chunk_size:
            self.model.warn_chunk_size_once(chunk_size)
            chunk_size = None
        inputs, batched = self.model.adapter(observation)
        if self._batch_size not in (None, inputs.batch_size):
            self.reset()  # another number of environments: a new stream
        self._batch_size = inputs.batch_size
        due = chunk_size is not None or self._ensembler is not None or not self._queue
        noise = self.model.noise(inputs.batch_size, self._generator) if due else None
        return PendingStep(inputs, batched, chunk_size, noise)

    def finish(self, pending: PendingStep, prediction: Prediction | None) -> Step:
        """The action of a begun step, from its prediction (None when it needed none)."""
        if pending.needs_model != (prediction is not None):
            raise ValueError("finish: a step gets a prediction exactly when it needs one")
        if pending.chunk_size is not None:
            return self._replayed_chunk(pending, prediction)
        if self._ensembler is not None:
            action = self._ensembler.update(torch.from_numpy(prediction.actions)).numpy()
            return Step(action.astype(np.float32, copy=False), None, pending.batched, prediction)
        if prediction is not None:
            self._queue.extend(prediction.actions.transpose(1, 0, 2)[: self.action_steps])
        return Step(self._queue.popleft(), None, pending.batched, prediction)

    def _replayed_chunk(self, pending: PendingStep, prediction: Prediction) -> Step:
        """A fresh chunk; the client executes it, so this stream's queued/ensembled actions are dropped."""
        self._queue.clear()
        if self._ensembler is not None:
            self._ensembler.reset()
        chunk = np.ascontiguousarray(prediction.actions[:, : pending.chunk_size])
        return Step(chunk[:, 0], chunk, pending.batched, prediction)
