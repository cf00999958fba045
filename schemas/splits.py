"""A shard set's splits as its manifest lists them: each split's episodes and shards (name, samples,
bytes, sha256), and the counts per task and skill recorded since b1k-preprocess counts them. Parts of
`schemas.manifest.Manifest`; each reads itself with `from_json` and writes itself back with `to_json`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.fields import (
    ManifestError,
    check_count,
    extras_of,
    int_key,
    int_keyed,
    json_of,
    require,
    require_count,
    require_int,
    require_object,
    require_set_name,
    require_sha256,
)

SPLITS = ("train", "val")
MAX_SHARD_BYTES = 64 << 30  # b1k-preprocess writes 1 GiB shards by default
_TAR_BLOCK = 512  # a tar is whole blocks, and a sample takes at least one (a member's header)


@dataclass(frozen=True)
class ShardEntry:
    """One shard: its file (relative to the set's root), sample count, size and sha256, and (sets
    written since b1k-preprocess counts them) its samples per task id."""

    name: str
    samples: int
    bytes: int
    sha256: str
    tasks: Mapping[int, int] | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> ShardEntry:
        """Sizes and counts are what readers allocate, skip and download by, so they must be possible
        for a tar (whole 512-byte blocks, a block per sample at least)."""
        require_object(data, where)
        tasks = None
        if "tasks" in data:
            counts = require(data, "tasks", dict, where)
            tasks = {int_key(t, f"{where}.tasks"): require_count(counts, t, f"{where}.tasks") for t in counts}
        name = require_set_name(require(data, "name", str, where), f"{where}.name")
        samples = require_count(data, "samples", where)
        size = require_count(data, "bytes", where, most=MAX_SHARD_BYTES)
        if size % _TAR_BLOCK or samples > size // _TAR_BLOCK:
            raise ManifestError(
                f"{where}: {samples} samples in {size} bytes is not a tar (whole {_TAR_BLOCK}-byte blocks, "
                "at least one per sample)"
            )
        digest = require_sha256(data, where)
        return cls(
            name,
            samples,
            size,
            digest,
            tasks,
            extras_of(data, ("name", "samples", "bytes", "sha256", "tasks")),
        )

    def to_json(self) -> dict[str, Any]:
        return json_of(
            {
                "name": self.name,
                "samples": self.samples,
                "bytes": self.bytes,
                "sha256": self.sha256,
                "tasks": int_keyed(self.tasks),
            },
            self.extras,
        )


@dataclass(frozen=True)
class TaskCount:
    """A task's episodes and samples in a split."""

    episodes: int
    samples: int
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> TaskCount:
        require_object(data, where)
        return cls(
            require_count(data, "episodes", where),
            require_count(data, "samples", where),
            extras_of(data, ("episodes", "samples")),
        )

    def to_json(self) -> dict[str, Any]:
        return json_of({"episodes": self.episodes, "samples": self.samples}, self.extras)


@dataclass(frozen=True)
class Split:
    """A split: its episodes and shards; the optional counts are absent (None) in sets written before
    they were recorded: `samples`/`frames` (totals), `tasks` (per task id), `episode_tasks` (each
    episode's task id), `skills` (annotated samples per skill)."""

    episodes: tuple[int, ...]
    shards: tuple[ShardEntry, ...]
    samples: int | None = None
    frames: int | None = None
    tasks: Mapping[int, TaskCount] | None = None
    episode_tasks: Mapping[int, int] | None = None
    skills: Mapping[str, int] | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def shard_samples(self) -> int:
        """The samples its shards list."""
        return sum(s.samples for s in self.shards)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Split:
        require_object(data, where)
        episodes = tuple(
            require_int(e, f"{where}.episodes[{i}]", "an episode index (int >= 0)")
            for i, e in enumerate(require(data, "episodes", list, where))
        )
        for i, episode in enumerate(episodes):
            if episode < 0:
                raise ManifestError(
                    f"{where}.episodes[{i}]: expected an episode index (int >= 0), got {episode}"
                )
        shard_list = require(data, "shards", list, where)
        counts = {c: require_count(data, c, where) if c in data else None for c in ("samples", "frames")}
        return cls(
            episodes=episodes,
            shards=tuple(ShardEntry.from_json(s, f"{where}.shards[{i}]") for i, s in enumerate(shard_list)),
            tasks=_task_counts(data, where),
            episode_tasks=_episode_tasks(data, where),
            skills=_skills(data, where),
            extras=extras_of(
                data, ("episodes", "shards", "samples", "frames", "tasks", "episode_tasks", "skills")
            ),
            **counts,
        )

    def to_json(self) -> dict[str, Any]:
        return json_of(
            {
                "episodes": list(self.episodes),
                "shards": [s.to_json() for s in self.shards],
                "samples": self.samples,
                "frames": self.frames,
                "tasks": None if self.tasks is None else {str(t): c.to_json() for t, c in self.tasks.items()},
                "episode_tasks": int_keyed(self.episode_tasks),
                "skills": None if self.skills is None else dict(self.skills),
            },
            self.extras,
        )


def _task_counts(data: dict, where: str) -> dict[int, TaskCount] | None:
    if "tasks" not in data:
        return None
    tasks = require(data, "tasks", dict, where)
    return {
        int_key(t, f"{where}.tasks.{t}"): TaskCount.from_json(c, f"{where}.tasks.{t}")
        for t, c in tasks.items()
    }


def _episode_tasks(data: dict, where: str) -> dict[int, int] | None:
    if "episode_tasks" not in data:
        return None
    out = {}
    for episode, task in require(data, "episode_tasks", dict, where).items():
        at = f"{where}.episode_tasks.{episode}"
        out[int_key(episode, at)] = require_int(task, at, "a task index (int)")
    return out


def _skills(data: dict, where: str) -> dict[str, int] | None:
    if "skills" not in data:
        return None
    skills = require(data, "skills", dict, where)
    return {skill: check_count(n, f"{where}.skills.{str(skill)[:40]}") for skill, n in skills.items()}


@dataclass(frozen=True)
class Splits:
    """The train and val splits (JSON: keyed by split name)."""

    train: Split
    val: Split
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[tuple[str, Split]]:
        """(name, split), train first."""
        yield "train", self.train
        yield "val", self.val

    def of(self, name: str) -> Split:
        """The split called `name` (`SPLITS`); a ManifestError for any other name."""
        if name not in SPLITS:
            raise ManifestError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.train if name == "train" else self.val

    @property
    def shards(self) -> Iterator[tuple[str, ShardEntry]]:
        """(split name, shard) of every shard, train first."""
        return ((name, shard) for name, split in self for shard in split.shards)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Splits:
        train, val = (Split.from_json(require(data, s, dict, where), f"{where}.{s}") for s in SPLITS)
        return cls(train, val, extras_of(data, SPLITS))

    def to_json(self) -> dict[str, Any]:
        return json_of({name: split.to_json() for name, split in self}, self.extras)
