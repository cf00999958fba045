"""The manifest of a shard set (`manifest.json`, schema v1): `Manifest`, read once where a set is
opened (`parse_manifest`) and read by attribute everywhere else.

`Manifest.from_json` checks a manifest and names precisely what is wrong (`manifest.splits.train.shards[3]
.samples: expected 0..N`); `Manifest.to_json` writes it back exactly: keys no part models are kept as
they are (each part's `extras`), so a set written by a newer or older tool keeps every key, and
`dump_manifest(m.to_json())` of a manifest read is its text. Fields recorded only since some version
are optional (None where a set does not record them). The parts: `schemas.features` (cameras, state,
action, temporal weight, stats) and `schemas.splits` (splits, shard entries, counts).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.features import (
    MAX_CAMERA_SIDE,
    STAT_KEYS,
    STAT_VECTORS,
    ActionEntry,
    CameraEntry,
    ManifestStats,
    SidecarEntry,
    StateEntry,
    Stats,
    Temporal,
)
from schemas.fields import (
    MAX_NAME_SEGMENTS,
    ManifestError,
    check_count,
    extras_of,
    int_key,
    int_keyed,
    json_depth,
    json_of,
    optional,
    require,
    require_object,
    require_set_name,
    require_strings,
)
from schemas.r1pro import ACTION_KEY, STATE_KEY, StateLayout
from schemas.sample import SCHEMA_VERSION
from schemas.splits import MAX_SHARD_BYTES, SPLITS, ShardEntry, Split, Splits, TaskCount
from schemas.tasks import TaskInfo

__all__ = [
    "MANIFEST_NAME",
    "MAX_CAMERA_SIDE",
    "MAX_HORIZON",
    "MAX_MANIFEST_BYTES",
    "MAX_MANIFEST_DEPTH",
    "MAX_NAME_SEGMENTS",
    "MAX_SHARD_BYTES",
    "SPLITS",
    "STAT_KEYS",
    "STAT_VECTORS",
    "ActionEntry",
    "CameraEntry",
    "CreatedBy",
    "FileEntry",
    "Manifest",
    "ManifestError",
    "ManifestStats",
    "MergedFrom",
    "Partition",
    "ShardEntry",
    "SidecarEntry",
    "Source",
    "Split",
    "Splits",
    "StateEntry",
    "Stats",
    "TaskCount",
    "Temporal",
    "Totals",
    "dump_manifest",
    "json_depth",
    "parse_manifest",
    "require_set_name",
    "validate_manifest",
]

MANIFEST_NAME = "manifest.json"
FileEntry = ShardEntry | SidecarEntry  # a file the manifest lists: its name, size and sha256
# Limits on what a manifest may claim (SECURITY.md): what it says sizes downloads, buffers and loops
# before any shard is read, so a claim past these is refused when the manifest is read.
MAX_MANIFEST_BYTES = 64 << 20  # a 10k-shard, 100k-episode set's manifest is ~10 MB
MAX_MANIFEST_DEPTH = 32  # JSON nesting (ours is at most 6 deep); deeper is refused, not a RecursionError
MAX_HORIZON = 10_000  # action-chunk steps (50 by default)


def _keys(cls: type) -> tuple[str, ...]:
    return tuple(name for name in cls.__dataclass_fields__ if name != "extras")


def _strings(data: dict, cls: type, where: str) -> dict[str, str | None]:
    """The optional string fields of `cls` (all of its fields) as `data` records them."""
    return {key: optional(data, key, str, where) for key in _keys(cls)}


@dataclass(frozen=True)
class CreatedBy:
    """The tool that wrote the set: name, version, command line, time (UTC, ISO 8601)."""

    tool: str | None = None
    version: str | None = None
    command: str | None = None
    time: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> CreatedBy:
        require_object(data, where)
        return cls(**_strings(data, cls, where), extras=extras_of(data, _keys(cls)))

    def to_json(self) -> dict[str, Any]:
        return json_of({k: getattr(self, k) for k in _keys(type(self))}, self.extras)


@dataclass(frozen=True)
class Source:
    """The dataset the set was made from (path, codebase version, a fingerprint of its meta files), or,
    for a set merged from several sources, `kind` "merged" and their `sets`."""

    path: str | None = None
    codebase_version: str | None = None
    fingerprint: str | None = None
    robot_type: str | None = None
    kind: str | None = None
    sets: tuple[Source, ...] | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Source:
        require_object(data, where)
        strings = ("path", "codebase_version", "fingerprint", "robot_type", "kind")
        sets = optional(data, "sets", list, where)
        return cls(
            **{key: optional(data, key, str, where) for key in strings},
            sets=None
            if sets is None
            else tuple(cls.from_json(s, f"{where}.sets[{i}]") for i, s in enumerate(sets)),
            extras=extras_of(data, (*strings, "sets")),
        )

    def to_json(self) -> dict[str, Any]:
        fields = {k: getattr(self, k) for k in _keys(type(self))}
        fields["sets"] = None if self.sets is None else [s.to_json() for s in self.sets]
        return json_of(fields, self.extras)


@dataclass(frozen=True)
class Partition:
    """`b1k-preprocess --partition K/N`: this set holds the sorted selected episodes [index::count]."""

    index: int
    count: int
    rule: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Partition:
        return cls(
            require(data, "index", int, where),
            require(data, "count", int, where),
            optional(data, "rule", str, where),
            extras_of(data, ("index", "count", "rule")),
        )

    def to_json(self) -> dict[str, Any]:
        return json_of({"index": self.index, "count": self.count, "rule": self.rule}, self.extras)


@dataclass(frozen=True)
class Totals:
    """b1k-preprocess's summary of the set's sizes, and how they compare with the source's RGB video."""

    episodes: int | None = None
    frames: int | None = None
    samples: int | None = None
    shards: int | None = None
    bytes: int | None = None
    bytes_per_sample: float | None = None
    source_video_bytes: int | None = None
    source_video_bytes_per_frame: float | None = None
    source_video_bytes_note: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Totals:
        require_object(data, where)
        kinds = {key: (int, float) for key in ("bytes_per_sample", "source_video_bytes_per_frame")}
        kinds["source_video_bytes_note"] = str
        values = {key: optional(data, key, kinds.get(key, int), where) for key in _keys(cls)}
        return cls(**values, extras=extras_of(data, _keys(cls)))

    def to_json(self) -> dict[str, Any]:
        return json_of({k: getattr(self, k) for k in _keys(type(self))}, self.extras)


