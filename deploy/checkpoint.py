"""A `b1k-train` checkpoint, read with lerobot alone, and what deploying it needs to know.

`load_checkpoint(dir)` returns the SmolVLA policy, lerobot's pre/post-processors (as saved, with the
training stats) and a `DeploySpec` built from the policy config and `b1k_provenance.json`: the cameras
(policy feature key, stored size, resize method, source size), the state layout and the indices taken
from the proprio, the task table, the chunk size.

Both checkpoint generations are served:

- current: image features keyed by the dataset's video keys (`observation.images.rgb.head`), and a
  provenance with `state.layout`, `cameras.<name>.resize` / `source_height` / `source_width`, `tasks`
  (and, from b1k-train's task-identity change on, `task_details`: each task's name, instruction,
  prompt and evaluator id, `schemas.tasks.TaskInfo`);
- older: image features keyed `observation.images.head`, no layout (the 2025 one, 256 dims), cameras
  with only their stored size (resized with `pillow-bilinear`, the only method the preprocessor had),
  no task table (serve them with `--prompt`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.checkpoint import read_smolvla_config
from schemas.errors import B1kError
from schemas.provenance import (
    ABSOLUTE_MEAN_STD,
    PROVENANCE_FILE,
    ActionRecipeRecord,
    CameraRecord,
    Provenance,
    ProvenanceError,
    parse_provenance,
)
from schemas.r1pro import ACTION_KEY, STATE_KEY, LayoutError, StateLayout, camera_for_key
from schemas.tasks import TaskInfo
from shards.frames import RESIZE_METHOD, RESIZE_METHODS

logger = logging.getLogger(__name__)


class CheckpointError(B1kError, ValueError):
    """A directory that is not a servable checkpoint, or one whose records do not fit together."""


@dataclass(frozen=True)
class CameraInput:
    """One camera as the policy saw it in training."""

    name: str  # head, left_wrist, right_wrist
    key: str  # the policy's feature key (current or legacy spelling)
    height: int  # stored size: what the policy was trained on
    width: int
    resize: str  # how source frames became the stored size (`shards.frames`)
    source_height: int | None = None  # the training frames' size before the resize, when recorded
    source_width: int | None = None


@dataclass(frozen=True)
class DeploySpec:
    """Everything the adapter and the executor need, read from the checkpoint (nothing by hand)."""

    path: Path
    cameras: tuple[CameraInput, ...]
    layout: StateLayout
    state_indices: tuple[int, ...]
    tasks: dict[int, str] = field(default_factory=dict)
    # per task id: name, instruction, prompt, evaluator id (empty for checkpoints written before them)
    task_details: dict[int, TaskInfo] = field(default_factory=dict)
    action_dim: int = 23
    chunk_size: int = 50
    n_action_steps: int = 50
    step: int | None = None
    # b1k-train's action recipe (train.recipes): repr, norm, relative dims; carried out by the saved
    # pipelines themselves (lerobot's relative/absolute steps, the per-timestep steps), recorded for reports
    action_recipe: ActionRecipeRecord = ABSOLUTE_MEAN_STD
    ema_decay: float | None = None

    @property
    def recipe_label(self) -> str:
        """`relative/per_timestep/ema0.999`: how the checkpoint's actions were trained."""
        return self.action_recipe.label + (f"/ema{self.ema_decay:g}" if self.ema_decay is not None else "")

    @property
    def state_dim(self) -> int:
        return len(self.state_indices)

    def metadata(self) -> dict[str, Any]:
        """What the server tells a client on connecting (plain msgpack types)."""
        return {
            "policy": "smolvla",
            "server": "b1k-serve",
            "checkpoint": self.path.name if self.path.name != "pretrained_model" else self.path.parent.name,
            "step": self.step,
            "action_dim": self.action_dim,
            "chunk_size": self.chunk_size,
            "state_layout": self.layout.name,
            "proprio_dim": self.layout.dim,
            "cameras": {c.name: [c.height, c.width] for c in self.cameras},
            "tasks": {str(k): v for k, v in sorted(self.tasks.items())},
            "action_recipe": self.recipe_label,
        }


