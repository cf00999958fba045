"""The trainer's view of the data (`DataSpec`): one or more shard sets (`--shards`, optionally
weighted) opened with `shards.reader`, checked to describe the same features, their normaliser stats
merged (lerobot's `aggregate_stats`), and what a checkpoint records of them (`provenance`)."""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lerobot.datasets.compute_stats import aggregate_stats

from schemas.manifest import CameraEntry, Manifest, ManifestError, ShardEntry, dump_manifest
from schemas.provenance import ActionRecord, CameraRecord, Provenance, SetRecord, StateRecord
from schemas.r1pro import ACTION_KEY, STATE_KEY, StateLayout
from schemas.sample import image_member
from schemas.tasks import TaskInfo
from shards.reader import ShardSet, open_shard_set
from train.balance import TaskRepeats, balance_tasks
from train.errors import DataSpecError, ShardReadError

STAT_FIELDS = ("mean", "std", "min", "max", "q01", "q99")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraSpec:
    """A camera as the manifest describes it: the shard member keeps the short name (`head.jpg`);
    batches and the policy use the dataset's own key (`observation.images.rgb.head`), so a checkpoint's
    features are the dataset's and lerobot tools read both alike."""

    name: str
    height: int
    width: int
    member: str  # tar member of its image, e.g. "head.jpg"
    key: str  # the dataset's video key, e.g. "observation.images.rgb.head"
    entry: CameraEntry | None = field(default=None, compare=False)  # the manifest's camera entry

    @classmethod
    def of(cls, name: str, entry: CameraEntry) -> CameraSpec:
        return cls(
            name, entry.height, entry.width, image_member(name, entry.encoding), entry.video_key, entry
        )

    def describe(self) -> CameraRecord:
        """What a checkpoint records of it, for whoever feeds the policy raw frames (`deploy/`)."""
        recorded = ("source_height", "source_width", "resize", "encoding", "quality")
        return CameraRecord(
            self.height,
            self.width,
            video_key=self.key,
            **{k: v for k, v in (self.entry.to_json() if self.entry else {}).items() if k in recorded},
        )


@dataclass(frozen=True, eq=False)
class ShardRef:
    """A shard of a split: its URL, sample count and (for in-stream checks) manifest entry and set."""

    url: str
    samples: int
    entry: ShardEntry | None = None  # name, samples, bytes, sha256: checked as the shard streams
    members: tuple[str, ...] = ()  # members every sample must carry
    location: str | None = None  # the set's location, for the `b1k-shards verify` hint


@dataclass
class ShardSource:
    """One opened shard set and its share of the mixture."""

    location: str
    shard_set: ShardSet
    weight: float
    train: list[ShardRef]
    val: list[ShardRef]
    episodes: list[int] = field(default_factory=list)  # of the train split
    repeats: TaskRepeats | None = None  # `--task-balance`: its samples repeated by task

    @property
    def manifest(self) -> Manifest:
        return self.shard_set.manifest

    @property
    def train_samples(self) -> int:
        return sum(s.samples for s in self.train)

    @property
    def epoch_samples(self) -> int:
        """Samples of an epoch of its train stream: the train samples, repeated by task when balanced."""
        if self.repeats is None:
            return self.train_samples
        return sum(self.repeats.shard_samples(s) for s in self.train)


