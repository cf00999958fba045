"""The checkpoint provenance, `b1k_provenance.json`: what every `b1k-train` checkpoint records beside
lerobot's own files of the data it was trained on and of the run. `train/` builds a `Provenance` and
writes it (`dumps`); `deploy/` reads it (`read_provenance`), validated once here, each problem named by
its field and file.

Checkpoints written before a field existed keep loading; an absent field reads as:

- `state.layout`, `state.source_dim` (before layouts were recorded): None, the 2025 layout
  (`Provenance.state.state_layout` is `schemas.r1pro.DEFAULT_LAYOUT`);
- `cameras.<name>` with its stored `height`/`width` only (before the dataset's keys and the resize were
  recorded): `video_key`, `resize` and the source sizes None (frames resized with the one method the
  preprocessor had then, `shards.frames.RESIZE_METHOD`, which deploy applies);
- `tasks`, `task_details` (before task tables, and before tasks carried the evaluator's id): empty;
- `fps`, `trainer` (the first checkpoints): None;
- `action_recipe`, `ema` (before b1k-train's recipes): absolute actions normalised by mean/std
  (`ABSOLUTE_MEAN_STD`), no EMA;
- `sets`, `action`, `horizon`, ... (written by every b1k-train): empty or None when absent.

Only `state.indices` is required: without it the state the policy was trained on is unknown.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import B1kError
from schemas.r1pro import DEFAULT_LAYOUT, LayoutError, StateLayout, layout_named
from schemas.tasks import TaskInfo

PROVENANCE_FILE = "b1k_provenance.json"

JsonObject = dict[str, Any]  # a record kept as written (a manifest's `created_by`, a load report)
_NUMBER = (int, float)


class ProvenanceError(B1kError, ValueError):
    """A provenance file that cannot be read, or whose fields are not what b1k-train writes."""


def _check(value: Any, kind: type | tuple[type, ...], at: str) -> Any:
    """`value`, which must be of `kind` (a bool is not a number here)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ProvenanceError(f"{at}: expected {names}, got {type(value).__name__} {value!r:.60}")
    return value


def _join(at: str, key: str) -> str:
    """The path of field `key` of the object at `at` (`state.indices`; `fps` at the top)."""
    return f"{at}.{key}" if at else key


def _required(data: dict, key: str, kind: type | tuple[type, ...], at: str) -> Any:
    if key not in data:
        raise ProvenanceError(f"{_join(at, key)}: missing")
    return _check(data[key], kind, _join(at, key))


def _optional(data: dict, key: str, kind: type | tuple[type, ...], at: str) -> Any:
    """`data[key]` when present and not null (then of `kind`), else None."""
    value = data.get(key)
    return None if value is None else _check(value, kind, _join(at, key))


def _items(data: dict, key: str, kind: type, at: str) -> tuple:
    """A list field (absent or null: empty), each item of `kind`."""
    values = _optional(data, key, list, at) or []
    return tuple(_check(v, kind, f"{_join(at, key)}[{i}]") for i, v in enumerate(values))


def _object(data: dict, key: str, at: str) -> dict:
    """An object field (absent or null: empty)."""
    return _optional(data, key, dict, at) or {}


def _task_id(key: str, at: str) -> int:
    if not isinstance(key, str) or not key.isdigit():
        raise ProvenanceError(f"{at}: key {key!r:.40} is not a task id")
    return int(key)


@dataclass(frozen=True)
class SetRecord:
    """One `--shards` set the run trained on."""

    location: str
    weight: float  # its share of the mixture
    manifest_sha256: str
    created_by: JsonObject | None  # the manifest's `created_by` and `source`, as recorded
    source: JsonObject | None
    train_samples: int
    val_samples: int

    @classmethod
    def from_json(cls, data: Any, at: str) -> SetRecord:
        _check(data, dict, at)
        return cls(
            location=_required(data, "location", str, at),
            weight=_required(data, "weight", _NUMBER, at),
            manifest_sha256=_required(data, "manifest_sha256", str, at),
            created_by=_optional(data, "created_by", dict, at),
            source=_optional(data, "source", dict, at),
            train_samples=_required(data, "train_samples", int, at),
            val_samples=_required(data, "val_samples", int, at),
        )

    def to_json(self) -> JsonObject:
        return {
            "location": self.location,
            "weight": self.weight,
            "manifest_sha256": self.manifest_sha256,
            "created_by": self.created_by,
            "source": self.source,
            "train_samples": self.train_samples,
            "val_samples": self.val_samples,
        }