@dataclass
class LoadedCheckpoint:
    """The policy and its processors, ready to run, with their `DeploySpec`."""

    policy: Any  # lerobot SmolVLAPolicy, in eval mode on `device`
    preprocessor: Any  # lerobot PolicyProcessorPipeline
    postprocessor: Any
    spec: DeploySpec
    device: str


def find_checkpoint(path: str | Path) -> Path:
    """The `pretrained_model` dir for a checkpoint dir, a step dir, or a run dir (its `checkpoints/last`)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise CheckpointError(f"--checkpoint {path}: no such directory")
    for candidate in (root, root / "pretrained_model", root / "checkpoints" / "last" / "pretrained_model"):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate.resolve()
    raise CheckpointError(
        f"--checkpoint {path}: not a checkpoint (expected config.json and model.safetensors in it, in its "
        f"pretrained_model/, or in checkpoints/last/pretrained_model/ of a b1k-train run)"
    )


def read_provenance(directory: Path) -> Provenance:
    """The checkpoint's `b1k_provenance.json`, validated (`schemas.provenance`)."""
    path = directory / PROVENANCE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{directory}: no {PROVENANCE_FILE} (not written by b1k-train?): the state indices and camera "
            f"sizes the policy was trained with are unknown"
        )
    try:
        return parse_provenance(path.read_bytes(), str(path))
    except ProvenanceError as exc:
        raise CheckpointError(str(exc)) from None


def _camera_input(key: str, shape: tuple[int, ...], recorded: dict[str, CameraRecord]) -> CameraInput:
    try:
        camera = camera_for_key(key)
    except LayoutError as exc:
        raise CheckpointError(str(exc)) from None
    if len(shape) != 3 or shape[0] != 3:
        raise CheckpointError(f"image feature {key}: shape {list(shape)}, expected [3, H, W]")
    height, width = int(shape[1]), int(shape[2])
    entry = recorded.get(camera.name)
    if entry is not None and (entry.height, entry.width) != (height, width):
        raise CheckpointError(
            f"camera {camera.name}: the policy config says {height}x{width}, the provenance "
            f"{entry.height}x{entry.width}"
        )
    # checkpoints written before the resize was recorded: the one method the preprocessor had then
    resize = entry.resize if entry is not None and entry.resize is not None else RESIZE_METHOD
    if resize not in RESIZE_METHODS:
        raise CheckpointError(
            f"camera {camera.name}: resize method {resize!r} is unknown (known: {', '.join(RESIZE_METHODS)})"
        )
    return CameraInput(
        name=camera.name,
        key=key,
        height=height,
        width=width,
        resize=resize,
        source_height=None if entry is None else entry.source_height,
        source_width=None if entry is None else entry.source_width,
    )


def spec_from(directory: Path, config: Any, provenance: Provenance) -> DeploySpec:
    """The `DeploySpec` of a checkpoint from its lerobot policy config and its provenance."""
    state = provenance.state
    features = config.input_features
    if STATE_KEY not in features or tuple(features[STATE_KEY].shape) != (len(state.indices),):
        raise CheckpointError(
            f"the policy's {STATE_KEY} is {features.get(STATE_KEY)}, the provenance records "
            f"{len(state.indices)} indices"
        )
    cameras = tuple(
        _camera_input(key, tuple(config.image_features[key].shape), provenance.cameras)
        for key in config.image_features
    )
    if not cameras:
        raise CheckpointError("the policy has no image features")
    action = config.output_features.get(ACTION_KEY)
    if action is None:
        raise CheckpointError(f"the policy has no {ACTION_KEY} output")
    return DeploySpec(
        path=directory,
        cameras=cameras,
        layout=state.state_layout,
        state_indices=state.indices,
        tasks=dict(provenance.tasks),
        task_details=dict(provenance.task_details),
        action_dim=int(action.shape[0]),
        chunk_size=int(config.chunk_size),
        n_action_steps=int(config.n_action_steps),
        step=provenance.step,
        action_recipe=provenance.action_recipe,
        ema_decay=provenance.ema_decay,
    )