@dataclass
class DataSpec:
    """What the trainer needs to know of the data: features, stats, horizon, alpha, provenance."""

    cameras: list[CameraSpec]
    state_dim: int
    state_names: list[str]
    state_indices: list[int]
    state_preset: str
    state_layout: StateLayout
    action_dim: int
    action_names: list[str]
    horizon: int
    manifest_alpha: float
    stats: dict[str, dict[str, list[float]]]
    tasks: dict[int, str] = field(default_factory=dict)  # task id -> prompt, of every set
    # task id -> its name, instruction, prompt and evaluator id, of the sets that record it (written
    # since tasks carry the evaluator's id)
    task_details: dict[int, TaskInfo] = field(default_factory=dict)
    fps: float = 30.0
    sources: list[ShardSource] = field(default_factory=list)

    @property
    def image_keys(self) -> list[str]:
        return [c.key for c in self.cameras]

    def gripper_state_dims(self) -> list[int]:
        return [i for i, name in enumerate(self.state_names) if "gripper" in name]

    def stats_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """Stats in the form lerobot's processors take (`dataset_stats`)."""
        return {
            key: {name: torch.tensor(entry[name], dtype=torch.float32) for name in STAT_FIELDS}
            for key, entry in self.stats.items()
        }

    def provenance(self) -> Provenance:
        """What a checkpoint records of the data (`train.setup` adds the run's part)."""
        return Provenance(
            sets=tuple(
                SetRecord(
                    location=src.location,
                    weight=src.weight,
                    manifest_sha256=manifest_fingerprint(src.manifest),
                    created_by=src.manifest.created_by.to_json(),
                    source=src.manifest.source.to_json(),
                    train_samples=src.train_samples,
                    val_samples=sum(s.samples for s in src.val),
                )
                for src in self.sources
            ),
            state=StateRecord(
                layout=self.state_layout.name,
                source_dim=self.state_layout.dim,
                preset=self.state_preset,
                indices=tuple(self.state_indices),
                names=tuple(self.state_names),
            ),
            action=ActionRecord(self.action_dim, tuple(self.action_names)),
            cameras={c.name: c.describe() for c in self.cameras},
            tasks=dict(self.tasks),
            task_details=dict(self.task_details),
            fps=self.fps,
            horizon=self.horizon,
            manifest_alpha=self.manifest_alpha,
        )


def manifest_fingerprint(manifest: Manifest) -> str:
    """sha256 of the manifest's canonical text: equal manifests, equal fingerprints."""
    return hashlib.sha256(dump_manifest(manifest).encode("utf-8")).hexdigest()


def parse_shards_arg(text: str) -> tuple[str, float | None]:
    """`LOCATION` or `LOCATION@WEIGHT` (weight > 0, relative sampling probability of the set)."""
    location, sep, tail = text.rpartition("@")
    if sep:
        try:
            weight = float(tail)
        except ValueError:
            return text, None
        if not math.isfinite(weight) or weight <= 0:
            raise DataSpecError(f"--shards {text!r}: the weight after '@' must be a positive number")
        return location, weight
    return text, None


def merge_stats(manifests: list[Manifest]) -> dict[str, dict[str, list[float]]]:
    """Normaliser stats of the union of the sets' train splits: one set's as recorded; several merged
    by lerobot's `aggregate_stats` (mean and std exact by the parallel-variance formula, min/max exact,
    q01/q99 the count-weighted mean of the sets' quantiles: SmolVLA normalises with mean/std)."""
    if len(manifests) == 1:
        return {key: stats.normaliser() for key, stats in manifests[0].stats.items()}
    keys = (STATE_KEY, ACTION_KEY)
    for key in keys:
        if sum(m.stats.of(key).count for m in manifests) <= 0:
            raise DataSpecError(f"stats of {key}: the train splits hold no frames")
    per_set = [
        {
            key: {f: np.asarray(v, dtype=np.float64) for f, v in m.stats.of(key).normaliser().items()}
            | {"count": np.array([m.stats.of(key).count])}
            for key in keys
        }
        for m in manifests
    ]
    merged = aggregate_stats(per_set)
    return {key: {f: merged[key][f].tolist() for f in STAT_FIELDS} for key in keys}


def _refs(shard_set: ShardSet, split: str) -> list[ShardRef]:
    members = tuple(shard_set.members)
    return [
        ShardRef(shard_set.url(s.name), s.samples, s, members, shard_set.location)
        for s in shard_set.manifest.shards(split)
    ]


def _check_local_shards(shard_set: ShardSet, refs: list[ShardRef]) -> None:
    if shard_set.kind != "local":
        return
    for ref in refs:
        if not Path(ref.url).is_file():
            raise ShardReadError(f"shard {ref.url} listed in the manifest is missing")