@dataclass(frozen=True)
class StateRecord:
    """The state the policy takes: `indices` of the layout's proprio vector, named."""

    indices: tuple[int, ...]
    names: tuple[str, ...] = ()
    preset: str | None = None
    layout: str | None = None  # a `schemas.r1pro.LAYOUTS` name; None: written before layouts (2025)
    source_dim: int | None = None

    @property
    def state_layout(self) -> StateLayout:
        return DEFAULT_LAYOUT if self.layout is None else layout_named(self.layout)

    @classmethod
    def from_json(cls, data: Any, at: str) -> StateRecord:
        _check(data, dict, at)
        record = cls(
            indices=_items(data, "indices", int, at),
            names=_items(data, "names", str, at),
            preset=_optional(data, "preset", str, at),
            layout=_optional(data, "layout", str, at),
            source_dim=_optional(data, "source_dim", int, at),
        )
        record.check(at)
        return record

    def check(self, at: str) -> None:
        """The indices name dims of the layout, and the recorded source dim is the layout's."""
        if not self.indices:
            raise ProvenanceError(
                f"{_join(at, 'indices')}: missing or empty (the state the policy takes is unknown)"
            )
        try:
            layout = self.state_layout
        except LayoutError as exc:
            raise ProvenanceError(f"{_join(at, 'layout')}: {exc}") from None
        outside = [i for i in self.indices if not 0 <= i < layout.dim]
        if outside:
            raise ProvenanceError(
                f"{_join(at, 'indices')}: {outside[:10]} are outside the layout {layout.describe()}"
            )
        if self.source_dim is not None and self.source_dim != layout.dim:
            raise ProvenanceError(
                f"{_join(at, 'source_dim')}: {self.source_dim}, the layout is {layout.describe()}"
            )

    def to_json(self) -> JsonObject:
        return {
            "layout": self.layout,
            "source_dim": self.source_dim,
            "preset": self.preset,
            "indices": list(self.indices),
            "names": list(self.names),
        }


@dataclass(frozen=True)
class ActionRecord:
    dim: int
    names: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any, at: str) -> ActionRecord:
        _check(data, dict, at)
        return cls(_required(data, "dim", int, at), _items(data, "names", str, at))

    def to_json(self) -> JsonObject:
        return {"dim": self.dim, "names": list(self.names)}


# A camera's optional records: absent (None) in checkpoints written before them, and then not written.
_CAMERA_OPTIONAL: dict[str, type] = {
    "video_key": str,  # the dataset's key, which the policy's image feature is named by
    "source_height": int,  # the source frames' size before the resize
    "source_width": int,
    "resize": str,  # how source frames became the stored size (`shards.frames`)
    "encoding": str,  # the shard members' encoding and quality
    "quality": int,
}


@dataclass(frozen=True)
class CameraRecord:
    """One camera as the policy saw it in training: its stored size and how frames got there."""

    height: int
    width: int
    video_key: str | None = None
    source_height: int | None = None
    source_width: int | None = None
    resize: str | None = None
    encoding: str | None = None
    quality: int | None = None

    @classmethod
    def from_json(cls, data: Any, at: str) -> CameraRecord:
        _check(data, dict, at)
        optional = {key: _optional(data, key, kind, at) for key, kind in _CAMERA_OPTIONAL.items()}
        return cls(_required(data, "height", int, at), _required(data, "width", int, at), **optional)

    def to_json(self) -> JsonObject:
        recorded = {key: getattr(self, key) for key in _CAMERA_OPTIONAL}
        return {
            "height": self.height,
            "width": self.width,
            **{key: value for key, value in recorded.items() if value is not None},
        }