def resolve_device(wanted: str) -> str:
    """`auto` -> cuda when available, else cpu; an explicit device must exist."""
    import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(wanted)
    except RuntimeError:
        raise CheckpointError(f"--device {wanted!r}: not a torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"--device {wanted} given but CUDA is not available on this machine")
    return str(device)


def _skipped_init():
    """A context in which modules are built without their random initialisation (transformers'
    `no_init_weights`), or a plain one where this transformers has none."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5: the weights are initialised, then overwritten (slower)
        return contextlib.nullcontext()
    return no_init_weights()


def _policy_with_weights(directory: Path, config: Any) -> Any:
    """`SmolVLAPolicy.from_pretrained(directory, config=config)`, without the random initialisation of
    the weights the checkpoint overwrites: building SmolVLA at the real SmolVLM2-500M size takes 0.14 s
    instead of 5.7 s (CPU), and a checkpoint missing a weight is an error instead of a random weight."""
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from safetensors.torch import load_model

    with _skipped_init():
        policy = SmolVLAPolicy(config)
    missing, unexpected = load_model(policy, directory / "model.safetensors", strict=False, device="cpu")
    if missing:
        raise CheckpointError(
            f"{directory}: model.safetensors lacks {len(missing)} weights: {sorted(missing)[:5]}"
        )
    if unexpected:
        logger.warning(
            "%s: %d weights the policy does not use: %s", directory, len(unexpected), unexpected[:5]
        )
    return policy


def load_checkpoint(
    path: str | Path, *, device: str = "auto", vlm_model: str | None = None
) -> LoadedCheckpoint:
    """Load a checkpoint with lerobot alone: `SmolVLAPolicy.from_pretrained` and
    `make_pre_post_processors(config, pretrained_path=...)`. `vlm_model` points the backbone (its config
    and tokenizer; the weights come from the checkpoint) at a local dir, for machines without the Hub."""
    from lerobot.policies.factory import make_pre_post_processors

    directory = find_checkpoint(path)
    provenance = read_provenance(directory)
    device = resolve_device(device)
    try:
        config = read_smolvla_config(str(directory))
    except ValueError as exc:
        raise CheckpointError(f"{directory}: {exc}") from exc
    spec = spec_from(directory, config, provenance)
    config.device = device
    config.load_vlm_weights = False  # the checkpoint carries every weight
    overrides: dict[str, dict] = {"device_processor": {"device": device}}
    if vlm_model is not None:
        config.vlm_model_name = str(Path(vlm_model).expanduser().resolve())
        overrides["tokenizer_processor"] = {"tokenizer_name": config.vlm_model_name}
    try:
        policy = _policy_with_weights(directory, config)
    except OSError as exc:
        raise CheckpointError(
            f"{directory}: cannot load the policy's VLM backbone {config.vlm_model_name!r} ({exc}); pass a "
            f"local copy with --vlm-model DIR"
        ) from exc
    policy.to(device).eval()
    preprocessor, postprocessor = make_pre_post_processors(
        config,
        pretrained_path=str(directory),
        preprocessor_overrides=overrides,
        postprocessor_overrides={"device_processor": {"device": "cpu"}},
    )
    logger.info(
        "loaded %s (step %s, actions %s): %s, state %d dims of %s, chunk %d, on %s",
        directory,
        spec.step,
        spec.recipe_label,
        ", ".join(f"{c.name} {c.height}x{c.width}" for c in spec.cameras),
        spec.state_dim,
        spec.layout.describe(),
        spec.chunk_size,
        device,
    )
    return LoadedCheckpoint(policy, preprocessor, postprocessor, spec, device)