@dataclass(frozen=True)
class MergedFrom:
    """One input of `b1k-shards merge`: its location and partition; what else it recorded (its
    provenance, episodes, which of its shards became which) is kept in `extras`."""

    location: str
    partition: Partition | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> MergedFrom:
        partition = optional(data, "partition", dict, where)
        return cls(
            require(data, "location", str, where),
            None if partition is None else Partition.from_json(partition, f"{where}.partition"),
            extras_of(data, ("location", "partition")),
        )

    def to_json(self) -> dict[str, Any]:
        partition = None if self.partition is None else self.partition.to_json()
        return json_of({"location": self.location, "partition": partition}, self.extras)


@dataclass(frozen=True)
class Manifest:
    """A shard set's manifest (DESIGN.md, "The shard format"). `tasks` and `task_details` are keyed by
    task id; `cameras` by camera name, in the manifest's order. Optional fields (None where a set does
    not record them): `stats_values` (the stats' sidecars), `task_details` (sets written since tasks
    carry the evaluator's id), `prompt`, `annotations`, `partition`, `options`, `totals`, `warnings`,
    `selected_episodes` (b1k-preprocess's record of the run) and `merged_from` (a merged set's inputs)."""

    schema_version: int
    created_by: CreatedBy
    source: Source
    fps: float
    frame_stride: int
    cameras: Mapping[str, CameraEntry]
    state: StateEntry
    action: ActionEntry
    horizon: int
    temporal: Temporal
    stats: ManifestStats
    splits: Splits
    tasks: Mapping[int, str]
    stats_values: Mapping[str, SidecarEntry] | None = None
    task_details: Mapping[int, TaskInfo] | None = None
    prompt: str | None = None
    annotations: Mapping[str, int] | None = None
    partition: Partition | None = None
    options: Mapping[str, Any] | None = None
    totals: Totals | None = None
    warnings: tuple[str, ...] | None = None
    selected_episodes: int | None = None
    merged_from: tuple[MergedFrom, ...] | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def state_layout(self) -> StateLayout:
        """The R1Pro state layout the state indices refer to (sets written before layouts were recorded
        hold the 2025 one)."""
        return self.state.layout

    def split(self, name: str) -> Split:
        """The split called `name` ("train" or "val"); a ManifestError for any other name."""
        return self.splits.of(name)

    def shards(self, split: str) -> tuple[ShardEntry, ...]:
        return self.split(split).shards

    def sidecar(self, key: str) -> SidecarEntry | None:
        """The values sidecar of the stats of feature `key`, when the set has one."""
        return (self.stats_values or {}).get(key)

    def sidecars(self) -> Iterator[SidecarEntry]:
        return iter((self.stats_values or {}).values())

    @property
    def episodes(self) -> set[int]:
        """The episodes of both splits."""
        return {e for _, split in self.splits for e in split.episodes}

    @classmethod
    def from_json(cls, data: Any, where: str = "manifest") -> Manifest:
        """Check `data` (a manifest's JSON) against schema v1; a ManifestError names the first bad field."""
        require_object(data, where)
        version = require(data, "schema_version", int, where)
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"{where}.schema_version: this tool reads schema {SCHEMA_VERSION}, got {version}"
            )
        created_by = CreatedBy.from_json(require(data, "created_by", dict, where), f"{where}.created_by")
        source = Source.from_json(require(data, "source", dict, where), f"{where}.source")
        fps = require(data, "fps", (int, float), where)
        if fps <= 0:
            raise ManifestError(f"{where}.fps: expected > 0, got {fps}")
        frame_stride = require(data, "frame_stride", int, where)
        cameras = _cameras(data, where)
        state = StateEntry.from_json(require(data, "state", dict, where), f"{where}.state")
        action = ActionEntry.from_json(require(data, "action", dict, where), f"{where}.action")
        horizon = require(data, "horizon", int, where)
        if not 1 <= horizon <= MAX_HORIZON:
            raise ManifestError(f"{where}.horizon: expected 1..{MAX_HORIZON}, got {horizon}")
        temporal = Temporal.from_json(require(data, "temporal", dict, where), f"{where}.temporal")
        dims = {STATE_KEY: state.dim, ACTION_KEY: action.dim}
        stats = ManifestStats.from_json(require(data, "stats", dict, where), dims, f"{where}.stats")
        splits = Splits.from_json(require(data, "splits", dict, where), f"{where}.splits")
        return cls(
            schema_version=version,
            created_by=created_by,
            source=source,
            fps=fps,
            frame_stride=frame_stride,
            cameras=cameras,
            state=state,
            action=action,
            horizon=horizon,
            temporal=temporal,
            stats=stats,
            splits=splits,
            tasks=_tasks(data, where),
            task_details=_task_details(data, where),
            extras=extras_of(data, _keys(cls)),
            **_record_of_the_run(data, where),
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON, as read (`from_json`) or as a tool writes it."""
        parts = {
            "schema_version": self.schema_version,
            "created_by": self.created_by.to_json(),
            "source": self.source.to_json(),
            "fps": self.fps,
            "frame_stride": self.frame_stride,
            "cameras": {name: camera.to_json() for name, camera in self.cameras.items()},
            "state": self.state.to_json(),
            "action": self.action.to_json(),
            "horizon": self.horizon,
            "temporal": self.temporal.to_json(),
            "stats": self.stats.to_json(),
            "splits": self.splits.to_json(),
            "tasks": int_keyed(self.tasks),
            "stats_values": _json_map(self.stats_values),
            "task_details": None
            if self.task_details is None
            else {str(t): info.to_json() for t, info in self.task_details.items()},
            "prompt": self.prompt,
            "annotations": None if self.annotations is None else dict(self.annotations),
            "partition": None if self.partition is None else self.partition.to_json(),
            "options": None if self.options is None else dict(self.options),
            "totals": None if self.totals is None else self.totals.to_json(),
            "warnings": None if self.warnings is None else list(self.warnings),
            "selected_episodes": self.selected_episodes,
            "merged_from": None if self.merged_from is None else [m.to_json() for m in self.merged_from],
        }
        return json_of(parts, self.extras)


def _json_map(mapping: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if mapping is None else {key: part.to_json() for key, part in mapping.items()}


def _cameras(data: dict, where: str) -> dict[str, CameraEntry]:
    cameras = require(data, "cameras", dict, where)
    if not cameras:
        raise ManifestError(f"{where}.cameras: expected at least one camera")
    return {
        name: CameraEntry.from_json(camera, f"{where}.cameras.{name}") for name, camera in cameras.items()
    }


def _tasks(data: dict, where: str) -> dict[int, str]:
    out = {}
    for key, task in require(data, "tasks", dict, where).items():
        task_id = int_key(key, f"{where}.tasks")
        if not isinstance(task, str):
            raise ManifestError(f"{where}.tasks.{key}: expected a task string, got {type(task).__name__}")
        out[task_id] = task
    return out


def _task_details(data: dict, where: str) -> dict[int, TaskInfo] | None:
    """`task_details` (optional; sets written since tasks carry the evaluator's id): per task id of
    `tasks`, its name, instruction, prompt and evaluator id (`schemas.tasks.TaskInfo`)."""
    if "task_details" not in data:
        return None
    out = {}
    for task, detail in require(data, "task_details", dict, where).items():
        at = f"{where}.task_details.{str(task)[:40]}"
        task_id = int_key(task, f"{where}.task_details")
        require(detail, "name", str, at)
        require(detail, "prompt", str, at)
        evaluator_id = detail.get("evaluator_id")
        if evaluator_id is not None and (not isinstance(evaluator_id, int) or isinstance(evaluator_id, bool)):
            raise ManifestError(f"{at}.evaluator_id: expected an int or null, got {evaluator_id!r:.40}")
        instruction = detail.get("instruction")
        if instruction is not None and not isinstance(instruction, str):
            raise ManifestError(
                f"{at}.instruction: expected a string or null, got {type(instruction).__name__}"
            )
        out[task_id] = TaskInfo.from_json(task_id, detail)
    return out


def _record_of_the_run(data: dict, where: str) -> dict[str, Any]:
    """The optional fields: the stats' sidecars, and what b1k-preprocess or b1k-shards merge recorded of
    the run."""
    sidecars = optional(data, "stats_values", dict, where)
    annotations = optional(data, "annotations", dict, where)
    partition = optional(data, "partition", dict, where)
    totals = optional(data, "totals", dict, where)
    merged_from = optional(data, "merged_from", list, where)
    return {
        "stats_values": None
        if sidecars is None
        else {key: SidecarEntry.from_json(s, f"{where}.stats_values.{key}") for key, s in sidecars.items()},
        "prompt": optional(data, "prompt", str, where),
        "annotations": None
        if annotations is None
        else {k: check_count(n, f"{where}.annotations.{str(k)[:40]}") for k, n in annotations.items()},
        "partition": None if partition is None else Partition.from_json(partition, f"{where}.partition"),
        "options": optional(data, "options", dict, where),
        "totals": None if totals is None else Totals.from_json(totals, f"{where}.totals"),
        "warnings": None if data.get("warnings") is None else require_strings(data, "warnings", where),
        "selected_episodes": optional(data, "selected_episodes", int, where),
        "merged_from": None
        if merged_from is None
        else tuple(MergedFrom.from_json(m, f"{where}.merged_from[{i}]") for i, m in enumerate(merged_from)),
    }


def validate_manifest(manifest: Any, where: str = "manifest") -> dict:
    """Check a manifest's JSON against schema v1 (`Manifest.from_json`); return it, or raise
    ManifestError naming the bad field."""
    Manifest.from_json(manifest, where)
    return manifest


def parse_manifest(text: str | bytes, where: str = "manifest.json") -> Manifest:
    """The manifest whose text is `text` (bounded in size and depth: SECURITY.md), checked."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{where}: {len(text)} bytes, more than a manifest may have ({MAX_MANIFEST_BYTES})"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:  # json's decoder recurses once per level
        raise ManifestError(f"{where}: JSON nested more than {MAX_MANIFEST_DEPTH} levels deep") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if json_depth(data) > MAX_MANIFEST_DEPTH:
        raise ManifestError(f"{where}: JSON nested more than {MAX_MANIFEST_DEPTH} levels deep")
    return Manifest.from_json(data, where)


def dump_manifest(manifest: Manifest | dict) -> str:
    """Canonical text (sorted keys) so that equal manifests are byte-identical."""
    data = manifest.to_json() if isinstance(manifest, Manifest) else manifest
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
