"""The training stream: shard sets -> per-worker sample streams -> SmolVLA batches, resumable exactly.

One or more shard sets (`--shards`, optionally weighted) are opened with `shards.reader` and must
describe the same features. Each DataLoader worker of each rank (a *slot*) builds, per epoch:

1. the epoch's shard order: a permutation seeded by (seed, epoch), the same on every rank;
2. its share of it, split by node (rank) and then by worker, like webdataset's `split_by_node` /
   `split_by_worker`: whole shards when there are at least as many shards as parts, otherwise
   every part reads the shards and keeps every `parts`-th sample (so 8 workers on a 3-shard set
   still all work, and ranks stay disjoint); with `--task-balance` each sample of task t is first
   repeated r_t = max(1, round(n_max / n_t)) times in a row (`repeat_by_task`: its task from its
   key's episode; the manifest counts each shard's samples per task, so the epoch's size stays known);
3. a buffer shuffle over the raw (still encoded) samples, seeded by (seed, epoch, slot), whose picks
   are episode-stratified: every batch position asks for an episode of a per-batch random
   permutation (the same schedule in every worker), so a batch's samples come from distinct
   episodes whenever the buffers hold them (`--no-stratify`: webdataset's plain buffer shuffle);
4. decode each sample straight into its row of a batch (`SampleFormat`), the action chunk sliced to
   `chunk_size`.

Each worker decodes `batch_size` consecutive samples of its stream into one batch, written into
one shared-memory buffer (images channels-last, as the JPEG decoder writes them) that it reuses
(`BatchRing`): the main process maps each buffer once and takes each batch from it (`batches`).
Handing over single samples, each in fresh shared memory, had cost more than decoding them. Small
batches go several to a DataLoader item (`batches_per_item`: 4 of 8 samples at 224 px), which the
DataLoader hands out round-robin over the workers, so item q comes from worker q % workers; the
episode-stratified picks still give a batch distinct episodes, from the ~1000 samples of that
worker's buffer. Because each slot's stream is a pure function of (seed, epoch, slot) and the
number of samples a slot yields per epoch is known from the manifest, the *data position* is just
the number of batches consumed: on resume every worker skips, without decoding, exactly the
samples it had delivered (`resume_point`), even within an item.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import logging
import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from schemas.manifest import ManifestError, dump_manifest, shards_of, state_layout_of
from schemas.r1pro import StateLayout
from schemas.sample import (
    ACTION_IS_PAD_MEMBER,
    ACTION_MEMBER,
    JSON_MEMBER,
    STATE_MEMBER,
    image_member,
    parse_sample_key,
)
from shards.codec import DECODE_TARGET_SKEW, decode_image_into, npy_into, retain_freed_memory
from shards.errors import ShardCorruptError, ShardSetError
from shards.guard import CorruptShardLog, VerifiedShards, iter_checked_shard
from shards.reader import ShardSet, iter_tar_samples, open_shard_set

STATE_KEY = "observation.state"
ACTION_KEY = "action"
PAD_KEY = "action_is_pad"
STAT_FIELDS = ("mean", "std", "min", "max", "q01", "q99")

logger = logging.getLogger(__name__)


class ShardReadError(ShardSetError):
    """A shard cannot be read or decoded; the message names it."""


class DataSpecError(ValueError):
    """The shard sets cannot be trained on together, or with these options."""


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
    entry: dict = field(default_factory=dict, compare=False)  # the manifest's camera entry, as recorded

    @classmethod
    def of(cls, name: str, entry: dict) -> CameraSpec:
        return cls(
            name,
            int(entry["height"]),
            int(entry["width"]),
            image_member(name, entry["encoding"]),
            str(entry["video_key"]),
            dict(entry),
        )

    def describe(self) -> dict:
        """What a checkpoint records of it, for whoever feeds the policy raw frames (`deploy/`)."""
        recorded = ("source_height", "source_width", "resize", "encoding", "quality")
        return {
            "video_key": self.key,
            "height": self.height,
            "width": self.width,
            **{k: self.entry[k] for k in recorded if k in self.entry},
        }


@dataclass(frozen=True, eq=False)
class ShardRef:
    """A shard of a split: its URL, sample count and (for in-stream checks) manifest entry and set."""

    url: str
    samples: int
    entry: dict | None = None  # name, samples, bytes, sha256: checked as the shard streams
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
    def manifest(self) -> dict:
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
    tasks: dict[int, str] = field(default_factory=dict)  # task index -> string, of every set
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

    def provenance(self) -> dict:
        return {
            "sets": [
                {
                    "location": src.location,
                    "weight": src.weight,
                    "manifest_sha256": manifest_fingerprint(src.manifest),
                    "created_by": src.manifest.get("created_by"),
                    "source": src.manifest.get("source"),
                    "train_samples": src.train_samples,
                    "val_samples": sum(s.samples for s in src.val),
                }
                for src in self.sources
            ],
            "state": {
                "layout": self.state_layout.name,
                "source_dim": self.state_layout.dim,
                "preset": self.state_preset,
                "indices": self.state_indices,
                "names": self.state_names,
            },
            "action": {"dim": self.action_dim, "names": self.action_names},
            "cameras": {c.name: c.describe() for c in self.cameras},
            "tasks": {str(index): task for index, task in sorted(self.tasks.items())},
            "fps": self.fps,
            "horizon": self.horizon,
            "manifest_alpha": self.manifest_alpha,
        }


def manifest_fingerprint(manifest: dict) -> str:
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


def _merge_stats(manifests: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Normaliser stats of the union of the sets' train splits.

    mean/std/min/max are exact (from sum, sum_sq, count); q01/q99 of a mixture are the count-weighted
    mean of the sets' quantiles (SmolVLA normalises with mean/std; the quantiles are informative).
    """
    if len(manifests) == 1:
        return {k: {f: list(v[f]) for f in STAT_FIELDS} for k, v in manifests[0]["stats"].items()}
    merged = {}
    for key in ("observation.state", "action"):
        entries = [m["stats"][key] for m in manifests]
        count = sum(e["count"] for e in entries)
        if count <= 0:
            raise DataSpecError(f"stats of {key}: the train splits hold no frames")
        total = np.sum([e["sum"] for e in entries], axis=0)
        total_sq = np.sum([e["sum_sq"] for e in entries], axis=0)
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        weights = np.array([e["count"] for e in entries], dtype=np.float64) / count
        merged[key] = {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "min": np.min([e["min"] for e in entries], axis=0).tolist(),
            "max": np.max([e["max"] for e in entries], axis=0).tolist(),
            "q01": np.tensordot(weights, np.array([e["q01"] for e in entries]), axes=1).tolist(),
            "q99": np.tensordot(weights, np.array([e["q99"] for e in entries]), axes=1).tolist(),
        }
    return merged