@dataclass(frozen=True)
class ActionRecipeRecord:
    """How the action was represented and normalised in training (`train.recipes.ActionRecipe`); the
    saved pipelines carry it out, this records it for reports."""

    repr: str = "absolute"
    norm: str = "mean_std"
    relative_groups: tuple[str, ...] = ()
    relative_dims: tuple[int, ...] = ()
    normalization_mode: str | None = None  # lerobot's mode name (absent before it was recorded)
    stats: str | None = None  # where the action's normaliser stats came from

    @property
    def label(self) -> str:
        """`relative/per_timestep`."""
        return f"{self.repr}/{self.norm}"

    @classmethod
    def from_json(cls, data: Any, at: str) -> ActionRecipeRecord:
        _check(data, dict, at)
        return cls(
            repr=_optional(data, "repr", str, at) or "absolute",
            norm=_optional(data, "norm", str, at) or "mean_std",
            relative_groups=_items(data, "relative_groups", str, at),
            relative_dims=_items(data, "relative_dims", int, at),
            normalization_mode=_optional(data, "normalization_mode", str, at),
            stats=_optional(data, "stats", str, at),
        )

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "repr": self.repr,
            "norm": self.norm,
            "relative_groups": list(self.relative_groups),
            "relative_dims": list(self.relative_dims),
        }
        for key in ("normalization_mode", "stats"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


# what checkpoints written before b1k-train's action recipes were trained with
ABSOLUTE_MEAN_STD = ActionRecipeRecord()


@dataclass(frozen=True)
class TrainerRecord:
    """The b1k-train run that wrote the checkpoint."""

    tool: str
    command: tuple[str, ...]
    started: str  # local time, %Y-%m-%dT%H:%M:%S%z
    world_size: int

    @classmethod
    def from_json(cls, data: Any, at: str) -> TrainerRecord:
        _check(data, dict, at)
        return cls(
            tool=_required(data, "tool", str, at),
            command=_items(data, "command", str, at),
            started=_required(data, "started", str, at),
            world_size=_required(data, "world_size", int, at),
        )

    def to_json(self) -> JsonObject:
        return {
            "tool": self.tool,
            "command": list(self.command),
            "started": self.started,
            "world_size": self.world_size,
        }


def _tasks(data: dict) -> dict[int, str]:
    return {_task_id(k, "tasks"): _check(v, str, f"tasks.{k}") for k, v in _object(data, "tasks", "").items()}


def _task_details(data: dict) -> dict[int, TaskInfo]:
    """{"<task id>": {name, instruction, prompt, evaluator_id, source_index}}; an evaluator id, when
    recorded, is the task's id (the table is keyed by it)."""
    details = {}
    for key, entry in _object(data, "task_details", "").items():
        task_id, at = _task_id(key, "task_details"), f"task_details.{key}"
        _check(entry, dict, at)
        for name in ("name", "prompt", "instruction"):
            _optional(entry, name, str, at)
        evaluator_id = _optional(entry, "evaluator_id", int, at)
        if evaluator_id is not None and evaluator_id != task_id:
            raise ProvenanceError(f"{at}.evaluator_id: {evaluator_id} differs from its id")
        _optional(entry, "source_index", int, at)
        details[task_id] = TaskInfo.from_json(task_id, entry)
    return details


def _ema_decay(data: dict) -> float | None:
    ema = _optional(data, "ema", dict, "")
    return None if ema is None else _required(ema, "decay", _NUMBER, "ema")


def _record(data: dict, key: str, parse: Callable[[Any, str], Any]) -> Any:
    """The object field `key` parsed (`parse(value, key)`); None when absent or null."""
    return None if data.get(key) is None else parse(data[key], key)


@dataclass(frozen=True)
class Provenance:
    """`b1k_provenance.json`: the data a checkpoint was trained on and the run that trained it."""

    state: StateRecord
    sets: tuple[SetRecord, ...] = ()
    action: ActionRecord | None = None
    cameras: dict[str, CameraRecord] = field(default_factory=dict)  # by short name (head, ...)
    tasks: dict[int, str] = field(default_factory=dict)  # task id -> prompt trained on
    task_details: dict[int, TaskInfo] = field(default_factory=dict)
    fps: float | None = None
    horizon: int | None = None  # the sets' stored action-chunk length
    manifest_alpha: float | None = None  # the sets' temporal alpha
    temporal_alpha: float | None = None  # the alpha trained with
    chunk_size: int | None = None
    load_report: JsonObject | None = None  # what the run loaded when it first started
    action_recipe: ActionRecipeRecord = ABSOLUTE_MEAN_STD
    ema_decay: float | None = None  # the checkpoint's weights are their EMA with this decay
    trainer: TrainerRecord | None = None
    step: int | None = None  # set when a checkpoint is saved

    @classmethod
    def from_json(cls, data: Any, where: str = PROVENANCE_FILE) -> Provenance:
        """Validated, each problem a `ProvenanceError` naming `where` and the field's path."""
        try:
            return cls._from_fields(_check(data, dict, "the provenance"))
        except ProvenanceError as exc:
            raise ProvenanceError(f"{where}: {exc}") from None

    @classmethod
    def _from_fields(cls, data: dict) -> Provenance:
        cameras = _object(data, "cameras", "")
        return cls(
            state=StateRecord.from_json(data.get("state") or {}, "state"),
            sets=tuple(
                SetRecord.from_json(s, f"sets[{i}]") for i, s in enumerate(_items(data, "sets", dict, ""))
            ),
            action=_record(data, "action", ActionRecord.from_json),
            cameras={
                name: CameraRecord.from_json(entry, f"cameras.{name}") for name, entry in cameras.items()
            },
            tasks=_tasks(data),
            task_details=_task_details(data),
            fps=_optional(data, "fps", _NUMBER, ""),
            horizon=_optional(data, "horizon", int, ""),
            manifest_alpha=_optional(data, "manifest_alpha", _NUMBER, ""),
            temporal_alpha=_optional(data, "temporal_alpha", _NUMBER, ""),
            chunk_size=_optional(data, "chunk_size", int, ""),
            load_report=_optional(data, "load_report", dict, ""),
            action_recipe=_record(data, "action_recipe", ActionRecipeRecord.from_json) or ABSOLUTE_MEAN_STD,
            ema_decay=_ema_decay(data),
            trainer=_record(data, "trainer", TrainerRecord.from_json),
            step=_optional(data, "step", int, ""),
        )

    def to_json(self) -> JsonObject:
        """What b1k-train writes, every field (`dumps` gives the file's text)."""
        return {
            "sets": [s.to_json() for s in self.sets],
            "state": self.state.to_json(),
            "action": None if self.action is None else self.action.to_json(),
            "cameras": {name: camera.to_json() for name, camera in self.cameras.items()},
            "tasks": {str(index): task for index, task in sorted(self.tasks.items())},
            "task_details": {str(index): info.to_json() for index, info in sorted(self.task_details.items())},
            "fps": self.fps,
            "horizon": self.horizon,
            "manifest_alpha": self.manifest_alpha,
            "temporal_alpha": self.temporal_alpha,
            "chunk_size": self.chunk_size,
            "load_report": self.load_report,
            "action_recipe": self.action_recipe.to_json(),
            "ema": None if self.ema_decay is None else {"decay": self.ema_decay},
            "trainer": None if self.trainer is None else self.trainer.to_json(),
            "step": self.step,
        }

    def dumps(self) -> str:
        """The file's text: sorted keys, two-space indent, a final newline."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True, default=str) + "\n"

    @property
    def recipe_label(self) -> str:
        """`relative/per_timestep/ema0.999`: how the checkpoint's actions were trained."""
        label = self.action_recipe.label
        return label + (f"/ema{self.ema_decay:g}" if self.ema_decay is not None else "")


def parse_provenance(text: str | bytes, where: str = PROVENANCE_FILE) -> Provenance:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ProvenanceError(f"{where}: not valid JSON ({exc})") from None
    return Provenance.from_json(data, where)


def read_provenance(directory: str | Path) -> Provenance:
    """The provenance of the checkpoint in `directory`; FileNotFoundError when it has none."""
    path = Path(directory) / PROVENANCE_FILE
    return parse_provenance(path.read_bytes(), str(path))
