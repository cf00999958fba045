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
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.checkpoint import read_smolvla_config
from schemas.errors import B1kError
from schemas.r1pro import DEFAULT_LAYOUT, LayoutError, StateLayout, camera_for_key, layout_named
from schemas.tasks import TaskInfo
from shards.frames import RESIZE_METHOD, RESIZE_METHODS

logger = logging.getLogger(__name__)

PROVENANCE_FILE = "b1k_provenance.json"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
# what checkpoints written before b1k-train's action recipes were trained with
ABSOLUTE_MEAN_STD = {"repr": "absolute", "norm": "mean_std", "relative_dims": []}


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
    # pipelines themselves (lerobot's relative/absolute steps, deploy.action_norm), recorded for reports
    action_recipe: dict = field(default_factory=lambda: dict(ABSOLUTE_MEAN_STD))
    ema_decay: float | None = None

    @property
    def recipe_label(self) -> str:
        """`relative/per_timestep/ema0.999`: how the checkpoint's actions were trained."""
        label = f"{self.action_recipe.get('repr', 'absolute')}/{self.action_recipe.get('norm', 'mean_std')}"
        return label + (f"/ema{self.ema_decay:g}" if self.ema_decay is not None else "")

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


def read_provenance(directory: Path) -> dict:
    path = directory / PROVENANCE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{directory}: no {PROVENANCE_FILE} (not written by b1k-train?): the state indices and camera "
            f"sizes the policy was trained with are unknown"
        )
    try:
        provenance = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(provenance, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return provenance


def _camera_input(key: str, shape: tuple[int, ...], recorded: dict) -> CameraInput:
    try:
        camera = camera_for_key(key)
    except LayoutError as exc:
        raise CheckpointError(str(exc)) from None
    if len(shape) != 3 or shape[0] != 3:
        raise CheckpointError(f"image feature {key}: shape {list(shape)}, expected [3, H, W]")
    height, width = int(shape[1]), int(shape[2])
    entry = recorded.get(camera.name, {})
    if entry and (entry.get("height"), entry.get("width")) != (height, width):
        raise CheckpointError(
            f"camera {camera.name}: the policy config says {height}x{width}, the provenance "
            f"{entry.get('height')}x{entry.get('width')}"
        )
    resize = entry.get("resize", RESIZE_METHOD)
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
        source_height=entry.get("source_height"),
        source_width=entry.get("source_width"),
    )


def _tasks(provenance: dict) -> dict[int, str]:
    table = provenance.get("tasks") or {}
    try:
        return {int(k): str(v) for k, v in table.items()}
    except (AttributeError, ValueError):
        raise CheckpointError(
            f"provenance tasks: expected {{task_index: task}}, got {table!r:.200}"
        ) from None


def _task_details(provenance: dict) -> dict[int, TaskInfo]:
    """`task_details`: {"<task id>": {name, instruction, prompt, evaluator_id, source_index}}; an
    evaluator id, when recorded, is the task's id (the table is keyed by it)."""
    table = provenance.get("task_details") or {}
    if not isinstance(table, dict):
        raise CheckpointError(f"provenance task_details: expected {{task id: {{...}}}}, got {table!r:.200}")
    details = {}
    for key, entry in table.items():
        if not isinstance(entry, dict) or not str(key).isdigit():
            raise CheckpointError(f"provenance task_details[{key!r:.40}]: expected an id and an object")
        task_id = int(key)
        evaluator_id = entry.get("evaluator_id")
        if evaluator_id is not None and evaluator_id != task_id:
            raise CheckpointError(
                f"provenance task_details[{task_id}]: evaluator_id {evaluator_id!r:.40} differs from its id"
            )
        details[task_id] = TaskInfo.from_json(task_id, entry)
    return details


def spec_from(directory: Path, config: Any, provenance: dict) -> DeploySpec:
    """The `DeploySpec` of a checkpoint from its lerobot policy config and its provenance."""
    state = provenance.get("state") or {}
    try:
        layout = layout_named(state["layout"]) if "layout" in state else DEFAULT_LAYOUT
    except LayoutError as exc:
        raise CheckpointError(str(exc)) from None
    indices = tuple(int(i) for i in state.get("indices", ()))
    if not indices:
        raise CheckpointError(f"{directory / PROVENANCE_FILE}: no state.indices")
    outside = [i for i in indices if not 0 <= i < layout.dim]
    if outside:
        raise CheckpointError(f"state indices {outside} are outside the layout {layout.describe()}")
    if "source_dim" in state and int(state["source_dim"]) != layout.dim:
        raise CheckpointError(f"state.source_dim {state['source_dim']} != the layout's {layout.describe()}")
    features = config.input_features
    if STATE_KEY not in features or tuple(features[STATE_KEY].shape) != (len(indices),):
        raise CheckpointError(
            f"the policy's {STATE_KEY} is {features.get(STATE_KEY)}, the provenance records {len(indices)} indices"
        )
    recorded = provenance.get("cameras") or {}
    cameras = tuple(
        _camera_input(key, tuple(config.image_features[key].shape), recorded) for key in config.image_features
    )
    if not cameras:
        raise CheckpointError("the policy has no image features")
    action = config.output_features.get(ACTION_KEY)
    if action is None:
        raise CheckpointError(f"the policy has no {ACTION_KEY} output")
    return DeploySpec(
        path=directory,
        cameras=cameras,
        layout=layout,
        state_indices=indices,
        tasks=_tasks(provenance),
        task_details=_task_details(provenance),
        action_dim=int(action.shape[0]),
        chunk_size=int(config.chunk_size),
        n_action_steps=int(config.n_action_steps),
        step=provenance.get("step"),
        action_recipe=dict(provenance.get("action_recipe") or ABSOLUTE_MEAN_STD),
        ema_decay=(provenance.get("ema") or {}).get("decay"),
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