def _refs(shard_set: ShardSet, split: str) -> list[ShardRef]:
    members = tuple(shard_set.members)
    return [
        ShardRef(shard_set.url(s["name"]), int(s["samples"]), dict(s), members, shard_set.location)
        for s in shards_of(shard_set.manifest, split)
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
    if not shards:
        raise DataSpecError("no shard set given (--shards)")
    parsed = [parse_shards_arg(s) for s in shards]
    weighted = [w is not None for _, w in parsed]
    if any(weighted) and not all(weighted):
        raise DataSpecError("give a weight to every --shards entry (LOCATION@WEIGHT) or to none")
    sources = []
    for location, _ in parsed:
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
        episodes = [int(e) for e in shard_set.manifest["splits"]["train"]["episodes"]]
        sources.append(ShardSource(location, shard_set, 0.0, train, val, episodes))
    if task_balance:
        for src, repeats in zip(sources, balance_tasks(sources), strict=True):
            src.repeats = repeats
    for src, (_, weight) in zip(sources, parsed, strict=True):
        # Default mixture: proportional to the epoch's size, i.e. like concatenating the sets.
        src.weight = float(weight) if weight is not None else float(src.epoch_samples)

    first = sources[0].manifest
    cameras = [CameraSpec.of(name, c) for name, c in first["cameras"].items()]
    layout = state_layout_of(first, sources[0].location)
    tasks: dict[int, str] = {}
    for src in sources:
        m = src.manifest
        other = {
            name: (int(c["height"]), int(c["width"]), c["video_key"]) for name, c in m["cameras"].items()
        }
        if other != {c.name: (c.height, c.width, c.key) for c in cameras}:
            raise DataSpecError(f"{src.location}: cameras {other} differ from {sources[0].location}'s")
        if state_layout_of(m, src.location) != layout:
            raise DataSpecError(
                f"{src.location}: state layout {state_layout_of(m).name} differs from "
                f"{sources[0].location}'s {layout.name} (sets of different releases cannot be mixed)"
            )
        if list(m["state"]["indices"]) != list(first["state"]["indices"]):
            raise DataSpecError(f"{src.location}: state indices differ from {sources[0].location}'s")
        for index, task in m["tasks"].items():
            if tasks.setdefault(int(index), str(task)) != str(task):  # e.g. two v3.0 sets, dense indices
                logger.warning(
                    f"{src.location}: task {index} is {task!r}, an earlier set calls it {tasks[int(index)]!r}; "
                    "the checkpoint's task table keeps the earlier one (serve with --prompt to choose)"
                )
        if m["action"]["dim"] != first["action"]["dim"]:
            raise DataSpecError(f"{src.location}: action dim differs from {sources[0].location}'s")
    alphas = {float(src.manifest["temporal"]["alpha"]) for src in sources}
    return DataSpec(
        cameras=cameras,
        state_dim=len(first["state"]["indices"]),
        state_names=list(first["state"]["names"]),
        state_indices=list(first["state"]["indices"]),
        state_preset=str(first["state"]["preset"]),
        state_layout=layout,
        action_dim=int(first["action"]["dim"]),
        action_names=list(first["action"]["names"]),
        horizon=min(int(src.manifest["horizon"]) for src in sources),
        manifest_alpha=alphas.pop() if len(alphas) == 1 else float(first["temporal"]["alpha"]),
        stats=_merge_stats([src.manifest for src in sources]),
        tasks=tasks,
        fps=float(first["fps"]),
        sources=sources,
    )


# ---------------------------------------------------------------------------------------------
# Task balance (`--task-balance`): a small task's samples are repeated so that it is not drowned


def task_repeats(samples: dict[str, int]) -> dict[str, int]:
    """Each task's repeat factor r_t = max(1, round(n_max / n_t)) from its train samples n_t: in an
    epoch every task then weighs about as much as the largest."""
    most = max(samples.values(), default=0)
    return {task: max(1, round(most / n)) if n > 0 else 1 for task, n in sorted(samples.items())}


@dataclass(frozen=True)
class TaskRepeats:
    """`--task-balance` in one set: each sample of task t is streamed `of_task[t]` times in a row."""

    of_task: dict[int, int]  # the set's task index -> r_t (from the task's train samples in all sets)
    task_of_episode: dict[int, int]  # the set's train episodes -> their task index

    def of_episode(self, episode: int) -> int:
        return self.of_task[self.task_of_episode[episode]]

    def shard_samples(self, ref: ShardRef) -> int:
        """What a shard yields into the stream: each of its samples of task t, r_t times."""
        return sum(self.of_task[int(task)] * int(n) for task, n in ref.entry["tasks"].items())


def task_records(src: ShardSource) -> tuple[dict[int, int], dict[int, int]]:
    """(train samples per task, task of each train episode) as the set's manifest records them, per
    shard too (so an epoch's size is known without reading a shard); DataSpecError naming the set
    where they are missing or do not add up."""
    split = src.manifest["splits"]["train"]
    missing = [f"splits.train.{key}" for key in ("tasks", "episode_tasks") if key not in split]
    if any(ref.entry is None or "tasks" not in ref.entry for ref in src.train):
        missing.append("splits.train.shards[].tasks")
    if missing:
        raise DataSpecError(
            f"{src.location}: --task-balance needs the samples per task that b1k-preprocess records "
            f"({', '.join(missing)}); this set was written before it did: re-run b1k-preprocess"
        )
    samples = {int(task): int(counts["samples"]) for task, counts in split["tasks"].items()}
    episodes = {int(episode): int(task) for episode, task in split["episode_tasks"].items()}
    for ref in src.train:
        counts = {int(task): int(n) for task, n in ref.entry["tasks"].items()}
        if sum(counts.values()) != ref.samples or not counts.keys() <= samples.keys():
            raise DataSpecError(f"{src.location}: the task counts of shard {ref.entry['name']} do not add up")
    unknown = sorted(set(src.episodes) - episodes.keys())
    if unknown or not set(episodes.values()) <= samples.keys():
        raise DataSpecError(
            f"{src.location}: splits.train.episode_tasks does not give every train episode a known task"
        )
    return samples, episodes


def _task_name(src: ShardSource, task: int) -> str:
    return str(src.manifest["tasks"].get(str(task), f"task {task}"))


def balance_tasks(sources: list[ShardSource]) -> list[TaskRepeats]:
    """Each set's `TaskRepeats`, from the tasks' train samples over all sets. A task is its string:
    sets number their tasks each in their own way (two v3.0 sets both have a task 0)."""
    records = [task_records(src) for src in sources]
    totals: dict[str, int] = {}
    for src, (samples, _) in zip(sources, records, strict=True):
        for task, n in samples.items():
            totals[_task_name(src, task)] = totals.get(_task_name(src, task), 0) + n
    repeats = task_repeats(totals)
    return [
        TaskRepeats({task: repeats[_task_name(src, task)] for task in samples}, episodes)
        for src, (samples, episodes) in zip(sources, records, strict=True)
    ]


def task_balance_rows(spec: DataSpec) -> list[dict[str, Any]]:
    """Per task of a balanced spec (an empty list if not balanced): the task, its train samples over
    the sets, its repeat factor and its samples per epoch (what `b1k-train --task-balance` logs)."""
    rows: dict[str, dict[str, Any]] = {}
    for src in spec.sources:
        if src.repeats is None:
            return []
        for task, counts in src.manifest["splits"]["train"]["tasks"].items():
            name = _task_name(src, int(task))
            row = rows.setdefault(name, {"task": name, "samples": 0})
            row["samples"] += int(counts["samples"])
            row["repeats"] = src.repeats.of_task[int(task)]  # the same in every set
    for row in rows.values():
        row["effective"] = row["samples"] * row["repeats"]
    return sorted(rows.values(), key=lambda row: row["samples"], reverse=True)


# ---------------------------------------------------------------------------------------------
# Deterministic per-slot streams


def _seed(*parts: int) -> int:
    """A 64-bit seed from integers (stable across processes and Python versions)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0])


@dataclass(frozen=True)
class SlotPlan:
    """What one slot reads in one epoch: its shards in order, each sample repeated by its task
    (`--task-balance`), then sample strides (stride, offset)."""

    shards: tuple[ShardRef, ...]
    strides: tuple[tuple[int, int], ...]
    repeats: TaskRepeats | None = None

    @property
    def samples(self) -> int:
        """Samples the slot yields per epoch, known from the manifest alone."""
        count = (lambda s: s.samples) if self.repeats is None else self.repeats.shard_samples
        total = sum(count(s) for s in self.shards)
        for stride, offset in self.strides:
            total = len(range(offset, total, stride))
        return total


def plan_slot(
    shards: list[ShardRef],
    order: list[int] | None,
    rank: int,
    world: int,
    worker: int,
    workers: int,
    repeats: TaskRepeats | None = None,
) -> SlotPlan:
    """Split `shards` (in `order`) by node, then by worker: by whole shards while there are enough,
    by sample stride otherwise. The slots of one epoch partition the samples (with `repeats`, the
    repeated samples)."""
    selected = [shards[i] for i in order] if order is not None else list(shards)
    strides: list[tuple[int, int]] = []
    for part, parts in ((rank, world), (worker, workers)):
        if parts <= 1:
            continue
        if not strides and len(selected) >= parts:
            selected = selected[part::parts]
        else:
            strides.append((parts, part))
    return SlotPlan(tuple(selected), tuple(strides), repeats)


def epoch_order(n_shards: int, seed: int, epoch: int) -> list[int]:
    return np.random.default_rng(_seed(seed, epoch, 0x5A4D)).permutation(n_shards).tolist()


def _read_shard(
    ref: ShardRef | str, corrupt: CorruptShardLog | None = None, verified: VerifiedShards | None = None
) -> Iterator[dict]:
    """Raw samples of one shard. With a `ShardRef`, `shards.guard` checks it as it streams (size, sample
    count, sha256, members) and a problem raises `ShardCorruptError` naming it, or, with a `corrupt`
    log (`--skip-corrupt`), is recorded there and ends the shard. `verified`: the shards this process
    has hashed already (not hashed again while unchanged)."""
    url = ref if isinstance(ref, str) else ref.url
    try:
        if isinstance(ref, str):
            yield from iter_tar_samples(url)
        else:
            yield from iter_checked_shard(
                url,
                entry=ref.entry,
                members=ref.members,
                location=ref.location,
                skip=corrupt,
                verified=verified,
                zero_copy=True,  # members are views of a map of the file: decoded from where they lie
            )
    except GeneratorExit:  # first: closed at interpreter exit, this module's names may be gone
        raise
    except ShardSetError:
        raise
    except Exception as exc:
        raise ShardReadError(f"cannot read shard {url}: {type(exc).__name__}: {exc}") from exc


def _plan_raw(
    plan: SlotPlan, corrupt: CorruptShardLog | None = None, verified: VerifiedShards | None = None
) -> Iterator[dict]:
    stream: Iterator[dict] = itertools.chain.from_iterable(
        _read_shard(s, corrupt, verified) for s in plan.shards
    )
    if plan.repeats is not None:
        stream = repeat_by_task(stream, plan.repeats.of_episode)
    for stride, offset in plan.strides:
        stream = itertools.islice(stream, offset, None, stride)
    return stream


def repeat_by_task(stream: Iterator[dict], repeats_of_episode: Callable[[int], int]) -> Iterator[dict]:
    """Each raw sample `repeats_of_episode(its episode)` times in a row (`--task-balance`); the task
    comes from the key's episode, so nothing is parsed. The copies share the members, not the dict."""
    for raw in stream:
        repeats = repeats_of_episode(parse_sample_key(raw["__key__"])[0])
        yield raw
        for _ in range(repeats - 1):
            yield dict(raw)


class StratifiedBuffer:
    """A shuffle buffer (like webdataset's) whose picks can ask for given episodes.

    `pick(rng, candidates)` returns a random buffered sample of the first candidate episode that is
    buffered, else a random buffered sample. Over an epoch every sample still comes out exactly once;
    only the order changes. Adding and taking are O(1): a taken sample's hole is filled with the last
    one, both in the buffer and in its episode's list of positions.
    """

    def __init__(self):
        self.items: list[dict] = []
        self.episodes: list[int] = []
        self.slots: list[int] = []  # where each item's position is in its episode's list
        self.where: dict[int, list[int]] = {}  # episode -> positions in items (unordered)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, raw: dict) -> None:
        episode = parse_sample_key(raw["__key__"])[0]
        positions = self.where.setdefault(episode, [])
        self.slots.append(len(positions))
        positions.append(len(self.items))
        self.items.append(raw)
        self.episodes.append(episode)

    def pick(self, rng: random.Random, candidates: tuple[int, ...] = ()) -> dict:
        for episode in candidates:
            positions = self.where.get(episode)
            if positions:
                return self._take(positions[rng.randrange(len(positions))])
        return self._take(rng.randrange(len(self.items)))

    def _take(self, k: int) -> dict:
        items, episodes, slots = self.items, self.episodes, self.slots
        item, episode = items[k], episodes[k]
        positions = self.where[episode]
        moved = positions.pop()  # fill k's place in its episode's list with the list's last
        if moved != k:
            positions[slots[k]] = moved
            slots[moved] = slots[k]
        if not positions:
            del self.where[episode]
        last = len(items) - 1
        if k != last:  # fill the hole in the buffer with its last item
            items[k], episodes[k], slots[k] = items[last], episodes[last], slots[last]
            self.where[episodes[k]][slots[k]] = k
        items.pop()
        episodes.pop()
        slots.pop()
        return item


class EpisodeSchedule:
    """Which episodes each position of a batch asks for, so a batch's samples come from distinct episodes.

    Per (rank, batch) a random permutation of the train episodes is drawn; position p of the batch asks
    for perm[p], then perm[p + B], perm[p + 2B], ... (B = batch size): the positions' candidate lists
    are disjoint, so two workers never fall back on the same episode. Every worker computes the same
    schedule from the seed: no communication is needed.
    """

    BLOCK = 64  # batches drawn from one seeded generator: seeding one cost 3x a draw

    def __init__(self, episodes: list[int], batch_size: int, seed: int, rank: int, candidates: int = 8):
        self.episodes = np.asarray(sorted(episodes), dtype=np.int64)
        self.batch_size = max(1, batch_size)
        self.seed = seed
        self.rank = rank
        self.candidates = candidates
        self._batch = -1
        self._wanted: list[tuple[int, ...]] = []  # per position of the current batch
        self._rng: np.random.Generator | None = None
        self._block = -1
        self._drawn = 0  # batches of the current block drawn so far

    def wanted(self, item: int) -> tuple[int, ...]:
        """The episodes asked for, in order of preference, at this rank's `item`-th sample."""
        if len(self.episodes) == 0:
            return ()
        batch, position = divmod(item, self.batch_size)
        if batch != self._batch:
            order = self._draw(batch)
            # fewer episodes than positions: share them round-robin
            self._wanted = [tuple(order[p % len(order) :: self.batch_size]) for p in range(self.batch_size)]
            self._batch = batch
        return self._wanted[position]

    def _draw(self, batch: int) -> list[int]:
        """Batch `batch`'s permutation: draw number batch % BLOCK of the generator of its block
        (a function of seed, rank and batch alone, however the batches are visited)."""
        block, index = divmod(batch, self.BLOCK)
        if self._rng is None or block != self._block or index < self._drawn:
            self._rng = np.random.default_rng(_seed(self.seed, self.rank, block, 0xE915))
            self._block, self._drawn = block, 0
        count = min(len(self.episodes), self.batch_size * self.candidates)
        while True:
            chosen = self._rng.choice(len(self.episodes), size=count, replace=False)
            self._drawn += 1
            if self._drawn > index:
                return self.episodes[chosen].tolist()


def stratified_shuffle(
    stream: Iterator[dict],
    bufsize: int,
    rng: random.Random,
    wanted: Callable[[int], tuple[int, ...]],
    start: int,
) -> Iterator[dict]:
    """Buffer `bufsize` samples, then yield one pick per new sample (draining at the end); pick number
    `start + n` asks for the episodes `wanted(start + n)`."""
    buffer = StratifiedBuffer()
    index = start
    for raw in stream:
        buffer.add(raw)
        if len(buffer) >= bufsize:
            yield buffer.pick(rng, wanted(index))
            index += 1
    while len(buffer):
        yield buffer.pick(rng, wanted(index))
        index += 1


def slot_stream(
    shards: list[ShardRef],
    *,
    seed: int,
    rank: int,
    world: int,
    worker: int,
    workers: int,
    shuffle_buffer: int,
    skip: int = 0,
    schedule: EpisodeSchedule | None = None,
    batch_size: int = 1,
    per_item: int = 1,
    corrupt: CorruptShardLog | None = None,
    verified: VerifiedShards | None = None,
    repeats: TaskRepeats | None = None,
) -> Iterator[dict]:
    """The infinite raw-sample stream of one slot (epoch after epoch), skipping its first `skip` samples.

    Whole epochs are skipped by arithmetic; inside an epoch the skipped samples are read but not decoded.
    With a `schedule`, the shuffle buffer's n-th pick asks for the episode the schedule wants at the
    rank's item this sample becomes (`rank_item`: workers fill whole batches of `batch_size`, handed
    over `per_item` at a time).
    """
    position = 0  # samples of this slot before the current epoch (skipped ones included)
    for epoch in itertools.count():
        plan = plan_slot(shards, epoch_order(len(shards), seed, epoch), rank, world, worker, workers, repeats)
        size = plan.samples
        if size == 0:
            raise DataSpecError(
                f"worker {worker} of rank {rank} gets no sample of a {sum(s.samples for s in shards)}-sample "
                f"split ({world} ranks x {workers} workers): use fewer workers"
            )
        if skip >= size:
            skip -= size
            position += size
            continue
        stream = _plan_raw(plan, corrupt, verified)
        if shuffle_buffer > 1:
            rng = random.Random(_seed(seed, epoch, rank, worker, 0x5EED))
            if schedule is not None:
                stream = stratified_shuffle(
                    stream,
                    shuffle_buffer,
                    rng,
                    lambda n: schedule.wanted(rank_item(n, worker, workers, batch_size, per_item)),
                    position,
                )
            else:
                stream = wds.filters._shuffle(stream, bufsize=shuffle_buffer, initial=shuffle_buffer, rng=rng)
        read = 0
        for index, raw in enumerate(stream):
            read += 1
            if index < skip:
                continue
            raw["__epoch__"] = epoch
            yield raw
        if read == 0:  # every shard of this slot was skipped as corrupt: do not spin forever
            raise DataSpecError(
                f"worker {worker} of rank {rank}: no readable shard left (all skipped as corrupt)"
            )
        skip = 0
        position += size


def mixture_choices(weights: list[float], seed: int, rank: int, worker: int) -> Iterator[int]:
    """Which source each successive sample of a slot comes from (deterministic, seeded per slot)."""
    probs = np.asarray(weights, dtype=np.float64)
    probs = probs / probs.sum()
    rng = np.random.default_rng(_seed(seed, rank, worker, 0x313C))
    while True:
        yield from rng.choice(len(probs), size=4096, p=probs).tolist()


# ---------------------------------------------------------------------------------------------
# Decoding: a raw sample is decoded straight into a row of its batch's buffer


@dataclass(frozen=True)
class SampleFormat:
    """The tensors of a training sample (images uint8 (3, H, W), state, action chunk, padding mask)
    as the manifest describes them, and how a raw sample is decoded into a batch row of them.

    Decoding writes each member straight into its row: JPEGs by the decoder itself
    (`shards.codec.decode_image_into`; copying a decoded image in had cost ~20% of decoding it),
    npy members read in place, no per-sample tensors or dicts."""

    cameras: tuple[CameraSpec, ...]
    state_dim: int
    action_dim: int
    chunk_size: int
    horizons: tuple[int, ...]  # the stored horizons of the sets: an action member has one of them

    @classmethod
    def of(cls, spec: DataSpec, chunk_size: int) -> SampleFormat:
        horizons = tuple(sorted({int(src.manifest["horizon"]) for src in spec.sources})) or (spec.horizon,)
        return cls(tuple(spec.cameras), spec.state_dim, spec.action_dim, chunk_size, horizons)

    def layout(self, batch_size: int) -> BatchLayout:
        """Where each tensor of a batch of `batch_size` samples lives in its buffer."""
        tensors = [(cam.key, torch.uint8, (3, cam.height, cam.width)) for cam in self.cameras]
        tensors += [
            (STATE_KEY, torch.float32, (self.state_dim,)),
            (ACTION_KEY, torch.float32, (self.chunk_size, self.action_dim)),
            (PAD_KEY, torch.bool, (self.chunk_size,)),
        ]
        slots, offset = [], 0
        for key, dtype, shape in tensors:
            offset = -(-offset // 64) * 64  # aligned for every dtype (and cache lines)
            if dtype == torch.uint8:  # images off alignment, where libjpeg-turbo fills them faster
                # (`shards.codec.decode_target`); each row keeps it when H * W * 3 is a multiple of 32
                offset += DECODE_TARGET_SKEW
            slots.append(TensorSlot(key, dtype, (batch_size, *shape), offset))
            offset += slots[-1].nbytes
        return tuple(slots)

    def decode_into(self, raw: dict, row: list[np.ndarray], lists: dict[str, list]) -> None:
        """Decode `raw` into `row`, its row of each batch tensor (in `layout` order, images
        channels-last), and append its metadata to `lists`. A sample that does not decode, or does
        not match the manifest, raises `ShardCorruptError` naming it and its shard; its row is
        then left to the next sample, and `lists` are untouched."""
        member = "?"  # what was being decoded, for the error
        try:
            for cam, image in zip(self.cameras, row, strict=False):
                member = cam.member
                decode_image_into(raw[member], image)  # ValueError if not the manifest's size
            state, action, pad = row[len(self.cameras) :]
            member = STATE_MEMBER
            npy_into(raw[member], state)
            for target, member in ((action, ACTION_MEMBER), (pad, ACTION_IS_PAD_MEMBER)):
                npy_into(raw[member], target, rows=self.horizons)  # the chunk: the first chunk_size steps
            member = JSON_MEMBER
            # UTF-8 by the schema: skips json's encoding sniffing (and takes a memoryview)
            meta = json.loads(str(raw[member], "utf-8"))
            values = (
                str(meta["task"]),
                float(meta["progress"]),
                int(meta["episode_index"]),
                int(meta["frame_index"]),
                str(raw["__key__"]),
                int(raw.get("__epoch__", 0)),
            )
        except Exception as exc:
            reason = f"sample {raw.get('__key__')} does not decode ({member}: {type(exc).__name__}: {exc})"
            raise ShardCorruptError.of(str(raw.get("__url__", "?")), reason) from exc
        for name, value in zip(LIST_KEYS, values, strict=True):
            lists.setdefault(name, []).append(value)


# Per-sample values a batch carries as lists (the tensors are in its buffer).
LIST_KEYS = ("task", "progress", "episode_index", "frame_index", "key", "epoch")


# ---------------------------------------------------------------------------------------------
# Batches: built where the samples are decoded, handed over as one shared-memory buffer


@dataclass(frozen=True)
class TensorSlot:
    """Where one batch tensor lives in a batch buffer: byte offset, dtype and logical shape.

    A 4-D (B, C, H, W) image tensor is stored channels-last (B, H, W, C): JPEG decoders write
    pixels interleaved, so copying a decoded image in is a plain memcpy, while a channel-first
    copy is a strided gather that measured ~1 ms per 512x512 image here. SmolVLA gets the
    (B, C, H, W) view; every torch op takes it, and `.to(device)` keeps the layout."""

    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def stored(self, buffer: torch.Tensor) -> torch.Tensor:
        """The tensor as it lies in `buffer` (images (B, H, W, C): what decoders write into)."""
        flat = buffer[self.offset : self.offset + self.nbytes].view(self.dtype)
        if len(self.shape) == 4:
            b, c, h, w = self.shape
            return flat.view(b, h, w, c)
        return flat.view(self.shape)

    def view(self, buffer: torch.Tensor) -> torch.Tensor:
        """The tensor with its logical shape (images (B, C, H, W), a view of the stored layout)."""
        stored = self.stored(buffer)
        return stored.permute(0, 3, 1, 2) if len(self.shape) == 4 else stored


BatchLayout = tuple[TensorSlot, ...]


def _layout_bytes(layout: BatchLayout) -> int:
    return max((s.offset + s.nbytes for s in layout), default=0)


def allocate_batch(layout: BatchLayout, *, shared: bool = False, pin_memory: bool = False) -> torch.Tensor:
    """One byte buffer for a whole batch (in shared memory for a hand-over between processes)."""
    buffer = torch.empty(_layout_bytes(layout), dtype=torch.uint8, pin_memory=pin_memory)
    return buffer.share_memory_() if shared else buffer


PACKED_KEY = "__packed__"


class BatchBuilder:
    """Fills a batch row by row, decoding each raw sample into its row as it comes.

    Into `buffer` (a worker's shared buffer) the batch is built *packed*: {PACKED_KEY: (ring_key,
    rows, buffer, layout), lists...}, one object to hand over (`unpack_batch` makes the tensors);
    without one, into a new buffer, as plain tensors. A ring's buffer (`ring_key` set) and its
    layout go with its first batch only: the consumer keeps them (`batches`), and handing over a
    shared buffer (torch passes its file descriptor through a socket to the worker's sharer
    thread) had cost ~1 ms per batch, on both sides."""

    def __init__(self, fmt: SampleFormat, batch_size: int, buffer: torch.Tensor | None = None, ring_key=None):
        self.format = fmt
        self.layout = fmt.layout(batch_size)
        self.packed = buffer is not None
        self.buffer = buffer if buffer is not None else allocate_batch(self.layout)
        self.ring_key = ring_key
        self.handed_over = False  # the buffer went with an earlier batch
        # numpy copies: torch's copy_ runs on its thread pool, which measured 10-100x slower when
        # other processes hold the cores
        tensors = [slot.stored(self.buffer).numpy() for slot in self.layout]  # images channels-last
        self.rows = [[tensor[row] for tensor in tensors] for row in range(batch_size)]  # made once
        self.lists: dict[str, list] = {}
        self.count = 0

    def reset(self) -> BatchBuilder:
        """Start the next batch in the same buffer (its row views are kept: making them costs more
        than decoding a small sample into them)."""
        self.lists = {}
        self.count = 0
        return self

    @property
    def full(self) -> bool:
        return self.count == self.layout[0].shape[0]

    def add(self, raw: dict) -> None:
        """Decode `raw` into the next row (`SampleFormat.decode_into`; a sample that does not
        decode raises and takes no row)."""
        self.format.decode_into(raw, self.rows[self.count], self.lists)
        self.count += 1

    def finish(self) -> dict[str, Any]:
        batch: dict[str, Any] = dict(self.lists)
        if not self.packed:
            batch.update({slot.key: slot.view(self.buffer) for slot in first_rows(self.layout, self.count)})
        elif self.handed_over:
            batch[PACKED_KEY] = (self.ring_key, self.count, None, None)
        else:
            batch[PACKED_KEY] = (self.ring_key, self.count, self.buffer, self.layout)
            self.handed_over = self.ring_key is not None
        return batch


def first_rows(layout: BatchLayout, rows: int) -> BatchLayout:
    """The layout of the first `rows` rows of each tensor (a short last batch)."""
    if layout and layout[0].shape[0] == rows:
        return layout
    return tuple(TensorSlot(s.key, s.dtype, (rows, *s.shape[1:]), s.offset) for s in layout)


def decode_batch(raws: list[dict], fmt: SampleFormat, buffer: torch.Tensor | None = None) -> dict[str, Any]:
    """One batch of these raw samples: tensors in one buffer (images channels-last), per-sample
    values as lists (`LIST_KEYS`); with a `buffer` (of `fmt.layout(len(raws))`), packed (see
    `BatchBuilder`)."""
    builder = BatchBuilder(fmt, len(raws), buffer)
    for raw in raws:
        builder.add(raw)
    return builder.finish()


def unpack_batch(
    batch: dict[str, Any], *, copy: bool = True, pin_memory: bool = False, keep: dict | None = None
) -> dict[str, Any]:
    """The tensors of a packed batch as views of its buffer; with `copy`, of a private copy of it
    (one memcpy), so the worker may refill its buffer. `keep` holds the workers' reused buffers
    (with their layouts and the views made of them) from their first batch on: later batches only
    name theirs. Each is mapped into this process once (every new mapping is page-faulted in again:
    that cost more than the copy)."""
    if PACKED_KEY not in batch:
        return batch
    ring_key, rows, buffer, layout = batch[PACKED_KEY]
    if buffer is None:
        if keep is None or ring_key not in keep:
            raise ValueError(
                f"a batch of ring buffer {ring_key} came without it: it went with an earlier batch of this "
                "loader, which was not unpacked with the same `keep` (iterate the loader with `batches`)"
            )
        buffer, layout, views = keep[ring_key]
    else:
        views = {}
        if keep is not None and ring_key is not None:
            keep[ring_key] = (buffer, layout, views)
    out = {k: v for k, v in batch.items() if k != PACKED_KEY}
    layout = first_rows(layout, rows)
    if copy:
        size = _layout_bytes(layout)
        own = torch.empty(size, dtype=torch.uint8, pin_memory=pin_memory)
        np.copyto(own.numpy(), buffer[:size].numpy())
        out.update({slot.key: slot.view(own) for slot in layout})
    else:  # views of a kept buffer are made once per batch size (they cost more than the rest here)
        if rows not in views:
            views[rows] = {slot.key: slot.view(buffer) for slot in layout}
        out.update(views[rows])
    return out


class BatchRing:
    """Shared-memory batch buffers a DataLoader worker fills in turn.

    A fresh shared-memory buffer per batch is cheap to create but every page of it is faulted in
    when first written: that measured ~1.2 ms per MB here, more than decoding the JPEGs. Reused
    buffers are faulted in once. Reuse is safe because a DataLoader worker is asked for its item
    n + prefetch_factor only once its item n has been handed to the consumer, and `batches` is done
    with an item's batches before it asks for the next item: (prefetch_factor + 2) x per_item
    buffers never overwrite a batch still in use. `slots=0`: a new buffer per batch (any DataLoader)."""

    def __init__(self, slots: int, fmt: SampleFormat, batch_size: int):
        self.slots = slots
        self.format = fmt
        self.batch_size = batch_size
        self.layout = fmt.layout(batch_size)
        self.builders: list[BatchBuilder] = []
        self.turn = 0

    def builder(self) -> BatchBuilder:
        if self.slots <= 0:
            return BatchBuilder(self.format, self.batch_size, allocate_batch(self.layout, shared=True))
        index = self.turn % self.slots
        self.turn += 1
        if len(self.builders) <= index:
            buffer = allocate_batch(self.layout, shared=True)
            ring_key = (os.getpid(), id(self), index)
            self.builders.append(BatchBuilder(self.format, self.batch_size, buffer, ring_key))
        return self.builders[index].reset()


def batched(
    raws: Iterator[dict],
    fmt: SampleFormat,
    batch_size: int,
    *,
    ring_slots: int | None = None,
    corrupt: CorruptShardLog | None = None,
) -> Iterator[dict[str, Any]]:
    """Batches of `batch_size` raw samples, decoded (the last one may be short): packed into a ring
    of `ring_slots` shared buffers in a DataLoader worker (`BatchRing`), plain tensors without. A
    sample that does not decode raises `ShardCorruptError`, or with a `corrupt` log
    (`--skip-corrupt`) is recorded there and its row goes to the next sample."""
    ring = BatchRing(ring_slots, fmt, batch_size) if ring_slots is not None else None
    builder: BatchBuilder | None = None
    for raw in raws:
        if builder is None:
            builder = ring.builder() if ring is not None else BatchBuilder(fmt, batch_size)
        try:
            builder.add(raw)
        except ShardCorruptError as error:
            if corrupt is None:
                raise
            corrupt.record(error, sample_only=True)
            continue
        if builder.full:
            yield builder.finish()
            builder = None
    if builder is not None and builder.count:
        yield builder.finish()


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


ITEM_BYTES = 16 << 20  # a DataLoader item carries about this many bytes of batches (see `batches_per_item`)
MAX_BATCHES_PER_ITEM = 8


def batches_per_item(batch_bytes: int) -> int:
    """How many batches a worker hands over as one DataLoader item (a list of batches).

    torch's DataLoader costs ~0.1 ms of CPU per item in the worker and more in the consumer, which
    sleeps and wakes for each one: ~10% of decoding a batch of 8 samples at 224 px. Small batches
    therefore go several at a time (4 of those), batches of 16 MB or more one by one; each batch of an
    item holds a ring buffer until the consumer is done with it, so memory grows with the count."""
    return max(1, min(MAX_BATCHES_PER_ITEM, ITEM_BYTES // max(1, batch_bytes)))


def rank_item(n: int, worker: int, workers: int, batch_size: int, per_item: int = 1) -> int:
    """The rank's item index of a worker's n-th sample: workers fill whole batches and hand them over
    `per_item` at a time, which the DataLoader hands out round-robin (worker w's q-th item holds the
    rank's batches (q * workers + w) * per_item + i, i < per_item)."""
    batch, position = divmod(n, batch_size)
    item, within = divmod(batch, per_item)
    return ((item * workers + worker) * per_item + within) * batch_size + position


def resume_point(
    batches_consumed: int, loader_worker: int, workers: int, per_item: int = 1
) -> tuple[int, int]:
    """(logical worker, batches of it already consumed) for DataLoader worker `loader_worker` after
    `batches_consumed` batches. The DataLoader asks its worker 0 first: the next item is the rank's
    item batches_consumed // per_item, whose logical worker worker 0 plays (and so on round-robin);
    if that item was partly consumed, its first batches are skipped too."""
    item, into = divmod(batches_consumed, per_item)
    worker = (loader_worker + item) % workers
    consumed = len(range(worker, item, workers)) * per_item + (into if loader_worker == 0 else 0)
    return worker, consumed


def bundled(
    batches: Iterator[dict[str, Any]], per_item: int, first: int | None = None
) -> Iterator[list[dict]]:
    """Lists of `per_item` consecutive batches (the first of `first`, the last possibly shorter)."""
    size = per_item if first is None else first
    while bundle := list(itertools.islice(batches, size)):
        yield bundle
        size = per_item


class TrainStream(IterableDataset):
    """Infinite per-rank stream of batches, starting after `start_batches` consumed batches.

    Each DataLoader worker decodes and collates whole batches of its own samples (see the module
    docstring) and hands them over `per_item` at a time (`batches_per_item`; `batches` flattens
    them again); `ring_slots` (set by `make_loader`) lets it reuse its shared-memory buffers."""

    def __init__(
        self,
        spec: DataSpec,
        *,
        chunk_size: int,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        shuffle_buffer: int = 1000,
        start_batches: int = 0,
        stratify: bool = True,
        corrupt: CorruptShardLog | None = None,
        ring_slots: int = 0,
    ):
        super().__init__()
        self.corrupt = corrupt
        self.sources = [src.train for src in spec.sources]
        self.episodes = [src.episodes for src in spec.sources]
        self.repeats = [src.repeats for src in spec.sources]  # `--task-balance` (None: off)
        self.batch_size = batch_size
        self.stratify = stratify
        self.weights = [src.weight for src in spec.sources]
        self.format = SampleFormat.of(spec, chunk_size)
        self.seed = seed
        self.rank = rank
        self.world = world
        self.shuffle_buffer = shuffle_buffer
        self.start_batches = start_batches
        self.ring_slots = ring_slots
        self.per_item = batches_per_item(_layout_bytes(self.format.layout(batch_size)))
        self.verified = VerifiedShards()  # per process: each worker keeps its own over the epochs

    def __iter__(self) -> Iterator[dict[str, Any]] | Iterator[list[dict[str, Any]]]:
        if get_worker_info() is None:  # in the consuming process: batch by batch
            yield from self.worker_batches()
            return
        loader_worker, workers = _worker()
        batches = self.worker_batches(loader_worker, workers, ring_slots=self.ring_slots)
        _, consumed = resume_point(self.start_batches, loader_worker, workers, self.per_item)
        yield from bundled(batches, self.per_item, first=self.per_item - consumed % self.per_item)

    def worker_batches(
        self, loader_worker: int = 0, workers: int = 1, ring_slots: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The batches DataLoader worker `loader_worker` of `workers` makes (see `batched`)."""
        raws = self.raw_samples(loader_worker, workers)
        yield from batched(raws, self.format, self.batch_size, ring_slots=ring_slots, corrupt=self.corrupt)

    def raw_samples(self, loader_worker: int = 0, workers: int = 1) -> Iterator[dict]:
        """The raw samples of DataLoader worker `loader_worker` of `workers`, in batch order."""
        b, per_item = self.batch_size, self.per_item
        worker, consumed = resume_point(self.start_batches, loader_worker, workers, per_item)
        skip = consumed * b
        if len(self.sources) == 1:
            per_source = [skip]
        else:  # the skipped samples' sources are the first `skip` draws of this slot's mixture
            choices = mixture_choices(self.weights, self.seed, self.rank, worker)
            per_source = [0] * len(self.sources)
            for choice in itertools.islice(choices, skip):
                per_source[choice] += 1
        streams = [
            slot_stream(
                shards,
                seed=_seed(self.seed, index),
                rank=self.rank,
                world=self.world,
                worker=worker,
                workers=workers,
                shuffle_buffer=self.shuffle_buffer,
                skip=per_source[index],
                schedule=EpisodeSchedule(self.episodes[index], b, _seed(self.seed, index), self.rank)
                if self.stratify
                else None,
                batch_size=b,
                per_item=per_item,
                corrupt=self.corrupt,
                verified=self.verified,
                repeats=self.repeats[index],
            )
            for index, shards in enumerate(self.sources)
        ]
        if len(streams) == 1:
            yield from streams[0]
            return
        for choice in choices:
            yield next(streams[choice])


class ValStream(IterableDataset):
    """One deterministic pass over the val splits (no shuffle), split by node and worker, in batches
    (each worker's last one may be short), handed over `per_item` at a time like `TrainStream`'s."""

    def __init__(
        self,
        spec: DataSpec,
        *,
        chunk_size: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        corrupt: CorruptShardLog | None = None,
        ring_slots: int = 0,
    ):
        super().__init__()
        self.corrupt = corrupt
        self.shards = [ref for src in spec.sources for ref in src.val]
        self.format = SampleFormat.of(spec, chunk_size)
        self.batch_size = batch_size
        self.rank = rank
        self.world = world
        self.ring_slots = ring_slots
        self.per_item = batches_per_item(_layout_bytes(self.format.layout(batch_size)))
        self.verified = VerifiedShards()  # per process: persistent workers keep it between passes

    def __len__(self) -> int:  # samples of the whole split (all ranks)
        return sum(s.samples for s in self.shards)

    def __iter__(self) -> Iterator[dict[str, Any]] | Iterator[list[dict[str, Any]]]:
        worker, workers = _worker()
        in_worker = get_worker_info() is not None
        plan = plan_slot(self.shards, None, self.rank, self.world, worker, workers)
        raws = _plan_raw(plan, self.corrupt, self.verified)
        ring_slots = self.ring_slots if in_worker else None
        batches = batched(raws, self.format, self.batch_size, ring_slots=ring_slots, corrupt=self.corrupt)
        yield from bundled(batches, self.per_item) if in_worker else batches


PREFETCH_ITEMS = 2  # per worker, torch's default: with 1, a worker that has finished its item idles
# until the consumer takes one and asks it for the next (~4% of the workers' time measured here)


def _init_worker(_worker_id: int) -> None:
    retain_freed_memory()
    # What a worker inherits from its parent (torch, lerobot, numpy: ~175k objects) lives as long as
    # it does: frozen, the cyclic GC's full collections scan only what the stream allocates
    # (~3 us less per 224 px sample measured here, 8% of the worker's own Python work).
    gc.freeze()


def make_loader(
    dataset: TrainStream | ValStream, *, num_workers: int, persistent: bool = False
) -> DataLoader:
    """A DataLoader over a stream of batches (collated in the workers), handed out round-robin over
    the workers, in order, `dataset.per_item` per item (iterate it with `batches`). Sets the stream's
    `ring_slots` to what its prefetch makes safe."""
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["prefetch_factor"] = PREFETCH_ITEMS
        kwargs["persistent_workers"] = persistent
        kwargs["worker_init_fn"] = _init_worker
        dataset.ring_slots = (PREFETCH_ITEMS + 2) * dataset.per_item
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_as_is, **kwargs)


def _as_is(batch: dict[str, Any]) -> dict[str, Any]:
    """The DataLoader's per-batch conversion (torch's `default_convert` walks every list): none needed."""
    return batch


def batches(
    loader_iter: Iterator[dict[str, Any] | list[dict[str, Any]]], pin_memory: bool = False, copy: bool = True
) -> Iterator[dict[str, Any]]:
    """The loader's batches one by one (items of several batches flattened), their tensors copied
    out of the workers' buffers (into pinned memory for fast host-to-GPU copies when `pin_memory`).

    `copy=False` (without `pin_memory`) saves that copy: the tensors are then views of a worker's
    buffer, which it refills once the consumer has taken a few further items. A loop that is done
    with each batch before it takes the next (b1k-train on CPU) may use them; code that keeps
    batches must copy."""
    keep: dict = {}  # the workers' reused buffers, mapped here once
    for item in loader_iter:
        for batch in item if isinstance(item, list) else (item,):
            if PACKED_KEY in batch:
                yield unpack_batch(batch, copy=copy or pin_memory, pin_memory=pin_memory, keep=keep)
            elif pin_memory:
                yield {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            else:
                yield batch
