"""Which task each episode shows, under the evaluator's id, and the prompt trained with it.

A task is identified by its name (`schemas.tasks`): every task of a dataset gets the evaluator's id
from its name, whatever the dataset's own `task_index` says (single-task datasets and the older
per-task 2026 copies number their only task 0). A name outside the challenge's list keeps the
dataset's index and is flagged. The prompt is the task's natural-language instruction
(`meta/tasks.jsonl`, what the official baselines prompt with) or its name (`--prompt name`).

Episodes get an identity unique across the release: a 2026 per-task copy numbers its episodes
0..199 in every task, so an episode of a known task there becomes the published global index
`200 * task_id + demo`, and sets made from different copies can be merged and trained together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from preprocess.source import EpisodeRef, SourceDataset
from schemas.errors import B1kError
from schemas.tasks import EPISODES_PER_TASK_ID, TaskInfo, evaluator_task_id, parse_task_selection

log = logging.getLogger(__name__)

PROMPT_CHOICES = ("instruction", "name")
DEFAULT_PROMPT = "instruction"


class TaskError(B1kError, ValueError):
    """The dataset's tasks cannot be told apart, or `--tasks` names a task the dataset lacks."""


def resolve_tasks(source: SourceDataset, prompt: str = DEFAULT_PROMPT) -> dict[int, TaskInfo]:
    """Every task of the dataset, keyed by the dataset's own task index."""
    if prompt not in PROMPT_CHOICES:
        raise TaskError(f"--prompt must be one of {', '.join(PROMPT_CHOICES)}, got {prompt!r}")
    tasks: dict[int, TaskInfo] = {}
    for index, record in sorted(source.task_records.items()):
        task_id = evaluator_task_id(record.name)
        use_instruction = prompt == "instruction" and record.instruction
        tasks[index] = TaskInfo(
            task_id=index if task_id is None else task_id,
            name=record.name,
            instruction=record.instruction,
            prompt=record.instruction if use_instruction else record.name,
            known=task_id is not None,
            source_index=index,
        )
    _check_ids_distinct(source, tasks)
    return tasks


def _check_ids_distinct(source: SourceDataset, tasks: dict[int, TaskInfo]) -> None:
    """Two tasks under one id (an unknown name whose own index is a known task's id) would mix prompts."""
    owner: dict[int, TaskInfo] = {}
    for task in tasks.values():
        other = owner.setdefault(task.task_id, task)
        if other is not task:
            raise TaskError(
                f"{source.root}: tasks {other.name!r} and {task.name!r} would both be task {task.task_id} "
                f"({'not ' if not task.known else ''}a challenge task name); rename the dataset's task "
                "outside the challenge's list, or preprocess the tasks separately"
            )


def episode_task(source: SourceDataset, ref: EpisodeRef, tasks: dict[int, TaskInfo]) -> TaskInfo | None:
    record = source.task_of(ref)
    return None if record is None else tasks.get(record.index)


def episode_identity(index: int, task: TaskInfo | None, release: str) -> int:
    """The episode's index across the release: the dataset's own, except for a 2026 per-task copy's
    episode 0..199 of a known task, which becomes `200 * task_id + demo` (BEHAVIOR.md)."""
    if task is None or not task.known or release != "2026":
        return index
    per_task = EPISODES_PER_TASK_ID[release]
    if index // per_task == task.task_id or not 0 <= index < per_task:
        return index
    return per_task * task.task_id + index


def select_tasks(text: str | None, tasks: dict[int, TaskInfo]) -> set[int] | None:
    """The dataset task indices `--tasks` names (by name or evaluator id); None = every task."""
    if not text:
        return None
    by_name = {t.name: i for i, t in tasks.items()}
    by_id = {t.task_id: i for i, t in tasks.items()}
    chosen: set[int] = set()
    for item in parse_task_selection(text):
        index = by_id.get(item) if isinstance(item, int) else by_name.get(item)
        if index is None and isinstance(item, str) and evaluator_task_id(item) is not None:
            index = by_id.get(evaluator_task_id(item))
        if index is None:
            raise TaskError(
                f"--tasks {item!r}: no such task in the dataset (give a task name or an evaluator id; "
                f"it has {len(tasks)} tasks, e.g. {', '.join(f'{t.task_id} {t.name}' for t in list(tasks.values())[:3])})"
            )
        chosen.add(index)
    return chosen


@dataclass(frozen=True)
class TaskCoverage:
    """What of a task is on disk: its episodes and frames downloaded, and how many are listed but absent."""

    task: TaskInfo
    episodes: int
    frames: int
    absent: int


def log_coverage(coverage: list[TaskCoverage], not_listed: list[TaskInfo]) -> None:
    """One line per task found, one summary of the tasks the meta files describe but the disk lacks."""
    for c in coverage:
        log.info(
            "task %d %s: %d episodes, %d frames%s",
            c.task.task_id, c.task.name, c.episodes, c.frames,
            f" ({c.absent} listed episodes not downloaded)" if c.absent else "",
        )  # fmt: skip
    if not_listed:
        names = ", ".join(f"{t.task_id} {t.name}" for t in not_listed[:8])
        log.info(
            "%d tasks described by meta/ have no episodes on disk (a partial download): %s%s",
            len(not_listed), names, ", ..." if len(not_listed) > 8 else "",
        )  # fmt: skip
