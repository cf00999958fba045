"""The evaluator's observation -> the checkpoint's inputs, exactly as training saw them.

The BEHAVIOR evaluator sends a flat map (see shared/BEHAVIOR.md, "The evaluator's policy protocol"):
three RGBA cameras at whatever size its environment wrapper renders, the proprio vector (256 dims for
the 2025 layout, 61 for 2026) and `task_id`. Per camera the alpha channel is dropped and the frame is
resized to the checkpoint's stored size with `shards.frames.resize_rgb`, the function `b1k-preprocess`
resized the training frames with; the state is `proprio[indices]` with the layout and indices the
checkpoint records; the prompt is the task the checkpoint was trained on for that `task_id`.

An observation may carry a leading batch dimension (several environments; the 2026 evaluator always
sends one, B = 1 included): then every camera is B x H x W x C, the proprio B x D and `task_id` a
scalar, [1], [B] or [B, 1] (the 2026 evaluator stacks one [1] array per environment). Anything else
is an `ObservationError` naming the key and what was expected.

A request is bounded before anything is resized or run: at most `max_batch` environments and
`max_pixels` camera pixels (all cameras, all environments), read from the arrays' shapes alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy.checkpoint import CameraInput, DeploySpec
from schemas.errors import B1kError
from schemas.tasks import TaskInfo
from shards.frames import resize_rgb

logger = logging.getLogger(__name__)

# The flattened OmniGibson observation keys of the R1Pro robot (`robot_r1`), per camera name.
CAMERA_KEYS: dict[str, str] = {
    "head": "robot_r1::robot_r1:zed_link:Camera:0::rgb",
    "left_wrist": "robot_r1::robot_r1:left_realsense_link:Camera:0::rgb",
    "right_wrist": "robot_r1::robot_r1:right_realsense_link:Camera:0::rgb",
}
PROPRIO_KEY = "robot_r1::proprio"
TASK_KEY = "task_id"
DEFAULT_MAX_IMAGE_SIDE = 4096  # px; the evaluator renders at most 720
# The 2026 evaluator's largest real request: a few environments at full resolution (head 720 x 720,
# wrists 480 x 480: 979,200 camera pixels each). 16 of them fit both bounds.
FULL_RESOLUTION_PIXELS = 720 * 720 + 2 * 480 * 480
DEFAULT_MAX_BATCH = 16  # environments per request
DEFAULT_MAX_PIXELS = 16_000_000  # camera pixels per request (16 full-resolution environments: 15.7 M)
MAX_TASKS_NAMED = 20  # tasks an unknown-task error lists


class ObservationError(B1kError, ValueError):
    """An observation the checkpoint cannot act on; the message names the key and what was expected."""


@dataclass(frozen=True)
class PolicyInputs:
    """A batch as training fed it: uint8 RGB frames at the stored size, the state, the prompts.

    Also what `b1k-eval` builds from shard samples, so both run the same policy code."""

    images: dict[str, np.ndarray]  # policy feature key -> uint8 (B, H, W, 3)
    state: np.ndarray  # float32 (B, S)
    tasks: list[str]  # B prompts

    @property
    def batch_size(self) -> int:
        return int(self.state.shape[0])


@dataclass
class ObservationAdapter:
    """Turns evaluator observations into `PolicyInputs` for one checkpoint (shared by all connections)."""

    spec: DeploySpec
    prompt: str | None = None  # overrides the task table for every task_id
    max_image_side: int = DEFAULT_MAX_IMAGE_SIDE
    max_batch: int = DEFAULT_MAX_BATCH
    max_pixels: int = DEFAULT_MAX_PIXELS
    _warned: set[str] = field(default_factory=set, repr=False)
    _pool: ThreadPoolExecutor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # one thread per camera for one request; more for the requests of several connections at once
        threads = max(len(self.spec.cameras), os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="b1k-resize")
        if self.prompt is None and not self.spec.tasks:
            raise ObservationError(
                "the checkpoint records no task table (written before tasks were recorded): pass --prompt "
                "with the task string it was trained on"
            )

    def __call__(self, observation: Mapping[str, Any]) -> tuple[PolicyInputs, bool]:
        """(inputs, batched): `batched` is whether the observation had a leading batch dimension."""
        self.check_budget(observation)
        head = self._image(observation, self.spec.cameras[0])
        batched = head.ndim == 4
        batch = head.shape[0] if batched else 1
        frames = [self._frames(observation, camera, batched, batch) for camera in self.spec.cameras]
        state = self._state(observation, batched, batch)
        tasks = self._tasks(observation, batch)
        # The three cameras resize in parallel (Pillow releases the GIL): 720/480 -> 224 takes the head's
        # 2.4 ms instead of the sum, 4.8 ms.
        resized = self._pool.map(self._resize, self.spec.cameras, frames)
        images = {camera.key: out for camera, out in zip(self.spec.cameras, resized, strict=True)}
        return PolicyInputs(images, state, tasks), batched

    def check_budget(self, observation: Mapping[str, Any]) -> None:
        """Refuse a request above `max_batch` environments or `max_pixels` camera pixels from its shapes
        alone, before anything is resized, copied or batched (a 1 MB frame of 1 x 1 images once asked
        for 4,000 environments: 67 s and 3.9 GB)."""
        images = [self._image(observation, camera) for camera in self.spec.cameras]
        head_key = CAMERA_KEYS[self.spec.cameras[0].name]
        batch = images[0].shape[0] if images[0].ndim == 4 else 1
        if not 1 <= batch <= self.max_batch:
            raise ObservationError(
                f"{head_key}: a batch of {batch} environments, expected 1..{self.max_batch} per request "
                f"(--max-batch)"
            )
        pixels = sum(int(np.prod(image.shape[:-1], dtype=np.int64)) for image in images)
        if pixels > self.max_pixels:
            raise ObservationError(
                f"the request's {len(images)} cameras hold {pixels:,} pixels, above the limit of "
                f"{self.max_pixels:,} per request (--max-request-mpx; one full-resolution environment is "
                f"{FULL_RESOLUTION_PIXELS:,})"
            )

    # -- cameras

    def _image(self, observation: Mapping[str, Any], camera: CameraInput) -> np.ndarray:
        key = CAMERA_KEYS[camera.name]
        if key not in observation:
            raise ObservationError(f"{key}: missing (the {camera.name} camera, uint8 H x W x 4 RGBA)")
        image = observation[key]
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            what = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
            raise ObservationError(f"{key}: expected a uint8 array H x W x 4 (RGBA), got {what}")
        if image.ndim not in (3, 4) or image.shape[-1] not in (3, 4):
            raise ObservationError(
                f"{key}: expected H x W x 4 (RGBA) or B x H x W x 4, got shape {list(image.shape)}"
            )
        height, width = image.shape[-3], image.shape[-2]
        if not (0 < height <= self.max_image_side and 0 < width <= self.max_image_side):
            raise ObservationError(
                f"{key}: image {height}x{width} refused: sides must be 1..{self.max_image_side} px "
                f"(--max-image-side)"
            )
        return image

    def _frames(
        self, observation: Mapping[str, Any], camera: CameraInput, batched: bool, batch: int
    ) -> np.ndarray:
        image = self._image(observation, camera)
        key = CAMERA_KEYS[camera.name]
        if (image.ndim == 4) != batched or (batched and image.shape[0] != batch):
            expected = f"B={batch} x H x W x 4" if batched else "H x W x 4"
            raise ObservationError(
                f"{key}: expected {expected} like the head camera, got shape {list(image.shape)}"
            )
        frames = image if batched else image[None]
        self._warn_resolution(camera, key, frames.shape[1], frames.shape[2])
        return frames

    @staticmethod
    def _resize(camera: CameraInput, frames: np.ndarray) -> np.ndarray:
        """Each frame without its alpha, at the stored size: the preprocessor's resize."""
        out = np.empty((frames.shape[0], camera.height, camera.width, 3), np.uint8)
        for i, frame in enumerate(frames):
            out[i] = resize_rgb(frame, camera.height, camera.width)
        return out

    def _warn_resolution(self, camera: CameraInput, key: str, height: int, width: int) -> None:
        source = (camera.source_height, camera.source_width)
        if None in source or source == (height, width) or camera.name in self._warned:
            return
        self._warned.add(camera.name)
        logger.warning(
            "%s: the evaluator renders %dx%d, the checkpoint was trained on %dx%d frames resized to %dx%d; "
            "train on the resolution you are evaluated at (see the README)",
            key, height, width, source[0], source[1], camera.height, camera.width,
        )  # fmt: skip

    # -- state

    def _state(self, observation: Mapping[str, Any], batched: bool, batch: int) -> np.ndarray:
        layout = self.spec.layout
        if PROPRIO_KEY not in observation:
            raise ObservationError(
                f"{PROPRIO_KEY}: missing (the {layout.dim}-dim proprio of {layout.describe()})"
            )
        proprio = observation[PROPRIO_KEY]
        if not isinstance(proprio, np.ndarray) or proprio.dtype.kind not in "fiu":
            what = proprio.dtype if isinstance(proprio, np.ndarray) else type(proprio).__name__
            raise ObservationError(f"{PROPRIO_KEY}: expected a float array of {layout.dim}, got {what}")
        expected = (batch, layout.dim) if batched else (layout.dim,)
        if proprio.shape != expected:
            raise ObservationError(
                f"{PROPRIO_KEY}: expected shape {list(expected)} (the checkpoint's state layout is "
                f"{layout.describe()}), got {list(proprio.shape)}"
            )
        rows = proprio.reshape(batch, layout.dim)
        state = rows[:, list(self.spec.state_indices)].astype(np.float32)
        if not np.isfinite(state).all():
            raise ObservationError(f"{PROPRIO_KEY}: the dims the policy uses hold NaN or inf")
        return state

    # -- prompt

    def _tasks(self, observation: Mapping[str, Any], batch: int) -> list[str]:
        if self.prompt is not None:
            return [self.prompt] * batch
        if TASK_KEY not in observation:
            raise ObservationError(f"{TASK_KEY}: missing (the challenge's task index, int)")
        ids = np.asarray(observation[TASK_KEY])
        # an int, one per request, or one per environment: [B] or the 2026 evaluator's stacked [B, 1]
        if ids.dtype.kind not in "iu" or ids.shape not in ((), (1,), (batch,), (batch, 1)):
            raise ObservationError(
                f"{TASK_KEY}: expected an int, [1], [{batch}] or [{batch}, 1] ints (the evaluator's task "
                f"ids), got {_describe(observation[TASK_KEY])}"
            )
        ids = np.broadcast_to(ids.reshape(-1), (batch,))
        return [self._task(int(task_id)) for task_id in ids]

    def _task(self, task_id: int) -> str:
        tasks = self.spec.tasks
        if task_id in tasks:
            return tasks[task_id]
        if self._any_task_is_the_only_one():
            ((only_id, only),) = tasks.items()
            if f"task:{task_id}" not in self._warned:
                self._warned.add(f"task:{task_id}")
                logger.warning(
                    "task_id %d: the checkpoint was trained on task %d only (%r), whose evaluator id is not "
                    "recorded; acting with its prompt",
                    task_id, only_id, only,
                )  # fmt: skip
            return only
        raise ObservationError(
            f"{TASK_KEY}: {task_id} is none of the checkpoint's tasks ({_known_tasks(self.spec)}); pass "
            f"--prompt to act on it anyway"
        )

    def _any_task_is_the_only_one(self) -> bool:
        """A single-task checkpoint whose task has no known evaluator id (trained on a dataset that
        numbers its only task 0, or written before checkpoints recorded task details) acts on any id."""
        if len(self.spec.tasks) != 1:
            return False
        (only_id,) = self.spec.tasks
        details: TaskInfo | None = self.spec.task_details.get(only_id)
        return details is None or not details.known


def _known_tasks(spec: DeploySpec) -> str:
    """`6 hiding_Easter_eggs, 17 bringing_water`: ids and names (prompts where no name is recorded)."""
    named = []
    for task_id in sorted(spec.tasks)[:MAX_TASKS_NAMED]:
        details = spec.task_details.get(task_id)
        named.append(f"{task_id} {details.name if details and details.name else repr(spec.tasks[task_id])}")
    more = len(spec.tasks) - len(named)
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def _describe(value: Any) -> str:
    """A client's value in a few words: its type, dtype and shape, never its contents."""
    if isinstance(value, np.ndarray | np.generic):
        return f"{value.dtype} of shape {list(np.shape(value))}"
    return type(value).__name__
