"""From a checkpoint and a shard set to the model's input: which member holds each of the checkpoint's
cameras (checked against the set: `image_members`), frames as `PolicyInputs` (`policy_inputs`, fed to
the model by `InputsAdapter`), and the seeded noise of each frame's open-loop prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deploy.adapter import PolicyInputs
from deploy.checkpoint import DeploySpec
from deploy.eval.config import EvalError
from deploy.eval.frames import EvalFrames, Frame
from deploy.policy import ChunkModel, ExecutionConfig
from schemas.manifest import Manifest
from schemas.r1pro import LayoutError, camera_for_key
from schemas.sample import STATE_MEMBER, SampleMeta, image_member
from shards.codec import check_image_size, decode_image_into, decode_npy
from shards.reader import ShardSet


def image_members(
    spec: DeploySpec, shard_set: ShardSet, execution: ExecutionConfig | None = None
) -> dict[str, str]:
    """Policy image key -> the set's member holding that camera; an `EvalError` when the checkpoint's
    features do not match the set (camera, frame size, state, action, chunk size)."""
    manifest, where = shard_set.manifest, f"--checkpoint {spec.path}"
    cameras = manifest.cameras
    members: dict[str, str] = {}
    for camera in spec.cameras:
        by_key = [n for n, c in cameras.items() if c.video_key == camera.key]
        try:
            name = by_key[0] if by_key else camera_for_key(camera.key).name
        except LayoutError:
            name = None
        if name not in cameras:
            raise EvalError(
                f"{where}: image feature {camera.key} has no camera in the shard set {shard_set.location} "
                f"(its cameras: {', '.join(sorted(cameras))})"
            )
        stored = (cameras[name].height, cameras[name].width)
        if stored != (camera.height, camera.width):
            raise EvalError(
                f"{where}: camera {name} was trained on {camera.height}x{camera.width} frames, the shard set "
                f"stores {stored[0]}x{stored[1]}"
            )
        members[camera.key] = image_member(name, cameras[name].encoding)
    layout, indices = manifest.state_layout, manifest.state.indices
    if (layout.name, indices) != (spec.layout.name, spec.state_indices):
        raise EvalError(
            f"{where}: the policy's state is {spec.state_dim} dims of {spec.layout.describe()} (indices "
            f"{list(spec.state_indices)[:8]}...), the shard set's {len(indices)} dims of {layout.describe()} "
            f"(indices {list(indices)[:8]}...)"
        )
    if manifest.action.dim != spec.action_dim:
        raise EvalError(f"{where}: action dim {spec.action_dim}, the shard set's {manifest.action.dim}")
    if spec.chunk_size > manifest.horizon:
        raise EvalError(
            f"{where}: chunk size {spec.chunk_size} is above the shard set's stored horizon {manifest.horizon}"
        )
    steps = execution.action_steps if execution is not None else None
    if steps is not None and not (execution.ensemble or steps <= spec.chunk_size):
        raise EvalError(f"--action-steps {steps}: above the chunk size {spec.chunk_size} of {spec.path}")
    return members


def input_problems(raw: dict, manifest: Manifest) -> list[str]:
    """What `sample_problems` leaves to the evaluation's own reads of the images: each camera's must be
    its stored size by its header (read before anything is decoded or allocated: an oversized JPEG is
    an error, not a decode)."""
    problems = []
    for name, camera in manifest.cameras.items():
        member = image_member(name, camera.encoding)
        if member in raw:
            try:
                check_image_size(raw[member], camera.height, camera.width)
            except ValueError as exc:
                problems.append(f"{member}: {exc}")
    return problems


def progress_problems(meta: SampleMeta) -> list[str]:
    """The json's progress must be in [0, 1]: the evaluation bins frames by it (NaN would bin nowhere)."""
    if not 0 <= meta.progress <= 1:
        return [f"json progress {meta.progress!r:.40}: expected a number in [0, 1]"]
    return []


def policy_inputs(
    data: EvalFrames, index: Sequence[int], spec: DeploySpec, members: dict[str, str]
) -> PolicyInputs:
    """The frames `index` as `PolicyInputs`: what the adapter gives the policy at the robot."""
    images = {}
    for camera in spec.cameras:
        frames = np.empty((len(index), camera.height, camera.width, 3), np.uint8)
        for row, i in enumerate(index):
            decode_image_into(data.samples[i][members[camera.key]], frames[row])
        images[camera.key] = frames
    state = np.stack([decode_npy(data.samples[i][STATE_MEMBER]) for i in index]).astype(np.float32)
    return PolicyInputs(images=images, state=state, tasks=[data.frames[i].task for i in index])


def frame_seed(seed: int, episode: int, frame: int) -> int:
    """The seed of one frame's flow-matching noise in the open-loop evaluation."""
    return (seed * 0x9E3779B97F4A7C15 + episode * 1_000_003 + frame) % (2**63 - 1)


def frame_noise(model: ChunkModel, seed: int, frames: Sequence[Frame]) -> torch.Tensor:
    generator = torch.Generator(device="cpu")
    rows = []
    for frame in frames:
        generator.manual_seed(frame_seed(seed, frame.episode, frame.frame))
        rows.append(model.noise(1, generator))
    return torch.cat(rows)


class InputsAdapter:
    """The adapter of a `ChunkModel` fed `PolicyInputs` (shard samples) instead of evaluator
    observations: `Policy.step(inputs)` then runs exactly as served, batched (one stream per row)."""

    def __init__(self, spec: DeploySpec) -> None:
        self.spec = spec

    def __call__(self, inputs: PolicyInputs) -> tuple[PolicyInputs, bool]:
        return inputs, True