def open_data(shards: list[str], task_balance: bool = False) -> DataSpec:
    """Open every `--shards` entry, check they agree on features, merge stats; the trainer's view of the data.
    `task_balance`: each set's train samples are repeated by task (`balance_tasks`)."""
    sources = open_sources(shards, task_balance)
    first = sources[0].manifest
    cameras = [CameraSpec.of(name, c) for name, c in first.cameras.items()]
    for src in sources:
        _check_same_features(src, sources[0], cameras)
    alphas = {float(src.manifest.temporal.alpha) for src in sources}
    return DataSpec(
        cameras=cameras,
        state_dim=first.state.dim,
        state_names=list(first.state.names),
        state_indices=list(first.state.indices),
        state_preset=first.state.preset,
        state_layout=first.state_layout,
        action_dim=first.action.dim,
        action_names=list(first.action.names),
        horizon=min(src.manifest.horizon for src in sources),
        manifest_alpha=alphas.pop() if len(alphas) == 1 else float(first.temporal.alpha),
        stats=merge_stats([src.manifest for src in sources]),
        tasks=_task_prompts(sources),
        task_details=_task_details(sources),
        fps=float(first.fps),
        sources=sources,
    )


def open_sources(shards: list[str], task_balance: bool) -> list[ShardSource]:
    """Each `--shards` entry opened, with its share of the mixture: its weight, else its epoch's
    size (like concatenating the sets)."""
    if not shards:
        raise DataSpecError("no shard set given (--shards)")
    parsed = [parse_shards_arg(s) for s in shards]
    weighted = [w is not None for _, w in parsed]
    if any(weighted) and not all(weighted):
        raise DataSpecError("give a weight to every --shards entry (LOCATION@WEIGHT) or to none")
    sources = [_open_source(location) for location, _ in parsed]
    if task_balance:
        for src, repeats in zip(sources, balance_tasks(sources), strict=True):
            src.repeats = repeats
    for src, (_, weight) in zip(sources, parsed, strict=True):
        src.weight = float(weight) if weight is not None else float(src.epoch_samples)
    return sources


def _open_source(location: str) -> ShardSource:
    try:
        shard_set = open_shard_set(location)
    except ManifestError:
        raise
    except Exception as exc:  # unreadable location: say which
        raise ManifestError(f"{location}: cannot open the shard set ({exc})") from exc
    train, val = _refs(shard_set, "train"), _refs(shard_set, "val")
    _check_local_shards(shard_set, train + val)
    if sum(r.samples for r in train) == 0:
        raise DataSpecError(f"{location}: the train split holds no samples")
    episodes = list(shard_set.manifest.splits.train.episodes)
    return ShardSource(location, shard_set, 0.0, train, val, episodes)


def _check_same_features(src: ShardSource, first_src: ShardSource, cameras: list[CameraSpec]) -> None:
    """`src` describes the same cameras, state and action as the first set (they can be mixed)."""
    m, first = src.manifest, first_src.manifest
    other = {name: (c.height, c.width, c.video_key) for name, c in m.cameras.items()}
    if other != {c.name: (c.height, c.width, c.key) for c in cameras}:
        raise DataSpecError(f"{src.location}: cameras {other} differ from {first_src.location}'s")
    if m.state_layout != first.state_layout:
        raise DataSpecError(
            f"{src.location}: state layout {m.state_layout.name} differs from "
            f"{first_src.location}'s {first.state_layout.name} (sets of different releases cannot be mixed)"
        )
    if m.state.indices != first.state.indices:
        raise DataSpecError(f"{src.location}: state indices differ from {first_src.location}'s")
    if m.action.dim != first.action.dim:
        raise DataSpecError(f"{src.location}: action dim differs from {first_src.location}'s")


def _task_prompts(sources: list[ShardSource]) -> dict[int, str]:
    """Task id -> prompt of every set; where two sets disagree, the earlier one's (logged)."""
    tasks: dict[int, str] = {}
    for src in sources:
        for index, task in src.manifest.tasks.items():
            if tasks.setdefault(index, task) != task:  # e.g. two v3.0 sets, dense indices
                logger.warning(
                    f"{src.location}: task {index} is {task!r}, an earlier set calls it {tasks[index]!r}; "
                    "the checkpoint's task table keeps the earlier one (serve with --prompt to choose)"
                )
    return tasks


def _task_details(sources: list[ShardSource]) -> dict[int, TaskInfo]:
    """Task id -> the task's names and ids, of the sets that record them (the earlier set's first)."""
    details: dict[int, TaskInfo] = {}
    for src in sources:
        for index, detail in (src.manifest.task_details or {}).items():
            details.setdefault(index, detail)
    return details
