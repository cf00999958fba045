"""`--task-balance`: each sample of a small task is streamed r_t = max(1, round(n_max / n_t)) times
per epoch, so that it is not drowned by the large ones. The counts come from the manifests (per task,
per shard), so an epoch's size stays known without reading a shard and resuming stays exact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from train.errors import DataSpecError

if TYPE_CHECKING:
    from train.spec import DataSpec, ShardRef, ShardSource


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
        tasks = ref.entry.tasks if ref.entry is not None else None
        return sum(self.of_task[task] * n for task, n in (tasks or {}).items())


def task_records(src: ShardSource) -> tuple[dict[int, int], dict[int, int]]:
    """(train samples per task, task of each train episode) as the set's manifest records them, per
    shard too (so an epoch's size is known without reading a shard); DataSpecError naming the set
    where they are missing or do not add up."""
    split = src.manifest.splits.train
    recorded = {"tasks": split.tasks, "episode_tasks": split.episode_tasks}
    missing = [f"splits.train.{key}" for key, value in recorded.items() if value is None]
    if any(ref.entry is None or ref.entry.tasks is None for ref in src.train):
        missing.append("splits.train.shards[].tasks")
    if missing:
        raise DataSpecError(
            f"{src.location}: --task-balance needs the samples per task that b1k-preprocess records "
            f"({', '.join(missing)}); this set was written before it did: re-run b1k-preprocess"
        )
    samples = {task: counts.samples for task, counts in (split.tasks or {}).items()}
    episodes = dict(split.episode_tasks or {})
    for ref in src.train:
        counts = dict((ref.entry.tasks if ref.entry else None) or {})
        if sum(counts.values()) != ref.samples or not counts.keys() <= samples.keys():
            name = ref.entry.name if ref.entry else ref.url
            raise DataSpecError(f"{src.location}: the task counts of shard {name} do not add up")
    unknown = sorted(set(src.episodes) - episodes.keys())
    if unknown or not set(episodes.values()) <= samples.keys():
        raise DataSpecError(
            f"{src.location}: splits.train.episode_tasks does not give every train episode a known task"
        )
    return samples, episodes


def _task_name(src: ShardSource, task: int) -> str:
    return src.manifest.tasks.get(task, f"task {task}")


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
        for task, counts in (src.manifest.splits.train.tasks or {}).items():
            name = _task_name(src, task)
            row = rows.setdefault(name, {"task": name, "samples": 0})
            row["samples"] += counts.samples
            row["repeats"] = src.repeats.of_task[task]  # the same in every set
    for row in rows.values():
        row["effective"] = row["samples"] * row["repeats"]
    return sorted(rows.values(), key=lambda row: row["samples"], reverse=True)
